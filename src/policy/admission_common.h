// Pieces shared by the built-in admission policies.
#ifndef MARCONI_POLICY_ADMISSION_COMMON_H_
#define MARCONI_POLICY_ADMISSION_COMMON_H_

#include <vector>

#include "marconi/admission_policy.h"

namespace marconi::internal {

// The state after the last decoded token (or after the input when nothing was decoded).
inline void AppendLastToken(const AdmissionContext& ctx, int64_t output_tokens,
                            std::vector<int64_t>* positions) {
  positions->push_back(ctx.input_tokens + output_tokens);
}

}  // namespace marconi::internal

#endif  // MARCONI_POLICY_ADMISSION_COMMON_H_
