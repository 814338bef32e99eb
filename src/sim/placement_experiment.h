// The Pareto experiment of the sparse prefix caching paper: for a trace, checkpoints admitted per
// request against prefill tokens saved, for the distribution-aware placement (the DP) and the
// heuristic baselines, over a range of budgets. Every run serves the whole trace through an
// unbounded PrefixCache, so that only placement differs.
#ifndef MARCONI_SIM_PLACEMENT_EXPERIMENT_H_
#define MARCONI_SIM_PLACEMENT_EXPERIMENT_H_

#include <functional>
#include <string>
#include <vector>

#include "marconi/model_spec.h"
#include "sim/trace.h"

namespace marconi::sim {

struct PlacementExperimentOptions {
  int64_t chunk_tokens = 64;
  std::vector<int64_t> budgets = {1, 2, 4, 8, 16, 32};                     // DP and M-baselines
  std::vector<int64_t> block_tokens = {8192, 4096, 2048, 1024, 512, 256};  // block baseline
  bool attention_aware = false;  // DP cost a(d - s) + b(d^2 - s^2) from the model, else d - s
  // Called with (runs done, runs) after each strategy's replay of the trace.
  std::function<void(size_t, size_t)> progress;
};

struct PlacementPoint {
  std::string strategy;   // dp, dp-relative, block, balanced, sqrt, dyadic, last-only
  int64_t parameter = 0;  // budget M, or block size in tokens for block
  int64_t requests = 0;
  int64_t input_tokens = 0;
  int64_t saved_tokens = 0;       // prefill skipped (CacheStats::hit_tokens)
  int64_t recomputed_tokens = 0;  // cached but recomputed (matched - hit)
  int64_t checkpoints = 0;        // states admitted, the last-token one of each request included
  double flops_saved = 0;
  double flops_without_cache = 0;
  double checkpoints_per_request() const;
  double saved_fraction() const;
};

Result<std::vector<PlacementPoint>> RunPlacementExperiment(
    const Trace& trace, const ModelSpec& model, const PlacementExperimentOptions& options);

// CSV with a header line; JSON array of objects; an SVG Pareto plot.
std::string PlacementCsv(const std::vector<PlacementPoint>& points);
std::string PlacementJson(const std::vector<PlacementPoint>& points);
std::string PlacementSvg(const std::vector<PlacementPoint>& points, const std::string& title);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_PLACEMENT_EXPERIMENT_H_
