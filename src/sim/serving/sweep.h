// `marconi sweep --serving`: the serving model over a grid of models x memory budgets x arrival
// rates x systems x routers, cells run in parallel; serving.csv and plots of TTFT p95 and
// goodput against the arrival rate. The output depends only on the inputs, never on thread
// scheduling.
#ifndef MARCONI_SIM_SERVING_SWEEP_H_
#define MARCONI_SIM_SERVING_SWEEP_H_

#include <functional>
#include <string>
#include <vector>

#include "marconi/status.h"
#include "sim/serving/metrics.h"
#include "sim/serving/scheduler.h"

namespace marconi::sim::serving {

struct ServingSweepSpec {
  std::vector<ModelSpec> models;
  std::vector<int64_t> budgets;             // bytes; 0: the device's (HBM x u - weights)
  std::vector<double> sessions_per_second;  // 0: the trace's own times
  std::vector<SystemKind> systems;
  std::vector<std::string> routers = {"round-robin"};
  SimConfig base;         // system parameters and tuner; model set per cell, threads = 1
  ServingConfig serving;  // device, batching, replicas; budget_bytes and router set per cell
  Slo slo;
  int threads = 1;  // cells run concurrently
};

struct ServingSweepCell {
  std::string model;
  std::string device;
  int64_t budget_bytes = 0;  // as given (0: the device's); summary.budget_bytes is the bytes
  double sessions_per_second = 0;
  ServingSummary summary;  // system, router, replicas
};

// Runs every cell (the rates one after the other: each re-timed trace is a copy of the trace);
// `progress(done, total)` after each cell, serialised. Errors name the cell.
Result<std::vector<ServingSweepCell>> RunServingSweep(
    const Trace& trace, const ServingSweepSpec& spec,
    const std::function<void(size_t, size_t)>& progress = {});

// model,device,budget_bytes,sessions_per_second,system,router, then the ServingFields() marked
// csv (metrics.h: the same list the JSON is written from), one row per cell.
std::string ServingSweepCsv(const std::vector<ServingSweepCell>& cells);

// Per (model, budget): TTFT p95 and goodput against the arrival rate, one series per system
// (system/router with several routers). Returns the files written.
Result<std::vector<std::string>> WriteServingSweepPlots(const std::vector<ServingSweepCell>& cells,
                                                        const std::string& directory);

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_SWEEP_H_
