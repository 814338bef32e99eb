// The built-in admission and eviction policies and their configurations.
#ifndef MARCONI_POLICIES_H_
#define MARCONI_POLICIES_H_

#include <memory>
#include <string>
#include <string_view>

#include "marconi/admission_policy.h"
#include "marconi/eviction_policy.h"
#include "marconi/sparse_placement.h"
#include "marconi/status.h"

namespace marconi {

// Marconi's judicious admission: the branch point found by speculative insertion of the input
// (purely-input reuse: shared system prompts) and the last decoded token (input-and-output reuse:
// the next turn). At most two checkpoints per request.
struct JudiciousAdmissionConfig {};
std::unique_ptr<AdmissionPolicy> MakeJudiciousAdmission(const JudiciousAdmissionConfig& = {});

// Fine-grained checkpoints every block_size tokens (the vLLM+ baseline): a state at every full
// block of input and output. Tokens after the last full block are not cached.
struct BlockAdmissionConfig {
  int64_t block_size = 32;  // must be >= 1
};
Result<std::unique_ptr<AdmissionPolicy>> MakeBlockAdmission(const BlockAdmissionConfig& config);

// Only the last decoded token (conversation continuation, no purely-input reuse).
struct LastTokenAdmissionConfig {};
std::unique_ptr<AdmissionPolicy> MakeLastTokenAdmission(const LastTokenAdmissionConfig& = {});

// Sparse placement: per cached entry, states at the positions of the optimal placement for the
// overlap depths observed so far (SolvePlacement over a decayed OverlapHistogram of every
// request's matched_tokens, misses included), on chunk boundaries, capped at the entry's length;
// balanced placement until min_observations. Plus the last decoded token if last_token.
struct SparseAdmissionConfig {
  int64_t chunk_tokens = 64;      // positions are multiples of this; >= 1
  int64_t max_tokens = 32768;     // deepest position considered; >= chunk_tokens
  int64_t budget = 8;             // placed checkpoints per entry (M); >= 0
  double decay = 0.99;            // histogram decay per observation; in (0, 1]
  int64_t resolve_every = 10;     // observations between re-solves; >= 1
  int64_t min_observations = 10;  // balanced placement before that many; >= 0
  bool last_token = true;
  RecomputeCost cost = {};  // per chunk (see RecomputeCostOf)
  // Relative mode (ours, not the paper's): depths are observed as a fraction of the request's
  // input length, in relative_bins bins, and the placement is scaled to each entry's length, so
  // one placement serves entries of different lengths (documents of varied sizes).
  bool relative = false;
  int64_t relative_bins = 512;  // >= 1
};
Result<std::unique_ptr<AdmissionPolicy>> MakeSparseAdmission(const SparseAdmissionConfig& config);

// The heuristic baselines of the sparse-placement experiment, placed over each entry's own
// input (n = input_tokens / chunk_tokens chunks): every block_tokens (kBlock), or `budget`
// positions by BalancedPlacement, SqrtPlacement or DyadicPlacement over 1..n, times chunk_tokens.
// Plus the last decoded token if last_token.
struct HeuristicPlacementAdmissionConfig {
  enum class Kind { kBlock, kBalanced, kSqrt, kDyadic };
  Kind kind = Kind::kBalanced;
  int64_t budget = 8;           // kBalanced, kSqrt, kDyadic; >= 0
  int64_t block_tokens = 1024;  // kBlock; >= 1
  int64_t chunk_tokens = 64;    // >= 1
  bool last_token = true;
};
Result<std::unique_ptr<AdmissionPolicy>> MakeHeuristicPlacementAdmission(
    const HeuristicPlacementAdmissionConfig& config);

// LRU over leaves, the whole path touched on access (the SGLang+ baseline). Ties: the older
// access (access_seq), then the smaller node id.
struct LruEvictionConfig {};
std::unique_ptr<EvictionPolicy> MakeLruEviction(const LruEvictionConfig& = {});

// Marconi's FLOP-aware eviction over nodes with <= 1 child, only the node used touched:
// S(n) = recency(n) + alpha * flop_efficiency(n), both min-max normalised over the current
// candidates (a constant attribute normalises to 0); the lowest S is evicted, ties to the older
// access (access_seq) then the smaller node id. flop_efficiency = flops_saved / bytes_freed.
// alpha = 0 is LRU over the same candidates.
struct FlopAwareEvictionConfig {
  // What "recency" is before normalisation. The paper says only "normalised recency".
  enum class Recency {
    // 1 / (clock - access_clock + 1) on the cache's logical clock, which ticks once per request:
    // the authors' simulator (1 / (now - last access) on a per-call counter). Hyperbolic: the
    // last few requests' nodes are far apart, everything older is bunched near 0, so alpha
    // weighs efficiency against "recent or not" more than against age.
    kInverseRequests,
    // last_access, the trace time of the last access: linear in age.
    kLinearTime,
  };
  double alpha = 0.0;  // must be finite and >= 0
  Recency recency = Recency::kInverseRequests;
};
Result<std::unique_ptr<EvictionPolicy>> MakeFlopAwareEviction(
    const FlopAwareEvictionConfig& config);
// "inverse-requests" | "linear-time"; kInvalidArgument names the choices.
Result<FlopAwareEvictionConfig::Recency> ParseRecency(std::string_view name);
std::string_view RecencyName(FlopAwareEvictionConfig::Recency recency);

// Greedy-Dual-Size-Frequency over nodes with <= 1 child, for comparison with size-aware caching:
// H(n) = clock + (1 + hits) * flops_saved / bytes_freed, recomputed whenever the node changes;
// the lowest H is evicted (ties: older last_access, then older access_seq) and the clock
// advances to it.
struct GdsfEvictionConfig {};
std::unique_ptr<EvictionPolicy> MakeGdsfEviction(const GdsfEvictionConfig& = {});

// By name: admission "judicious" | "block" (block_size 32) | "last" | "sparse"; eviction "lru" |
// "flop_aware" (alpha 0) | "gdsf". kNotFound lists the names.
Result<std::unique_ptr<AdmissionPolicy>> MakeAdmissionByName(const std::string& name);
Result<std::unique_ptr<EvictionPolicy>> MakeEvictionByName(const std::string& name);

}  // namespace marconi

#endif  // MARCONI_POLICIES_H_
