// CacheStats: the cache's counters. Each is defined by its formula; they are API.
#ifndef MARCONI_CACHE_STATS_H_
#define MARCONI_CACHE_STATS_H_

#include <cstdint>

namespace marconi {

struct CacheStats {
  // --- per request (counted by PrefixCache::BeginRequest) ---
  int64_t requests = 0;      // number of BeginRequest calls that succeeded
  int64_t hit_requests = 0;  // requests with reusable_tokens > 0
  int64_t input_tokens = 0;  // sum over requests of the input length
  int64_t hit_tokens = 0;    // sum over requests of reusable_tokens
  // sum over requests of matched_tokens (cached KV shared with the input); matched_tokens -
  // hit_tokens were cached but recomputed, for want of a checkpoint deep enough
  int64_t matched_tokens = 0;
  // sum over requests of ModelSpec::FlopsSaved(reusable_tokens, input length)
  double flops_saved = 0;
  // requests whose whole input was cached with a state at its end, resumed from an earlier state
  // because PrefixCacheConfig::leave_last_token leaves the last token to compute
  int64_t last_token_recomputes = 0;
  // sum over requests of ModelSpec::PrefillFlops(0, input length): the cost with no cache
  double flops_without_cache = 0;

  // --- current content (exact, checked by the invariant checker) ---
  int64_t cached_tokens = 0;  // sum of edge lengths: tokens whose KV is held
  int64_t checkpoints = 0;    // nodes holding a state
  int64_t nodes = 0;          // tree nodes, root excluded
  int64_t kv_bytes = 0;       // cached_tokens * KvBytesPerToken()
  int64_t state_bytes = 0;    // checkpoints * StateBytesPerCheckpoint()

  // --- high-water marks, sampled at the end of every mutating call ---
  int64_t peak_kv_bytes = 0;
  int64_t peak_state_bytes = 0;
  int64_t peak_bytes = 0;  // max of kv_bytes + state_bytes

  // --- admission and eviction ---
  int64_t inserts = 0;                // successful Insert calls (CompleteRequest included)
  int64_t checkpoints_admitted = 0;   // states newly stored (re-inserting an existing one: 0)
  int64_t evictions = 0;              // nodes chosen as victims
  int64_t evicted_checkpoints = 0;    // states dropped by evictions
  int64_t evicted_tokens = 0;         // KV tokens dropped by evictions (leaf edges)
  int64_t over_capacity_inserts = 0;  // inserts that left the cache over capacity (all pinned)
  // checkpoints that an insert evicted among those it had just stored or the resume node of its
  // request: only once every other candidate was gone, i.e. the new content alone did not fit
  int64_t self_evictions = 0;

  // hit_tokens / input_tokens (0 when no input).
  double token_hit_rate() const {
    return input_tokens > 0 ? static_cast<double>(hit_tokens) / static_cast<double>(input_tokens)
                            : 0.0;
  }
  // hit_requests / requests (0 when no request).
  double request_hit_rate() const {
    return requests > 0 ? static_cast<double>(hit_requests) / static_cast<double>(requests) : 0.0;
  }
  // kv_bytes + state_bytes.
  int64_t bytes() const { return kv_bytes + state_bytes; }
};

}  // namespace marconi

#endif  // MARCONI_CACHE_STATS_H_
