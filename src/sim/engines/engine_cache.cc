#include "sim/engines/engine_cache.h"

#include <algorithm>
#include <cassert>

namespace marconi::sim {

EngineLookup EngineCache::Serve(std::span<const Token> input, std::span<const Token> output,
                                Timestamp now) {
  constexpr RequestId kAlone = 0;
  const int64_t n = static_cast<int64_t>(input.size());
  const int64_t g = static_cast<int64_t>(output.size());
  EngineLookup found;
  if (Admit(kAlone, input, output, n, 0, now, &found) != EngineAdmit::kAdmitted) return found;
  // Alone, a request the engine admitted always finds its memory: nothing else holds any.
  const auto advance = [&](int64_t from, int64_t to, int64_t step) {
    for (int64_t p = from; p < to;) {
      const int64_t end = step > 0 ? std::min(to, (p / step + 1) * step) : to;
      const bool reserved = Reserve(kAlone, end - p);
      assert(reserved && "a request alone always finds its memory");
      (void)reserved;
      Computed(kAlone, end);
      p = end;
    }
  };
  const int64_t chunk = ServePrefillChunk();
  for (int64_t p = found.reusable_tokens; p < n;) {
    const int64_t end = chunk > 0 ? std::min(n, p + chunk) : n;
    advance(p, end, 0);
    p = end;
  }
  // The last sampled token is never decoded.
  if (g > 1) advance(n, n + g - 1, ServeDecodeStride());
  Finish(kAlone, now);
  return found;
}

void EngineCache::CountRequest(const ModelSpec& model, int64_t input_tokens,
                               const EngineLookup& found) {
  ++stats_.requests;
  stats_.input_tokens += input_tokens;
  stats_.hit_tokens += found.reusable_tokens;
  stats_.matched_tokens += found.attention_hit_tokens;
  if (found.reusable_tokens > 0) ++stats_.hit_requests;
  stats_.flops_saved += model.FlopsSaved(found.reusable_tokens, input_tokens);
  stats_.flops_without_cache += model.PrefillFlops(0, input_tokens);
}

EngineLookup EngineCache::ServeCounted(const ModelSpec& model, std::span<const Token> input,
                                       std::span<const Token> output, Timestamp now) {
  const EngineLookup found = Serve(input, output, now);
  CountRequest(model, static_cast<int64_t>(input.size()), found);
  return found;
}

void EngineCache::UpdatePeaks() {
  stats_.peak_kv_bytes = std::max(stats_.peak_kv_bytes, stats_.kv_bytes);
  stats_.peak_state_bytes = std::max(stats_.peak_state_bytes, stats_.state_bytes);
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.kv_bytes + stats_.state_bytes);
}

}  // namespace marconi::sim
