// Recomputes the cache's counters and shape from scratch and compares them with what the cache
// maintains incrementally. Tests call it after every operation.
#include <string>
#include <vector>

#include "cache/prefix_cache_impl.h"

namespace marconi {

using internal::Node;
using internal::RadixTree;

namespace {

Status Violation(NodeId id, const std::string& what) {
  return Status::FailedPrecondition("invariant violated at node " + std::to_string(id) + ": " +
                                    what);
}

}  // namespace

Status CheckCacheInvariants(const PrefixCache::Impl& impl) {
  const RadixTree& tree = impl.tree;
  const CacheStats& st = impl.stats;
  int64_t tokens = 0, checkpoints = 0, nodes = 0, candidates = 0;
  // Walk from the root, so that unreachable alive nodes are detected by the count below.
  std::vector<NodeId> stack = {RadixTree::kRoot};
  while (!stack.empty()) {
    const NodeId id = stack.back();
    stack.pop_back();
    const Node& n = tree.node(id);
    if (!n.alive) return Violation(id, "reachable but not alive");
    if (id == RadixTree::kRoot) {
      if (!n.edge.empty() || n.has_checkpoint || n.depth != 0) {
        return Violation(id, "root must have no edge, no state and depth 0");
      }
    } else {
      ++nodes;
      const Node& p = tree.node(n.parent);
      if (n.edge.empty()) return Violation(id, "empty edge");
      if (n.depth != p.depth + static_cast<int64_t>(n.edge.size())) {
        return Violation(id, "depth is not parent depth + edge length");
      }
      if (!n.has_checkpoint && n.children.size() < 2) {
        return Violation(id, "a node without state must branch (>= 2 children)");
      }
      if (n.pins > 0 && !n.has_checkpoint) return Violation(id, "pinned node without state");
      tokens += static_cast<int64_t>(n.edge.size());
      checkpoints += n.has_checkpoint ? 1 : 0;
    }
    if (n.pins < 0) return Violation(id, "negative pin count");
    for (size_t i = 0; i < n.children.size(); ++i) {
      const auto& [token, child] = n.children[i];
      const Node& c = tree.node(child);
      if (!c.alive || c.parent != id) return Violation(child, "child link does not match parent");
      if (c.edge.empty() || c.edge[0] != token) {
        return Violation(child, "child key is not the first token of its edge");
      }
      if (i > 0 && n.children[i - 1].first >= token) {
        return Violation(id, "children not strictly sorted by first token");
      }
      stack.push_back(child);
    }
    const bool candidate = impl.IsCandidate(id);
    candidates += candidate ? 1 : 0;
    if (candidate != impl.eviction->Contains(id) || candidate != n.in_policy) {
      return Violation(id, std::string("eviction policy ") +
                               (candidate ? "misses a candidate" : "holds a non-candidate"));
    }
  }
  if (nodes != tree.size()) {
    return Violation(RadixTree::kRoot, "alive nodes " + std::to_string(tree.size()) +
                                           " but reachable " + std::to_string(nodes));
  }
  if (candidates != impl.eviction->size()) {
    return Violation(RadixTree::kRoot, "policy holds " + std::to_string(impl.eviction->size()) +
                                           " candidates, tree implies " +
                                           std::to_string(candidates));
  }
  const int64_t kv = tokens * impl.model.KvBytesPerToken();
  const int64_t state = checkpoints * impl.model.StateBytesPerCheckpoint();
  if (tokens != st.cached_tokens || checkpoints != st.checkpoints || kv != st.kv_bytes ||
      state != st.state_bytes || nodes != st.nodes) {
    return Violation(RadixTree::kRoot,
                     "counters drifted: tokens " + std::to_string(tokens) + " vs " +
                         std::to_string(st.cached_tokens) + ", checkpoints " +
                         std::to_string(checkpoints) + " vs " + std::to_string(st.checkpoints) +
                         ", nodes " + std::to_string(nodes) + " vs " + std::to_string(st.nodes));
  }
  if (st.peak_bytes < kv + state) return Violation(RadixTree::kRoot, "peak below current bytes");
  return Status::Ok();
}

}  // namespace marconi
