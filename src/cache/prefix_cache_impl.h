// The inside of PrefixCache, shared by its implementation and the invariant checker.
#ifndef MARCONI_CACHE_PREFIX_CACHE_IMPL_H_
#define MARCONI_CACHE_PREFIX_CACHE_IMPL_H_

#include <memory>

#include "cache/radix_tree.h"
#include "marconi/prefix_cache.h"

namespace marconi {

struct PrefixCache::Impl {
  PrefixCacheConfig config;
  ModelSpec model;
  std::unique_ptr<AdmissionPolicy> admission;
  std::unique_ptr<EvictionPolicy> eviction;
  internal::RadixTree tree;
  CacheStats stats;
  CacheListener* listener = nullptr;
  std::vector<Token> path_buffer;  // the evicted node's path, for the listener
  Timestamp last_now = 0;
  bool any_call = false;
  int64_t clock = 0;     // logical clock: ticks once per request (EvictionCandidate::access_clock)
  int64_t last_seq = 0;  // the last access sequence number handed out

  // `deepest`, if given, receives the node whose edge holds the last matched token (a partly
  // matched edge included), or the root when nothing matched.
  LookupResult Lookup(std::span<const Token> tokens, NodeId* deepest = nullptr) const;
  Status CheckTime(Timestamp now) const;
  // Floors `positions` to page boundaries, keeps those above `above`, sorts, drops duplicates.
  void AlignPlan(std::vector<int64_t>* positions, int64_t above) const;
  void AdvanceTime(Timestamp now);

  // Whether `id` should be in the policy's candidate set now.
  bool IsCandidate(NodeId id) const;
  EvictionCandidate CandidateOf(NodeId id) const;
  // Brings the policy up to date with every node changed since the last sync.
  void SyncPolicy();
  // Records an access to `id` at `now` with sequence number `seq` and the current clock.
  void Stamp(NodeId id, Timestamp now, int64_t seq);
  // Stamps `id`, and its ancestors if the policy touches paths, with access `seq`.
  void StampAccess(NodeId id, Timestamp now, int64_t seq);
  // One access (a new sequence number) of `id`: StampAccess.
  void Touch(NodeId id, Timestamp now);
  // Stores a state at `id` (or refreshes the one there). With `payload`, a new state takes it,
  // and an existing one with another payload keeps its own: the listener hears of the offered
  // one as not adopted (`path` is the tokens before `id`).
  void SetCheckpoint(NodeId id, Timestamp now, int64_t seq, const uint64_t* payload,
                     std::span<const Token> path);
  bool OverBudget() const;
  // Tells the listener (if any) that `victim`'s state, and its edge's KV if `leaf`, are going.
  void NotifyEviction(NodeId victim, bool leaf);
  // Evicts one candidate (state; and KV if a leaf), restoring the tree's shape invariants.
  void Evict(NodeId victim);
  void EraseFromPolicy(NodeId id);
  void UpdatePeaks();
  // Inserts, then evicts until every budget holds. The nodes holding this call's checkpoints, and
  // `held` (the resume node of the request being completed, if any), are what the inserting
  // request holds: they are pinned while the others are evicted, and become candidates again only
  // if evicting every other candidate was not enough (counted in insert_self_evictions).
  // With `pin_last`, the node of the last checkpoint gets one more pin, held after the call (the
  // caller wraps it in a Lease), and its id is stored there.
  // `payloads` is empty or parallel to `checkpoints`.
  Status InsertImpl(std::span<const Token> sequence, std::span<const int64_t> checkpoints,
                    Timestamp now, NodeId held = kNoNode, NodeId* pin_last = nullptr,
                    std::span<const uint64_t> payloads = {});
  // kInvalidArgument unless `payloads` is empty or has one entry per position.
  static Status CheckPayloads(const char* call, std::span<const uint64_t> payloads,
                              size_t positions);
  // kInvalidArgument unless `positions` are strictly increasing in (above, len] and multiples of
  // the page size; names `call`.
  Status CheckPositions(const char* call, std::span<const int64_t> positions, int64_t above,
                        int64_t len) const;
};

// Defined in invariant_checker.cc.
Status CheckCacheInvariants(const PrefixCache::Impl& impl);

}  // namespace marconi

#endif  // MARCONI_CACHE_PREFIX_CACHE_IMPL_H_
