// Emulations of the prefix caches that today's serving engines ship for hybrid models (SGLang,
// vLLM, TensorRT-LLM, llama.cpp). Each engine keeps its own data structure (a radix tree with two
// pools, a pool of hashed blocks, per-slot checkpoints), so each emulation is its own class behind
// this interface rather than a configuration of PrefixCache: the point is to reproduce what the
// engine does, including what it loses. docs/engines.md states every rule and its source.
//
// Adding an emulation: a class deriving from EngineCache in src/sim/engines/<engine>.{h,cc}, a
// factory of the EngineFactory signature, and a row in the registry (systems.cc) naming the
// factory and the parameters with the engine's defaults.
#ifndef MARCONI_SIM_ENGINES_ENGINE_CACHE_H_
#define MARCONI_SIM_ENGINES_ENGINE_CACHE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "marconi/cache_stats.h"
#include "marconi/model_spec.h"
#include "marconi/status.h"
#include "marconi/types.h"

namespace marconi::sim {

// What one request found in an emulated engine's cache.
struct EngineLookup {
  // Attention-hit depth: tokens of the input whose KV the engine holds and would match (after the
  // engine's own caps, e.g. n - 1 and block alignment), whether or not a state goes with it.
  int64_t attention_hit_tokens = 0;
  // Reusable depth: tokens actually skipped (a state is restored at this depth). <= the above.
  int64_t reusable_tokens = 0;
};

// One emulated engine cache. Not thread-safe; one replay owns one instance.
class EngineCache {
 public:
  virtual ~EngineCache() = default;

  // Serves one request as the engine would, one request at a time (no other request running):
  // the lookup at admission, then the prefill of `input` (chunked as the engine chunks it, with
  // the states it tracks), the decode of `output` and the insertion at finish, with the engine's
  // evictions. `now` never decreases across calls. Returns what the lookup found.
  // Precondition: input is not empty.
  virtual EngineLookup Serve(std::span<const Token> input, std::span<const Token> output,
                             Timestamp now) = 0;

  // Counters with CacheStats' definitions. The per-request fields (requests, hit_requests,
  // input_tokens, hit_tokens, matched_tokens = attention hits, flops_saved, flops_without_cache)
  // are counted by ServeCounted; the content fields (cached_tokens, checkpoints, kv_bytes,
  // state_bytes, their peaks, evictions, evicted_*) by the emulation, in bytes of the engine's
  // own accounting (padded pages, fp32 states, ...).
  const CacheStats& stats() const { return stats_; }

  // The sizes the engine derives from the model and the capacity (vLLM's block size, SGLang's
  // state slots, ...), by name, for reports ("derived" in JSON).
  virtual std::map<std::string, double> DerivedSizes() const = 0;

  // Serve() plus the per-request counters.
  EngineLookup ServeCounted(const ModelSpec& model, std::span<const Token> input,
                            std::span<const Token> output, Timestamp now);

 protected:
  CacheStats stats_;
  // Call after every mutation that changes kv_bytes or state_bytes.
  void UpdatePeaks();
};

// What a factory gets: the model, the capacity the simulator was given (the bytes the engine may
// use for KV and states), and the system's effective parameters (its registry row's defaults
// overridden by --set).
struct EngineContext {
  const ModelSpec* model = nullptr;
  int64_t capacity_bytes = 0;
  std::function<double(std::string_view)> param;
};

// Builds an emulation; kInvalidArgument when the parameters or the capacity cannot make one
// (e.g. not even one block fits), with the reason.
using EngineFactory = Result<std::unique_ptr<EngineCache>> (*)(const EngineContext& context);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_ENGINES_ENGINE_CACHE_H_
