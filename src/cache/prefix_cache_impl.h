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

  LookupResult Lookup(std::span<const Token> tokens) const;
  Status CheckTime(Timestamp now) const;
  void AdvanceTime(Timestamp now);

  // Whether `id` should be in the policy's candidate set now.
  bool IsCandidate(NodeId id) const;
  EvictionCandidate CandidateOf(NodeId id) const;
  // Brings the policy up to date with every node changed since the last sync.
  void SyncPolicy();
  void Touch(NodeId id, Timestamp now);
  void SetCheckpoint(NodeId id, Timestamp now);
  bool OverBudget() const;
  // Tells the listener (if any) that `victim`'s state, and its edge's KV if `leaf`, are going.
  void NotifyEviction(NodeId victim, bool leaf);
  // Evicts one candidate (state; and KV if a leaf), restoring the tree's shape invariants.
  void Evict(NodeId victim);
  void EraseFromPolicy(NodeId id);
  void UpdatePeaks();
  Status InsertImpl(std::span<const Token> sequence, std::span<const int64_t> checkpoints,
                    Timestamp now);
};

// Defined in invariant_checker.cc.
Status CheckCacheInvariants(const PrefixCache::Impl& impl);

}  // namespace marconi

#endif  // MARCONI_CACHE_PREFIX_CACHE_IMPL_H_
