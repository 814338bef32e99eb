// Time-to-first-token models: the prefill latency of the tokens a request must compute.
#ifndef MARCONI_SIM_TTFT_MODEL_H_
#define MARCONI_SIM_TTFT_MODEL_H_

#include <string>
#include <utility>
#include <vector>

#include "marconi/model_spec.h"
#include "marconi/status.h"

namespace marconi::sim {

// The least-squares line y = intercept + slope x through `points` (x, y). kInvalidArgument for
// fewer than 2 points or when every x is the same.
struct FittedLine {
  double intercept = 0, slope = 0;
};
Result<FittedLine> FitLine(const std::vector<std::pair<double, double>>& points);

class TtftModel {
 public:
  // intercept + slope x computed tokens, never below 0 (a line fitted on long prefills can have a
  // negative intercept). The default is the least-squares line through the Marconi paper's
  // Jamba-1.5-Mini profile (SYSTEM.md): 17.8 ms + 0.05296 ms per token.
  static TtftModel Linear(double intercept_ms, double ms_per_token);
  // From a measured profile CSV with a header and columns prefill_tokens,ttft_ms: a least-squares
  // line (fit = true, as the paper did) or piecewise-linear interpolation between the measured
  // points (extrapolated with the end segments, never below 0). kParseError names file and line;
  // negative values, a fitted line whose latency falls with length (negative slope) and, when
  // interpolating, a latency that falls between two lengths (averaged per length) are refused.
  static Result<TtftModel> FromProfileCsv(const std::string& path, bool fit);
  // Roofline: PrefillFlops(cached, new) / (peak_flops x efficiency) + overhead.
  static Result<TtftModel> Roofline(double peak_flops, double efficiency, double overhead_ms);

  // Milliseconds to first token for a request whose first `cached` tokens are reused and
  // `computed` tokens are prefilled.
  double Ms(const ModelSpec& model, int64_t cached, int64_t computed) const;
  std::string Describe() const;

 private:
  enum class Kind { kLinear, kInterpolated, kRoofline };
  Kind kind_ = Kind::kLinear;
  double a_ = 17.8, b_ = 0.05296;  // linear: intercept, slope; roofline: overhead, flops/ms
  std::vector<std::pair<double, double>> points_;  // interpolated: (tokens, ms), ascending
  std::string source_ = "built-in line (Jamba-1.5-Mini profile)";
};

}  // namespace marconi::sim

#endif  // MARCONI_SIM_TTFT_MODEL_H_
