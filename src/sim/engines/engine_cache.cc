#include "sim/engines/engine_cache.h"

#include <algorithm>

namespace marconi::sim {

EngineLookup EngineCache::ServeCounted(const ModelSpec& model, std::span<const Token> input,
                                       std::span<const Token> output, Timestamp now) {
  const int64_t n = static_cast<int64_t>(input.size());
  const EngineLookup found = Serve(input, output, now);
  ++stats_.requests;
  stats_.input_tokens += n;
  stats_.hit_tokens += found.reusable_tokens;
  stats_.matched_tokens += found.attention_hit_tokens;
  if (found.reusable_tokens > 0) ++stats_.hit_requests;
  stats_.flops_saved += model.FlopsSaved(found.reusable_tokens, n);
  stats_.flops_without_cache += model.PrefillFlops(0, n);
  return found;
}

void EngineCache::UpdatePeaks() {
  stats_.peak_kv_bytes = std::max(stats_.peak_kv_bytes, stats_.kv_bytes);
  stats_.peak_state_bytes = std::max(stats_.peak_state_bytes, stats_.state_bytes);
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.kv_bytes + stats_.state_bytes);
}

}  // namespace marconi::sim
