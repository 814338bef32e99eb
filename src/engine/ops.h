// Element-wise operations and row-block iteration shared by the reference model's layers.
#ifndef MARCONI_ENGINE_OPS_H_
#define MARCONI_ENGINE_OPS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace marconi::engine::ops {

inline float Silu(float v) { return v / (1.0f + std::exp(-v)); }
inline float Softplus(float v) { return v > 20 ? v : std::log1p(std::exp(v)); }

// y[i] = x[i] / rms(x) * weight[i] over one row of weight.size() values.
inline void RmsNorm(const float* x, const std::vector<float>& weight, float* y) {
  const size_t n = weight.size();
  float ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + 1e-5f);
  for (size_t i = 0; i < n; ++i) y[i] = x[i] * inv * weight[i];
}

// RmsNorm of every row of `x` ([rows][weight.size()]).
inline std::vector<float> RmsNormRows(const std::vector<float>& x,
                                      const std::vector<float>& weight) {
  std::vector<float> y(x.size());
  for (size_t at = 0; at < x.size(); at += weight.size()) RmsNorm(&x[at], weight, &y[at]);
  return y;
}

// Calls fn(first_row, row_count) for the blocks of rows [0, rows) whose absolute positions
// (start + row) are cut at multiples of `chunk`: the same blocks whatever the prefill's start,
// as long as it starts on a boundary.
template <typename F>
void ForEachChunk(int64_t start, int64_t rows, int64_t chunk, F&& fn) {
  for (int64_t pos = start; pos < start + rows;) {
    const int64_t end = std::min(start + rows, (pos / chunk + 1) * chunk);
    fn(pos - start, end - pos);
    pos = end;
  }
}

}  // namespace marconi::engine::ops

#endif  // MARCONI_ENGINE_OPS_H_
