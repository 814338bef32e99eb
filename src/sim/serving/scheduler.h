// An event-driven continuous-batching engine serving a trace through one of the compared
// systems' caches: requests arrive at their trace times and wait in an FCFS queue; each step
// runs the decodes of every running request and prefill chunks within a token budget; running
// requests and the cache share one memory budget; a step takes the roofline time of its batch.
// docs/serving.md has the model, its assumptions and its formulas.
#ifndef MARCONI_SIM_SERVING_SCHEDULER_H_
#define MARCONI_SIM_SERVING_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "marconi/status.h"
#include "sim/memory_use.h"
#include "sim/replay.h"
#include "sim/serving/device.h"
#include "sim/serving/router.h"
#include "sim/serving/step_time.h"
#include "sim/systems.h"
#include "sim/trace.h"

namespace marconi::sim::serving {

struct StepSnapshot {
  double now = 0;  // the step's start, seconds
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t batch_tokens = 0;
  double seconds = 0;  // the step's duration
  MemoryUse memory;    // in use after admission (what the step runs with)
  int64_t budget = 0;
  size_t replica = 0;  // which replica steps
};

// A routing decision, for tests: the replicas as the router saw them and its choice.
struct RouteDecision {
  size_t request = 0;
  double now = 0;
  std::span<const ReplicaView> replicas;
  size_t chosen = 0;
};

struct ServingConfig {
  DeviceSpec device;
  // The bytes shared by running requests and the cache. 0: the device's, hbm_bytes x
  // memory_utilization - WeightBytes(model).
  int64_t budget_bytes = 0;
  int64_t max_running = 256;    // running requests at most
  int64_t token_budget = 8192;  // tokens per step (decodes + prefill chunks), >= max_running
  int64_t chunk_tokens = 2048;  // prefill tokens per request per step at most
  int64_t state_slots = 1;      // recurrent-state slots a running request holds
  // Closed-loop sessions: a session's next turn arrives its trace gap after the previous turn
  // finished (an agent or a user waits for the answer), instead of at its trace time.
  bool closed_loop = false;
  // Replicas, each a device with its own cache and memory budget (the budget above, each), fed
  // by `router` (a name of Routers()) from one event loop in time order.
  int64_t replicas = 1;
  std::string router = "round-robin";
  std::function<void(const RouteDecision&)> on_route;  // called at every routing decision
  // Called at the start of every step with the memory in use (tests check the budget with it).
  std::function<void(const StepSnapshot&)> on_step;
};

// The budget `config` gives `model`; kInvalidArgument for bad settings or a device whose memory
// does not hold the weights.
Result<int64_t> ServingBudget(const ServingConfig& config, const ModelSpec& model);

// One request's life. Times in seconds of the trace's clock.
struct ServingRecord {
  size_t index = 0;    // in the trace
  size_t replica = 0;  // the replica that served it
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;         // generated (at least 1: the prefill's token)
  int64_t hit_tokens = 0;            // skipped by the cache at its (last) admission
  int64_t attention_hit_tokens = 0;  // its lookup's matched KV depth (RequestRecord's)
  double arrival = 0;      // its trace time, or in closed loop when its session released it
  double admitted = 0;     // first admission: queueing delay = admitted - arrival
  double first_token = 0;  // end of its prefill's last chunk
  double finish = 0;
  int64_t preemptions = 0;
  // It could never run (it does not fit even alone: its whole sequence in the budget, or in the
  // engine's pools): answered with an error at `finish`, its admission. It counts against the
  // SLO; it is left out of the latency quantiles, the hit rate and the throughput.
  bool rejected = false;
  double queue_s() const { return admitted - arrival; }
  double prefill_s() const { return first_token - admitted; }
  double ttft_s() const { return first_token - arrival; }
  double e2e_s() const { return finish - arrival; }
  // Time per output token after the first; 0 when only one token was generated.
  double tpot_s() const {
    return output_tokens > 1 ? (finish - first_token) / static_cast<double>(output_tokens - 1) : 0;
  }
};

struct ServingResult {
  // Cache statistics (summed over replicas; the alpha is their mean); records with the served
  // TTFT.
  SystemResult base;
  std::vector<ServingRecord> requests;  // in trace order
  int64_t budget_bytes = 0;
  int64_t weight_bytes = 0;
  std::string router;    // ServingConfig::router
  int64_t replicas = 1;  // ServingConfig::replicas
  int64_t steps = 0;     // summed over replicas, as are the counters below
  int64_t preemptions = 0;
  int64_t recomputed_tokens = 0;  // computed tokens that preemptions threw away
  int64_t rejected = 0;           // requests rejected (ServingRecord::rejected)
  // Admissions refused after the cache had evicted all its unpinned content for them (the
  // estimate of pinned bytes that should prevent this was low).
  int64_t cache_flushes = 0;
  int64_t output_tokens = 0;
  double first_arrival = 0, last_finish = 0;
  // The integral over time of the number of requests in the system (arrived, not finished),
  // kept by its own bookkeeping at arrival and finish events: Little's law's L x T.
  double occupancy_integral = 0;
  // Over the replicas: each use's own peak and the peak of the total of one replica (at most
  // the budget, which is each replica's).
  MemoryUse peak;
  int64_t peak_bytes = 0;
};

// Serves `trace` through `kind`'s cache (config.model, config's system parameters and tuner).
// The oracle is one run per alpha of config.tuner.grid (config.threads at once), the best token
// hit rate kept, as for Marconi's eviction in an engine without a fixed alpha. An engine
// emulation is built with the budget as its capacity and serves through its request protocol.
// A request that cannot fit even alone is rejected (ServingRecord::rejected), not an error.
// Errors: kInvalidArgument for bad settings;
// kFailedPrecondition if the memory invariant (running + cached <= budget, checked every step)
// breaks.
Result<ServingResult> RunServing(const Trace& trace, SystemKind kind, const SimConfig& config,
                                 const ServingConfig& serving);

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_SCHEDULER_H_
