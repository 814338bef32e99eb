// Replaying a trace through a cache configured as one of the compared systems.
#ifndef MARCONI_SIM_REPLAY_H_
#define MARCONI_SIM_REPLAY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "marconi/alpha_tuner.h"
#include "marconi/policies.h"
#include "marconi/prefix_cache.h"
#include "sim/systems.h"
#include "sim/trace.h"
#include "sim/ttft_model.h"

namespace marconi::sim {

struct SimConfig {
  ModelSpec model;
  int64_t capacity_bytes = PrefixCacheConfig::kUnlimited;
  TtftModel ttft = TtftModel::Linear(17.8, 0.05296);
  SystemOverrides params;  // parameters set with --set (systems.h); the rest are defaults
  // PrefixCacheConfig::leave_last_token of every cache (serve sets it: its engine computes the
  // last input token; the paper's convention, kept by sim, is off).
  bool leave_last_token = false;
  AlphaTunerConfig tuner;  // marconi (window, grid, objective) and the oracle's grid
  // What recency means in FLOP-aware eviction (marconi, marconi-oneshot, oracle, sparse).
  FlopAwareEvictionConfig::Recency recency = FlopAwareEvictionConfig{}.recency;
  int threads = 1;  // the oracle's grid and the tuner's replays
  // Called with (requests done, requests) after each request of RunSystem's replay (the oracle:
  // of its first grid replay only), from the replaying thread.
  std::function<void(size_t, size_t)> progress;
};

struct RequestRecord {
  size_t index = 0;  // position in the trace
  int64_t input_tokens = 0;
  int64_t hit_tokens = 0;  // reusable depth: tokens skipped (a state restored there)
  // attention-hit depth: tokens whose KV was cached and matched, with or without a state;
  // attention_hit_tokens - hit_tokens were recomputed for want of a state
  int64_t attention_hit_tokens = 0;
  double ttft_ms = 0;
};

struct SystemResult {
  std::string system;
  std::map<std::string, double> params;  // the system's effective parameters
  // sizes an emulated engine derives from the model and capacity (EngineCache::DerivedSizes)
  std::map<std::string, double> derived;
  CacheStats stats;
  std::vector<RequestRecord> records;  // in trace order
  double alpha = 0;                    // final alpha (marconi, sparse) or the oracle's best
  std::vector<TuningRound> rounds;     // the tuner's rounds; for the oracle, one with the grid
};

// A cache configured as one of the compared systems, and its alpha tuner when it has one.
struct SystemInstance {
  std::unique_ptr<PrefixCache> cache;
  std::unique_ptr<AlphaTuner> tuner;  // null unless tuned (marconi, marconi-oneshot, sparse)
};
// The cache of `kind` (vanilla has none: kInvalidArgument) for config.model and
// config.capacity_bytes, with eviction alpha `alpha`, and a tuner if `tune`. For the oracle, one
// of its fixed-alpha replays (its tuning is the choice of the best in hindsight).
Result<SystemInstance> MakeSystem(SystemKind kind, const SimConfig& config, double alpha,
                                  bool tune);

// Serves every request of `trace` in order through `cache`: BeginRequest at its ts, then
// CompleteRequest at the same ts with its output (as the paper's simulator does). After each
// lookup `on_lookup(index, lookup)` is called; after each completion `tuner`, if any, observes
// the request. The first error stops the replay and is returned.
Status ServeTrace(const Trace& trace, PrefixCache& cache,
                  const std::function<void(size_t, const LookupResult&)>& on_lookup = {},
                  AlphaTuner* tuner = nullptr);

// Serves every request of `trace` in order: BeginRequest at its ts, then CompleteRequest at the
// same ts with its output (the paper's simulator does the same). kResourceExhausted cannot occur
// (no request is in flight during an insert); other errors are returned.
Result<SystemResult> RunSystem(const Trace& trace, SystemKind kind, const SimConfig& config);
// The same over `schedule`'s order and times (records' index: the step in the schedule).
// kInvalidArgument if the schedule does not fit the trace.
Result<SystemResult> RunSystem(const Trace& trace, const Schedule& schedule, SystemKind kind,
                               const SimConfig& config);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_REPLAY_H_
