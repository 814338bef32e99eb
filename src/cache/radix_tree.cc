#include "cache/radix_tree.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace marconi::internal {
namespace {

auto ChildLess = [](const std::pair<Token, NodeId>& a, Token t) { return a.first < t; };

}  // namespace

int64_t CommonPrefix(const Token* a, const Token* b, int64_t n) {
  constexpr int64_t kChunk = 64;
  int64_t i = 0;
  while (i + kChunk <= n && std::memcmp(a + i, b + i, kChunk * sizeof(Token)) == 0) i += kChunk;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

RadixTree::RadixTree() {
  const NodeId root = Allocate();
  assert(root == kRoot);
  (void)root;
}

NodeId RadixTree::Allocate() {
  NodeId id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<NodeId>(nodes_.size());
    nodes_.emplace_back();
  }
  Node& n = node(id);
  n = Node{};
  n.alive = true;
  ++alive_;
  return id;
}

void RadixTree::Free(NodeId id) {
  Node& n = node(id);
  assert(n.alive && n.children.empty() && n.pins == 0);
  const bool was_dirty = n.dirty;
  n = Node{};
  n.dirty = was_dirty;  // still in the dirty list; skipped there because it is not alive
  free_.push_back(id);
  --alive_;
}

NodeId RadixTree::FindChild(NodeId parent, Token token) const {
  const auto& c = node(parent).children;
  auto it = std::lower_bound(c.begin(), c.end(), token, ChildLess);
  return it != c.end() && it->first == token ? it->second : kNoNode;
}

NodeId RadixTree::AddLeaf(NodeId parent, std::span<const Token> edge) {
  assert(!edge.empty() && FindChild(parent, edge[0]) == kNoNode);
  const NodeId id = Allocate();
  Node& n = node(id);
  n.parent = parent;
  n.edge.assign(edge.begin(), edge.end());
  Node& p = node(parent);
  n.depth = p.depth + static_cast<int64_t>(edge.size());
  auto it = std::lower_bound(p.children.begin(), p.children.end(), edge[0], ChildLess);
  p.children.insert(it, {edge[0], id});
  MarkDirty(id);
  MarkDirty(parent);
  return id;
}

void RadixTree::ReplaceChild(NodeId parent, NodeId old_child, NodeId new_child) {
  for (auto& [token, id] : node(parent).children) {
    if (id == old_child) {
      id = new_child;
      return;
    }
  }
  assert(false && "child not found");
}

NodeId RadixTree::Split(NodeId child, int64_t k) {
  assert(k > 0 && k < static_cast<int64_t>(node(child).edge.size()));
  const NodeId mid = Allocate();  // may reallocate nodes_: take references afterwards
  Node& c = node(child);
  Node& m = node(mid);
  m.parent = c.parent;
  m.edge.assign(c.edge.begin(), c.edge.begin() + k);
  m.depth = c.depth - static_cast<int64_t>(c.edge.size()) + k;
  m.last_access = c.last_access;
  m.access_seq = c.access_seq;
  m.access_clock = c.access_clock;
  c.edge.erase(c.edge.begin(), c.edge.begin() + k);
  m.children.push_back({c.edge[0], child});
  ReplaceChild(m.parent, child, mid);
  c.parent = mid;
  MarkDirty(child);
  MarkDirty(mid);
  return mid;
}

void RadixTree::RemoveLeaf(NodeId leaf) {
  const NodeId parent = node(leaf).parent;
  auto& c = node(parent).children;
  c.erase(std::find_if(c.begin(), c.end(), [&](const auto& e) { return e.second == leaf; }));
  Free(leaf);
  MarkDirty(parent);
}

NodeId RadixTree::MergeIntoChild(NodeId id) {
  Node& n = node(id);
  assert(n.children.size() == 1 && id != kRoot);
  const NodeId child = n.children[0].second;
  Node& c = node(child);
  c.edge.insert(c.edge.begin(), n.edge.begin(), n.edge.end());
  c.parent = n.parent;
  ReplaceChild(n.parent, id, child);
  n.children.clear();
  Free(id);
  MarkDirty(child);
  return child;
}

void RadixTree::MarkDirty(NodeId id) {
  Node& n = node(id);
  if (n.dirty) return;
  n.dirty = true;
  dirty_.push_back(id);
}

std::vector<NodeId> RadixTree::TakeDirty() {
  std::vector<NodeId> taken;
  taken.swap(dirty_);
  for (NodeId id : taken) node(id).dirty = false;
  return taken;
}

}  // namespace marconi::internal
