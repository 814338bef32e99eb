// AdmissionPolicy: at which positions of a request the recurrent state is checkpointed.
//
// Positions are token counts from the start of the sequence: a checkpoint at position p is the
// state after tokens [0, p). The policy is asked twice per request: before prefill (positions
// inside the input, which the engine must capture while prefilling) and after decode (positions
// inside the output, and the last decoded token).
//
// Thread safety: Plan* are const and may be called concurrently; Observe mutates and is called by
// the owning cache under its single-thread discipline.
#ifndef MARCONI_ADMISSION_POLICY_H_
#define MARCONI_ADMISSION_POLICY_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "marconi/types.h"

namespace marconi {

// What a lookup of a request's input found in the cache.
struct LookupResult {
  // Tokens of the query that can be skipped: the depth of the deepest checkpointed node whose
  // whole path matches the query (0 if none). Always <= matched_tokens.
  int64_t reusable_tokens = 0;
  // The node to resume from (holds the checkpoint at reusable_tokens), or kNoNode.
  NodeId resume_node = kNoNode;
  // The engine's payload of that checkpoint (PrefixCache::Insert's `payloads`): its state slot,
  // say. 0 when there is no hit or the state was stored without one.
  uint64_t resume_payload = 0;
  // Length of the longest common prefix of the query with any cached sequence (KV present).
  int64_t matched_tokens = 0;
  // Where inserting the query would create a branch: a split inside an edge, or a new child of a
  // node without checkpoint, with the query continuing past it. 0 when there is none.
  int64_t branch_point = 0;
  // The whole query is cached with a state at its end, but the cache leaves the last token to
  // compute (PrefixCacheConfig::leave_last_token): reusable_tokens stops at an earlier state.
  bool whole_input_cached = false;
};

struct AdmissionContext {
  int64_t input_tokens = 0;
  LookupResult lookup;
};

class AdmissionPolicy {
 public:
  virtual ~AdmissionPolicy() = default;
  virtual std::string_view name() const = 0;
  // Called by PrefixCache::BeginRequest with every request's lookup, before PlanPrefill, so that
  // adaptive policies can learn the workload (sparse placement learns overlap depths).
  virtual void Observe(const AdmissionContext& ctx) { (void)ctx; }
  // Appends strictly increasing positions in (reusable_tokens, input_tokens] to capture during
  // prefill (the engine computes no state before the point it resumes from).
  virtual void PlanPrefill(const AdmissionContext& ctx, std::vector<int64_t>* positions) const = 0;
  // Appends strictly increasing positions in [input_tokens + 1, input_tokens + output_tokens]
  // (or input_tokens itself when output_tokens == 0) to capture during decode.
  virtual void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                          std::vector<int64_t>* positions) const = 0;
  virtual std::unique_ptr<AdmissionPolicy> Clone() const = 0;
};

}  // namespace marconi

#endif  // MARCONI_ADMISSION_POLICY_H_
