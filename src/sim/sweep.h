// Sweeps: a grid of models x capacities x arrival rates x policies, run in parallel; CSV and SVG
// plots. The output depends only on the inputs, never on thread scheduling.
#ifndef MARCONI_SIM_SWEEP_H_
#define MARCONI_SIM_SWEEP_H_

#include <functional>
#include <string>
#include <vector>

#include "sim/replay.h"
#include "sim/report.h"

namespace marconi::sim {

struct SweepSpec {
  std::vector<ModelSpec> models;
  std::vector<int64_t> capacities;          // bytes
  std::vector<double> sessions_per_second;  // 0: the trace's own arrival times
  std::vector<SystemKind> systems;
  SimConfig base;   // TTFT model, block size, tuner; model and capacity are set per cell
  int threads = 1;  // cells run concurrently
};

struct SweepCell {
  std::string model;
  int64_t capacity_bytes = 0;
  double sessions_per_second = 0;
  Summary summary;
  std::vector<double> ttft_ms;  // per request, for CDFs
};

// Runs every cell; `progress(done, total)` is called after each (from worker threads, serialised).
Result<std::vector<SweepCell>> RunSweep(const Trace& trace, const SweepSpec& spec,
                                        const std::function<void(size_t, size_t)>& progress = {});

std::string SweepCsv(const std::vector<SweepCell>& cells);

// Writes, per (model, arrival rate): hit rate against capacity, Marconi's relative win over each
// baseline against capacity, and the TTFT CDF at the middle capacity. Returns the files written.
Result<std::vector<std::string>> WriteSweepPlots(const std::vector<SweepCell>& cells,
                                                 const std::string& directory);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_SWEEP_H_
