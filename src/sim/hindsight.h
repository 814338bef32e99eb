// The best fixed alpha of the tuner's grid in hindsight: the oracle's tuning, and that of
// Marconi's eviction in an engine when no alpha is fixed. One place for the unloaded replay
// (replay.cc) and the serving model (serving/scheduler.cc).
#ifndef MARCONI_SIM_HINDSIGHT_H_
#define MARCONI_SIM_HINDSIGHT_H_

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "marconi/alpha_tuner.h"
#include "marconi/status.h"
#include "sim/replay.h"
#include "sim/systems.h"
#include "util/parallel_for.h"

namespace marconi::sim {

// Whether `kind` is tuned in hindsight here: the oracle, and an engine row with Marconi's
// eviction whose alpha is not fixed (-1).
inline bool TunedInHindsight(SystemKind kind, const SimConfig& config) {
  const SystemSpec& spec = SpecOf(kind);
  return spec.tuning == Tuning::kHindsight &&
         (spec.engine == nullptr || Param(kind, "alpha", config.params) < 0);
}

// One run per alpha of config.tuner.grid (sorted; on config.threads threads), `run(config,
// alpha)` returning Result<R>; an engine row gets the alpha as its parameter too. Keeps the run
// of the highest `objective(R)` (ties: the smaller alpha) and describes the choice as one
// TuningRound over `requests` requests. kInvalidArgument for an empty grid; a run's error
// otherwise.
template <typename R, typename Run, typename Objective>
Result<std::pair<R, TuningRound>> BestAlphaInHindsight(SystemKind kind, const SimConfig& config,
                                                       int64_t requests, Run&& run,
                                                       Objective&& objective) {
  std::vector<double> grid = config.tuner.grid;
  std::sort(grid.begin(), grid.end());
  if (grid.empty()) return Status::InvalidArgument("the oracle needs a grid of alphas");
  std::vector<Result<R>> runs(grid.size(), Status::Unimplemented("not run"));
  internal::ParallelFor(grid.size(), static_cast<size_t>(std::max(1, config.threads)),
                        [&](size_t i) {
                          SimConfig c = config;
                          if (i > 0) c.progress = nullptr;  // one run reports, from one thread
                          if (SpecOf(kind).engine != nullptr) {
                            c.params[std::string(SystemName(kind)) + ".alpha"] = grid[i];
                          }
                          runs[i] = run(c, grid[i]);
                        });
  size_t best = 0;
  TuningRound round;
  round.alphas = grid;
  for (size_t i = 0; i < grid.size(); ++i) {
    if (!runs[i].ok()) return runs[i].status();
    round.objective.push_back(objective(*runs[i]));
    if (round.objective[i] > round.objective[best]) best = i;
  }
  round.chosen_alpha = grid[best];
  round.window = requests;
  round.after_request = requests;
  return std::pair<R, TuningRound>{std::move(runs[best]).value(), round};
}

}  // namespace marconi::sim

#endif  // MARCONI_SIM_HINDSIGHT_H_
