// EvictionPolicy: which cached node to evict next.
//
// The cache tells the policy which nodes are eviction candidates and their attributes; the policy
// keeps its own index and names the victim. The cache decides what a candidate is (from
// candidate_scope()), keeps the policy informed through Upsert/Erase whenever an attribute
// changes, and carries out the eviction. A policy never sees the tree.
//
// Thread safety: none; a policy is owned by one cache and called under the cache's discipline.
#ifndef MARCONI_EVICTION_POLICY_H_
#define MARCONI_EVICTION_POLICY_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "marconi/status.h"
#include "marconi/types.h"

namespace marconi {

// What the cache tells a policy about one candidate node.
struct EvictionCandidate {
  NodeId node = kNoNode;
  // Time of the last access that counts for this policy (see EvictionPolicy::touches_path()).
  Timestamp last_access = 0;
  // The cache's access sequence number at that access: strictly increasing from one access to
  // the next, so it orders accesses that share a timestamp (a request's lookup and insert, or two
  // requests of a trace with equal times). Every policy breaks ties by it: the older access goes
  // first, whatever the node ids.
  int64_t access_seq = 0;
  // The cache's logical clock at that access: it ticks once per request (BeginRequest, or an
  // Insert made outside a request). For recency measured in requests rather than trace time.
  int64_t access_clock = 0;
  // Number of lookups that resumed from this node.
  int64_t hits = 0;
  // Tokens from the root to the node (the prefix its checkpoint represents).
  int64_t depth = 0;
  // FLOPs a hit on this node saves over a hit on its parent:
  // PrefillFlops(0, depth) - PrefillFlops(0, parent depth).
  double flops_saved = 0;
  // Bytes that evicting the node frees: its state, plus the KV of its edge if it is a leaf.
  int64_t bytes_freed = 0;
};

class EvictionPolicy {
 public:
  enum class CandidateScope {
    kLeaves,                // only nodes without children (SGLang-style radix LRU)
    kLeavesAndSingleChild,  // nodes with at most one child (Marconi): evicting a one-child node
                            // drops its state and merges its KV into the child
  };

  virtual ~EvictionPolicy() = default;

  // A short stable name ("lru", "flop_aware", "gdsf").
  virtual std::string_view name() const = 0;
  virtual CandidateScope candidate_scope() const = 0;
  // True: an access updates last_access of every node on the path from the root to the node hit
  // (LRU over leaves keeps ancestors at least as recent as descendants). False: only the node
  // whose state was used (Marconi: the ancestors' states were not used).
  virtual bool touches_path() const = 0;

  // Adds `c` to the candidates or replaces the entry of c.node. O(log n) or better amortised.
  virtual void Upsert(const EvictionCandidate& c) = 0;
  // Removes `node` from the candidates; a node that is not a candidate is ignored.
  virtual void Erase(NodeId node) = 0;
  // The candidate to evict next, or kNoNode when there are none. `clock` is the cache's logical
  // clock now (>= every candidate's access_clock). Deterministic: the same sequence of calls gives
  // the same answer. Does not remove it: the cache calls OnEvicted then Erase.
  virtual NodeId Victim(int64_t clock) = 0;
  // Called once the cache has evicted `c` (GDSF advances its clock here).
  virtual void OnEvicted(const EvictionCandidate& c) { (void)c; }
  virtual int64_t size() const = 0;
  virtual bool Contains(NodeId node) const = 0;

  // The weight of FLOP efficiency against recency, for policies that have one; others return
  // kUnimplemented and stay unchanged.
  virtual Status SetAlpha(double alpha) {
    (void)alpha;
    return Status::Unimplemented(std::string(name()) + " eviction has no alpha");
  }
  virtual double alpha() const { return 0; }

  // A deep copy with the same candidates and state.
  virtual std::unique_ptr<EvictionPolicy> Clone() const = 0;
};

}  // namespace marconi

#endif  // MARCONI_EVICTION_POLICY_H_
