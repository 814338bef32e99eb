#include "sim/engines/sglang_tree.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <tuple>

namespace marconi::sim {

SglangTree::SglangTree(const Config& config, CacheStats* stats) : config_(config), stats_(stats) {
  nodes_.resize(1);
  nodes_[kRoot].alive = true;
}

int32_t SglangTree::Child(int32_t parent, Token first) const {
  auto it = children_.find(ChildKey(parent, first));
  return it == children_.end() ? -1 : it->second;
}

int32_t SglangTree::NewNode() {
  int32_t id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
    nodes_[static_cast<size_t>(id)] = Node{};
  } else {
    id = static_cast<int32_t>(nodes_.size());
    nodes_.emplace_back();
  }
  nodes_[static_cast<size_t>(id)].alive = true;
  ++stats_->nodes;
  return id;
}

int32_t SglangTree::Split(int32_t node, int64_t offset) {
  const int32_t up = NewNode();  // before taking references: the arena may move
  Node& n = nodes_[static_cast<size_t>(node)];
  Node& u = nodes_[static_cast<size_t>(up)];
  u.parent = n.parent;
  u.children = 1;
  u.depth = n.depth - n.len + offset;
  u.buf = n.buf;
  u.begin = n.begin;
  u.len = offset;
  n.begin += offset;
  n.len -= offset;
  // _split_node: the new parent holds no state and inherits the full lock of what is below it.
  u.full_lock = n.full_lock;
  u.kv_seq = n.kv_seq;
  u.kv_clock = n.kv_clock;
  children_[ChildKey(u.parent, u.edge()[0])] = up;
  children_[ChildKey(up, n.edge()[0])] = node;
  n.parent = up;
  if (config_.every_node_usable) {
    AddState(up);
    --stats_->checkpoints_admitted;  // structure, not an admission
  }
  return up;
}

void SglangTree::SyncLeaf(int32_t id) {
  Node& n = nodes_[static_cast<size_t>(id)];
  const bool want = n.alive && EvictableLeaf(id);
  auto key = std::make_pair(n.kv_seq, id);
  if (want) {
    leaves_.insert(key);
  } else {
    leaves_.erase(key);
  }
}

void SglangTree::TouchKv(int32_t id) {
  if (id == kRoot) return;
  Node& n = nodes_[static_cast<size_t>(id)];
  leaves_.erase(std::make_pair(n.kv_seq, id));
  n.kv_seq = ++seq_;
  n.kv_clock = clock_;
  SyncLeaf(id);
}

void SglangTree::AddState(int32_t id) {
  Node& n = nodes_[static_cast<size_t>(id)];
  assert(!n.has_state && id != kRoot);
  n.has_state = true;
  ++states_;
  if (n.state_lock > 0) ++locked_states_;
  n.prev = lru_tail_;
  n.next = -1;
  if (lru_tail_ >= 0) {
    nodes_[static_cast<size_t>(lru_tail_)].next = id;
  } else {
    lru_head_ = id;
  }
  lru_tail_ = id;
  n.state_seq = ++seq_;
  n.state_clock = clock_;
  ++stats_->checkpoints_admitted;
  UpdateUse();
}

void SglangTree::RemoveState(int32_t id) {
  Node& n = nodes_[static_cast<size_t>(id)];
  assert(n.has_state);
  if (n.prev >= 0) {
    nodes_[static_cast<size_t>(n.prev)].next = n.next;
  } else {
    lru_head_ = n.next;
  }
  if (n.next >= 0) {
    nodes_[static_cast<size_t>(n.next)].prev = n.prev;
  } else {
    lru_tail_ = n.prev;
  }
  n.prev = n.next = -1;
  n.has_state = false;
  --states_;
  if (n.state_lock > 0) --locked_states_;
}

void SglangTree::RefreshState(int32_t id) {
  RemoveState(id);
  --stats_->checkpoints_admitted;  // AddState counts it again: not a new state
  AddState(id);
}

namespace {

// The length of the common prefix of a[0, n) and b[0, n), a block at a time.
size_t CommonPrefix(const Token* a, const Token* b, size_t n) {
  constexpr size_t kBlock = 16;
  size_t k = 0;
  while (k + kBlock <= n && std::memcmp(a + k, b + k, kBlock * sizeof(Token)) == 0) k += kBlock;
  while (k < n && a[k] == b[k]) ++k;
  return k;
}

}  // namespace

size_t SglangTree::MatchEdge(int32_t child, const Key& key, size_t pos) const {
  const Node& c = nodes_[static_cast<size_t>(child)];
  const size_t limit = std::min(key.size - pos, static_cast<size_t>(c.len));
  const Token* edge = c.edge();
  size_t k = 0;
  if (pos < key.head.size()) {
    const size_t n = std::min(limit, key.head.size() - pos);
    k = CommonPrefix(edge, key.head.data() + pos, n);
    if (k < n || k == limit) return k;  // (the tail may be empty: no pointer into it)
  }
  return k + CommonPrefix(edge + k, key.tail.data() + (pos + k - key.head.size()), limit - k);
}

SglangTree::Match SglangTree::MatchPrefix(std::span<const Token> key) {
  Match m;
  std::vector<int32_t>& path = path_;
  path.clear();
  int32_t node = kRoot;
  size_t pos = 0;
  while (pos < key.size()) {
    int32_t child = Child(node, key[pos]);
    if (child < 0) break;
    const size_t edge_size = static_cast<size_t>(nodes_[static_cast<size_t>(child)].len);
    const size_t k = MatchEdge(child, Key{key, {}, key.size()}, pos);
    // A partial match splits the edge even in a lookup.
    if (k < edge_size) child = Split(child, static_cast<int64_t>(k));
    path.push_back(child);
    pos += k;
    node = child;
    const Node& c = nodes_[static_cast<size_t>(child)];
    if (c.has_state) {
      m.state_node = child;
      m.hit = c.depth;
    }
    if (k < edge_size) break;
  }
  m.matched = static_cast<int64_t>(pos);
  // The KV order refreshes the whole matched path, parents after children (more recent); the
  // state order only the node whose state is used (MambaComponent.refresh_lru, PR #31648).
  for (auto it = path.rbegin(); it != path.rend(); ++it) TouchKv(*it);
  if (m.state_node != kRoot) RefreshState(m.state_node);
  return m;
}

SglangTree::Match SglangTree::Lookup(std::span<const Token> key) const {
  Match m;
  int32_t node = kRoot;
  size_t pos = 0;
  while (pos < key.size()) {
    const int32_t child = Child(node, key[pos]);
    if (child < 0) break;
    const Node& c = nodes_[static_cast<size_t>(child)];
    const size_t k = MatchEdge(child, Key{key, {}, key.size()}, pos);
    pos += k;
    node = child;
    if (k < static_cast<size_t>(c.len)) {
      if (config_.every_node_usable) {
        m.state_node = child;
        m.hit = static_cast<int64_t>(pos);
      }
      break;
    }
    if (c.has_state) {
      m.state_node = child;
      m.hit = c.depth;
    }
  }
  m.matched = static_cast<int64_t>(pos);
  return m;
}

std::pair<int32_t, bool> SglangTree::Insert(const Key& key, bool with_state, int32_t from) {
  std::vector<int32_t>& path = path_;
  path.clear();
  const size_t size = key.size;
  auto at = [&key](size_t i) {
    return i < key.head.size() ? key.head[i] : key.tail[i - key.head.size()];
  };
  int32_t node = from;
  size_t pos = static_cast<size_t>(nodes_[static_cast<size_t>(from)].depth);
  assert(pos <= size);
  while (pos < size) {
    int32_t child = Child(node, at(pos));
    if (child < 0) {
      // A new leaf holds a copy of the tokens new to the tree.
      auto buf = std::make_shared<std::vector<Token>>();
      buf->reserve(size - pos);
      const size_t head = key.head.size();
      const size_t split = std::max(pos, std::min(head, size));  // where the tail starts
      buf->insert(buf->end(), key.head.begin() + static_cast<std::ptrdiff_t>(std::min(pos, split)),
                  key.head.begin() + static_cast<std::ptrdiff_t>(split));
      if (size > head) {
        buf->insert(buf->end(), key.tail.begin() + static_cast<std::ptrdiff_t>(split - head),
                    key.tail.begin() + static_cast<std::ptrdiff_t>(size - head));
      }
      child = NewNode();
      Node& c = nodes_[static_cast<size_t>(child)];
      c.parent = node;
      c.buf = std::move(buf);
      c.len = static_cast<int64_t>(size - pos);
      c.depth = static_cast<int64_t>(size);
      children_[ChildKey(node, at(pos))] = child;
      ++nodes_[static_cast<size_t>(node)].children;
      if (node != kRoot) SyncLeaf(node);  // no longer a leaf
      tree_kv_ += c.len;
      path.push_back(child);
      node = child;
      break;
    }
    const size_t edge_size = static_cast<size_t>(nodes_[static_cast<size_t>(child)].len);
    const size_t k = MatchEdge(child, key, pos);
    if (k < edge_size) child = Split(child, static_cast<int64_t>(k));
    path.push_back(child);
    pos += k;
    node = child;
  }
  // _insert_helper refreshes the whole path, the part above `from` included.
  for (auto it = path.rbegin(); it != path.rend(); ++it) TouchKv(*it);
  for (int32_t id = from; id != kRoot; id = nodes_[static_cast<size_t>(id)].parent) TouchKv(id);
  bool stored = false;
  if (with_state && node != kRoot) {
    if (nodes_[static_cast<size_t>(node)].has_state) {
      RefreshState(node);  // the donated slot is freed; the existing state stays
    } else {
      AddState(node);
      stored = true;
    }
  }
  ++stats_->inserts;
  UpdateUse();
  return {node, stored};
}

void SglangTree::Lock(int32_t node) {
  if (node == kRoot) return;
  Node& locked = nodes_[static_cast<size_t>(node)];
  if (locked.state_lock++ == 0 && locked.has_state) ++locked_states_;
  for (int32_t id = node; id != kRoot; id = nodes_[static_cast<size_t>(id)].parent) {
    Node& n = nodes_[static_cast<size_t>(id)];
    if (n.full_lock++ == 0) locked_kv_ += n.len;
  }
  SyncLeaf(node);
}

void SglangTree::Unlock(int32_t node) {
  if (node == kRoot) return;
  Node& locked = nodes_[static_cast<size_t>(node)];
  if (--locked.state_lock == 0 && locked.has_state) --locked_states_;
  for (int32_t id = node; id != kRoot; id = nodes_[static_cast<size_t>(id)].parent) {
    Node& n = nodes_[static_cast<size_t>(id)];
    assert(n.full_lock > 0);
    if (--n.full_lock == 0) locked_kv_ -= n.len;
  }
  SyncLeaf(node);
}

int64_t SglangTree::EvictableKv(const Match& m) const {
  int64_t pinned = 0;  // the unlocked part of m's path
  int64_t depth = m.hit;
  for (int32_t id = m.state_node; id != kRoot; id = nodes_[static_cast<size_t>(id)].parent) {
    const Node& n = nodes_[static_cast<size_t>(id)];
    // m's node may be matched partly (every_node_usable): only its upper part gets locked.
    if (n.full_lock == 0) pinned += std::min(n.len, depth - (n.depth - n.len));
    depth = n.depth - n.len;
  }
  return tree_kv_ - locked_kv_ - pinned;
}

int64_t SglangTree::EvictableSlots(const Match& m) const {
  if (config_.slots == kUnbounded) return kUnbounded;
  // A state is evictable unless its node is locked (a locked leaf is itself locked: a lock
  // covers the node and its ancestors only).
  const Node& hit = nodes_[static_cast<size_t>(m.state_node)];
  const bool hit_evictable = m.state_node != kRoot && hit.has_state && hit.state_lock == 0;
  return states_ - locked_states_ - (hit_evictable ? 1 : 0);
}

int64_t SglangTree::FreeKv() const {
  if (config_.kv_tokens == kUnbounded) return kUnbounded;
  return config_.kv_tokens - tree_kv_ - external_kv_;
}

int64_t SglangTree::FreeSlots() const {
  if (config_.slots == kUnbounded) return kUnbounded;
  return config_.slots - states_ - external_slots_;
}

void SglangTree::DeleteLeaf(int32_t id) {
  while (true) {
    Node& n = nodes_[static_cast<size_t>(id)];
    assert(n.children == 0 && n.full_lock == 0 && id != kRoot);
    leaves_.erase(std::make_pair(n.kv_seq, id));
    if (n.has_state) {
      RemoveState(id);
      ++stats_->evicted_checkpoints;
    }
    const int64_t tokens = n.len;
    tree_kv_ -= tokens;
    stats_->evicted_tokens += tokens;
    const int32_t parent = n.parent;
    children_.erase(ChildKey(parent, n.edge()[0]));
    n.buf.reset();
    n.alive = false;
    free_ids_.push_back(id);
    --stats_->nodes;
    Node& p = nodes_[static_cast<size_t>(parent)];
    --p.children;
    // _iteratively_delete_tombstone_leaf: no leaf is a tombstone.
    if (parent != kRoot && p.children == 0 && !p.has_state && p.full_lock == 0) {
      id = parent;
      continue;
    }
    if (parent != kRoot) SyncLeaf(parent);
    break;
  }
  UpdateUse();
}

bool SglangTree::StateEvictable(int32_t id) const {
  const Node& n = nodes_[static_cast<size_t>(id)];
  return n.state_lock == 0 && !(n.children == 0 && n.full_lock > 0);
}

double SglangTree::Efficiency(int32_t id) const {
  const Node& n = nodes_[static_cast<size_t>(id)];
  if (!n.has_state) return 0;
  // Without this state a hit falls back to the nearest ancestor holding one.
  int64_t base = 0;
  for (int32_t a = n.parent; a != kRoot; a = nodes_[static_cast<size_t>(a)].parent) {
    if (nodes_[static_cast<size_t>(a)].has_state) {
      base = nodes_[static_cast<size_t>(a)].depth;
      break;
    }
  }
  const double flops =
      config_.model->PrefillFlops(0, n.depth) - config_.model->PrefillFlops(0, base);
  const int64_t bytes =
      config_.state_slot_bytes + (n.children == 0 ? n.len * config_.kv_bytes_per_token : 0);
  return bytes > 0 ? flops / static_cast<double>(bytes) : 0;
}

template <typename Range, typename ClockOf>
int32_t SglangTree::FlopAwareVictim(const Range& candidates, ClockOf clock_of,
                                    bool state_side) const {
  if (candidates.empty()) return -1;
  struct Scored {
    int32_t id;
    double r, e;
    int64_t seq;
  };
  std::vector<Scored> scored;
  scored.reserve(candidates.size());
  double r_min = 2, r_max = -1, e_min = 0, e_max = 0;
  for (int32_t id : candidates) {
    const Node& n = nodes_[static_cast<size_t>(id)];
    const double r = 1.0 / static_cast<double>(clock_ - clock_of(n) + 1);
    const double e = Efficiency(id);
    if (scored.empty()) e_min = e_max = e;
    scored.push_back({id, r, e, state_side ? n.state_seq : n.kv_seq});
    r_min = std::min(r_min, r);
    r_max = std::max(r_max, r);
    e_min = std::min(e_min, e);
    e_max = std::max(e_max, e);
  }
  const double dr = r_max - r_min, de = e_max - e_min;
  const Scored* best = nullptr;
  double best_score = 0;
  for (const Scored& s : scored) {
    const double score =
        (dr > 0 ? (s.r - r_min) / dr : 0.0) + (de > 0 ? config_.alpha * (s.e - e_min) / de : 0.0);
    if (best == nullptr || score < best_score ||
        (score == best_score && std::tie(s.seq, s.id) < std::tie(best->seq, best->id))) {
      best = &s;
      best_score = score;
    }
  }
  return best->id;
}

int32_t SglangTree::KvVictim() const {
  if (leaves_.empty()) return -1;
  if (config_.order == Order::kLru) return leaves_.begin()->second;
  std::vector<int32_t> ids;
  ids.reserve(leaves_.size());
  for (const auto& [seq, id] : leaves_) ids.push_back(id);
  return FlopAwareVictim(
      ids, [](const Node& n) { return n.kv_clock; }, false);
}

int32_t SglangTree::StateVictim() const {
  if (config_.order == Order::kLru) {
    for (int32_t id = lru_head_; id >= 0; id = nodes_[static_cast<size_t>(id)].next) {
      if (StateEvictable(id)) return id;
    }
    return -1;
  }
  std::vector<int32_t> ids;
  for (int32_t id = lru_head_; id >= 0; id = nodes_[static_cast<size_t>(id)].next) {
    if (StateEvictable(id)) ids.push_back(id);
  }
  return FlopAwareVictim(
      ids, [](const Node& n) { return n.state_clock; }, true);
}

bool SglangTree::EnsureFreeKv(int64_t tokens) {
  while (FreeKv() < tokens) {
    const int32_t victim = KvVictim();
    if (victim < 0) return false;
    ++stats_->evictions;
    DeleteLeaf(victim);
  }
  return true;
}

bool SglangTree::EnsureFreeSlots(int64_t slots, int64_t max_evictions) {
  int64_t evicted = 0;
  while (FreeSlots() < slots) {
    if (evicted >= max_evictions) return false;
    const int32_t victim = StateVictim();
    if (victim < 0) return false;
    ++stats_->evictions;
    ++evicted;
    if (IsLeaf(victim)) {
      DeleteLeaf(victim);
    } else {
      RemoveState(victim);  // a tombstone: its KV stays
      ++stats_->evicted_checkpoints;
      UpdateUse();
    }
  }
  return true;
}

void SglangTree::SetExternal(int64_t kv_tokens, int64_t slots) {
  external_kv_ = kv_tokens;
  external_slots_ = slots;
  UpdateUse();
}

void SglangTree::UpdateUse() {
  stats_->cached_tokens = tree_kv_;
  stats_->checkpoints = states_;
  stats_->kv_bytes = tree_kv_ * config_.kv_bytes_per_token;
  stats_->state_bytes = states_ * config_.state_slot_bytes;
  peak_kv_used_ = std::max(peak_kv_used_, tree_kv_ + external_kv_);
  peak_slots_used_ = std::max(peak_slots_used_, states_ + external_slots_);
}

std::pair<int64_t, int64_t> SglangTree::CountEvictable() const {
  int64_t kv = 0, slots = 0;
  for (size_t id = 1; id < nodes_.size(); ++id) {
    const Node& n = nodes_[id];
    if (!n.alive) continue;
    if (n.full_lock == 0) kv += n.len;
    if (n.has_state && StateEvictable(static_cast<int32_t>(id))) ++slots;
  }
  return {kv, slots};
}

std::vector<int64_t> SglangTree::StateDepths(std::span<const Token> tokens) const {
  std::vector<int64_t> out;
  int32_t node = kRoot;
  size_t pos = 0;
  while (pos < tokens.size()) {
    const int32_t child = Child(node, tokens[pos]);
    if (child < 0) break;
    const Node& c = nodes_[static_cast<size_t>(child)];
    if (static_cast<size_t>(c.len) > tokens.size() - pos ||
        !std::equal(c.edge(), c.edge() + c.len, tokens.begin() + static_cast<std::ptrdiff_t>(pos)))
      break;
    if (c.has_state) out.push_back(c.depth);
    pos += static_cast<size_t>(c.len);
    node = child;
  }
  return out;
}

}  // namespace marconi::sim
