// One `marconi sim` run as a library call. The command line (tools/sim.cc) and the Python
// package (marconi.simulate) are both thin layers over it, so they accept, refuse and report the
// same things.
#ifndef MARCONI_SIM_SIMULATE_H_
#define MARCONI_SIM_SIMULATE_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "marconi/status.h"
#include "sim/replay.h"
#include "sim/report.h"
#include "sim/serving/metrics.h"
#include "sim/systems.h"
#include "sim/trace.h"
#include "sim/ttft_model.h"

namespace marconi::sim {

// The choice and configuration of the compared systems, as --systems, --set and --recency give
// them (sim and sweep share it).
struct SystemsChoice {
  std::string systems;           // "all" or comma-separated names; empty: DefaultSystemNames()
  std::vector<std::string> set;  // "SYSTEM.PARAM=VALUE" items (ParseSet)
  std::optional<std::string> recency;  // FLOP-aware recency by name; unset: the default
  // PrefixCacheConfig::leave_last_token for the systems built on PrefixCache: a whole-input hit
  // resumes before the last token, as every engine (and every emulation) does.
  bool leave_last_token = false;
};
// Parses `choice` into `kinds`, config->params, config->recency and config->leave_last_token.
// kInvalidArgument for an unknown system or parameter, a value out of range, a --set for a system
// that is not run, or a recency given without a FLOP-aware system among those run. On error the
// outputs are partial.
Status ApplySystemsChoice(const SystemsChoice& choice, std::vector<SystemKind>* kinds,
                          SimConfig* config);

// `marconi sim --serving`: the event-driven serving model (sim/serving/, docs/serving.md)
// instead of the one-request-at-a-time replay.
struct ServingOptions {
  std::string device = "H100-80GB";  // a DevicePreset name or a profile path (device_profile.h)
  int64_t max_running = 256;
  int64_t token_budget = 8192;  // tokens per step, >= max_running
  int64_t chunk = 2048;         // prefill chunk, tokens
  std::string slo = "ttft=2s,tpot=100ms";
  bool closed_loop = false;  // serving::ServingConfig::closed_loop
  // The memory shared by running requests and the cache: SimRequest::capacity when true (the
  // command line sets it when --capacity is given), else the device's HBM x utilization minus
  // the weights.
  bool capacity_is_budget = false;
  // Replicas (each a device with its own cache and this budget) and the routers to compare:
  // "all" or comma-separated names of serving::Routers(); one run per (system, router).
  int64_t replicas = 1;
  std::string router = "round-robin";
};

// The serving configuration (device, batching, arrivals, replicas), SLO and routers that
// `options` give; the budget and router are left for the caller to set per run. kInvalidArgument
// names the bad option.
Status ApplyServingOptions(const ServingOptions& options, serving::ServingConfig* config,
                           serving::Slo* slo, std::vector<std::string>* routers);

struct SimRequest {
  std::string trace;  // JSONL path, plain or .zst; empty: the synthetic workload
  int sessions = 80;  // sessions of the synthetic workload (when trace is empty), >= 1
  double sps = 0;     // > 0: re-time sessions to start at this rate (sessions/s)
  bool skip_bad_lines = false;
  std::string model = "paper-7b";  // preset name or config.json path
  std::string capacity = "5GB";    // ParseBytes syntax
  SystemsChoice systems;
  // Alpha tuner settings; when set, a tuned system must be among those run.
  std::optional<double> tuner_multiplier;
  std::optional<std::string> tuner_objective;  // "hit" or "flops"
  int threads = 0;                             // 0: every core
  std::optional<TtftModel> ttft;               // unset: SimConfig's default
  // Set: serve through the serving model (every system; without systems named, the default
  // ones).
  std::optional<ServingOptions> serving;
  // Called before each system's replay with its name; returns the progress callback of that
  // replay (SimConfig::progress), or null.
  std::function<std::function<void(size_t, size_t)>(const std::string&)> progress;
};

struct SimRun {
  Trace trace;
  std::vector<SystemResult> results;  // one per system, in the order asked
  std::vector<Summary> rows;          // Summarize(results[i])
  ReportContext context;
  // With SimRequest::serving: one summary per (system, router), systems in the order asked and
  // routers within each, in the order of `results` (whose records then carry the served TTFT),
  // and the run's settings.
  std::vector<serving::ServingSummary> serving_rows;
  std::vector<std::vector<serving::ServingRecord>> serving_requests;  // per system, trace order
  serving::ServingContext serving_context;
};

// Validates every input before any replay, reads (or builds) the trace, and replays it through
// each system. Errors: kInvalidArgument for bad options, the trace reader's for a bad trace.
Result<SimRun> Simulate(const SimRequest& request);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_SIMULATE_H_
