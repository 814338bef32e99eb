// The cache side of a serving replica: what the scheduler (replica.cc) asks of a system's cache
// and memory, whatever the system. Two implementations: a PrefixCache with the running requests'
// memory kept beside it (vanilla, the paper's baselines, Marconi: served_core.cc), and an emulated
// engine whose own pools hold running requests and cached content together (SGLang, vLLM,
// TensorRT-LLM, llama.cpp: served_engine.cc). The replica keeps each request's progress (tokens
// computed, generated); this keeps its memory and its hold on the cache.
#ifndef MARCONI_SIM_SERVING_SERVED_CACHE_H_
#define MARCONI_SIM_SERVING_SERVED_CACHE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "marconi/cache_stats.h"
#include "marconi/prefix_cache.h"
#include "marconi/status.h"
#include "sim/engines/engine_cache.h"
#include "sim/memory_use.h"
#include "sim/replay.h"
#include "sim/systems.h"
#include "sim/trace.h"

namespace marconi::sim::serving {

// What Admit decided for the head of the queue.
enum class AdmitOutcome {
  kAdmitted,  // it runs from now on
  kWait,      // not now: memory frees up as running requests finish
  kRejected,  // never: it does not fit even alone (a server answers it with an error)
};

class ServedCache {
 public:
  virtual ~ServedCache() = default;

  // What request `input` would find now, changing nothing (routers read it): the attention-hit
  // depth and the reusable depth. Zeros without a cache.
  virtual EngineLookup Peek(std::span<const Token> input) const = 0;

  // Tries to admit request `id`, the head of the queue, to run: it will prefill its sequence up
  // to `prefill_end` (its input, plus its generated tokens after a preemption) and holds from now
  // on the KV of that prefill past its hit and its state slots. `alone`: no request runs. On
  // kAdmitted `found` holds its lookup; kRejected leaves nothing held.
  virtual Result<AdmitOutcome> Admit(size_t id, int64_t prefill_end, bool alone, double now,
                                     EngineLookup* found) = 0;

  // Whether the memory in use fits the budget now (the cache evicting what it may to make it
  // so); false: content the running requests pin is over, and one must be preempted.
  virtual Result<bool> Fits() = 0;

  // One more token of KV for each of `ids` (running requests, in admission order), in order:
  // how many of them (a prefix) got it. The caller preempts a request and asks again for the
  // rest.
  virtual Result<size_t> Grow(std::span<const size_t> ids) = 0;

  // Running request `id` has computed its sequence up to `pos` at `now` (the end of a step): the
  // cache is told, as an engine tells it of every prefill chunk.
  virtual Status Computed(size_t id, int64_t pos, double now) = 0;

  // Running request `id` is done, having computed `computed` tokens of its own past its hit:
  // its memory goes back, its content is inserted as the system inserts at finish.
  virtual Status Finish(size_t id, int64_t computed, double now) = 0;

  // Running request `id` is preempted (recompute): its memory and its hold go back.
  virtual void Preempt(size_t id) = 0;
  // Waiting request `id` (displaced from the head of the queue by a preempted one) gives back
  // what its lookup holds, if anything.
  virtual void Displace(size_t id) = 0;

  // Memory in use now (running requests and cached content).
  virtual MemoryUse Use() const = 0;

  // Admissions refused after the cache had evicted all its unpinned content for them.
  virtual int64_t flushes() const { return 0; }
  // The cache's counters (the per-request fields counted at every admission's lookup, a
  // preempted request's again); null without a cache.
  virtual const CacheStats* stats() const = 0;
  // The eviction alpha in use (0 without one).
  virtual double alpha() const { return 0; }
  // The tuner's rounds (empty without a tuner).
  virtual std::vector<TuningRound> rounds() const { return {}; }
  // The sizes an engine derives (empty for PrefixCache systems).
  virtual std::map<std::string, double> DerivedSizes() const { return {}; }
};

// A PrefixCache system's (or vanilla's, `system.cache` null) cache side: running requests hold
// (n - h + g) x kv + slot_bytes each, beside the cache, which is shrunk with SetCapacity to the
// rest of `budget` (docs/serving.md, "Memory budget").
std::unique_ptr<ServedCache> MakeServedCore(const Trace& trace, const ModelSpec& model,
                                            SystemInstance system, int64_t budget,
                                            int64_t slot_bytes, int64_t states_every);

// An engine emulation's cache side (`engine` built with capacity = the budget).
std::unique_ptr<ServedCache> MakeServedEngine(const Trace& trace, const ModelSpec& model,
                                              std::unique_ptr<EngineCache> engine,
                                              std::string_view name);

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_SERVED_CACHE_H_
