// RadixTree: the arena-allocated token tree under PrefixCache. Structure only: it knows edges,
// children, depths and per-node flags, and records which nodes changed (the dirty list) so that
// the cache can bring its eviction policy up to date in one place. It knows nothing of bytes or
// policies.
#ifndef MARCONI_CACHE_RADIX_TREE_H_
#define MARCONI_CACHE_RADIX_TREE_H_

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "marconi/types.h"

namespace marconi::internal {

// Length of the common prefix of a[0, n) and b[0, n). Compares 64-token chunks with memcmp
// (vectorised by libc) before the element loop: edges of tens of thousands of tokens are common.
int64_t CommonPrefix(const Token* a, const Token* b, int64_t n);

struct Node {
  NodeId parent = kNoNode;
  int64_t depth = 0;        // tokens from the root to the end of this node's edge
  std::vector<Token> edge;  // the tokens between the parent and this node (their KV)
  std::vector<std::pair<Token, NodeId>> children;  // sorted by first token of the child's edge
  Timestamp last_access = 0;
  int64_t access_seq = 0;    // the cache's access sequence number at last_access
  int64_t access_clock = 0;  // the cache's logical clock (requests) at last_access
  int64_t hits = 0;
  uint64_t payload = 0;  // the engine's handle of the checkpoint (0 when none was given)
  int32_t pins = 0;
  bool alive = false;
  bool has_checkpoint = false;
  bool dirty = false;      // queued in the dirty list
  bool in_policy = false;  // currently a candidate known to the eviction policy
};

class RadixTree {
 public:
  static constexpr NodeId kRoot = 0;

  RadixTree();

  Node& node(NodeId id) { return nodes_[static_cast<size_t>(id)]; }
  const Node& node(NodeId id) const { return nodes_[static_cast<size_t>(id)]; }
  // Number of slots (alive or free); node ids are in [0, slots()).
  size_t slots() const { return nodes_.size(); }
  // Alive nodes, root excluded.
  int64_t size() const { return alive_ - 1; }

  // The child of `parent` whose edge starts with `token`, or kNoNode. O(log children).
  NodeId FindChild(NodeId parent, Token token) const;

  // Adds a leaf under `parent` holding `edge` (non-empty, first token not yet a child's).
  NodeId AddLeaf(NodeId parent, std::span<const Token> edge);
  // Splits `child`'s edge after its first `k` tokens (0 < k < edge length): a new node takes
  // those k tokens between the parent and `child`. Returns the new node. Ids of both stay valid.
  NodeId Split(NodeId child, int64_t k);
  // Unlinks and frees a leaf (no children).
  void RemoveLeaf(NodeId leaf);
  // `id` has exactly one child: the child absorbs `id`'s edge at its front and takes its place
  // under the parent; `id` is freed. Returns the child, whose id stays valid.
  NodeId MergeIntoChild(NodeId id);

  // Queues a node for the cache's policy sync (once until taken).
  void MarkDirty(NodeId id);
  // Hands over the queued ids and clears the queue (flags reset).
  std::vector<NodeId> TakeDirty();

 private:
  NodeId Allocate();
  void Free(NodeId id);
  void ReplaceChild(NodeId parent, NodeId old_child, NodeId new_child);

  std::vector<Node> nodes_;
  std::vector<NodeId> free_;
  std::vector<NodeId> dirty_;
  int64_t alive_ = 0;
};

}  // namespace marconi::internal

#endif  // MARCONI_CACHE_RADIX_TREE_H_
