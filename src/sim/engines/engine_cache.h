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
#include "sim/memory_use.h"

namespace marconi::sim {

// What one request found in an emulated engine's cache.
struct EngineLookup {
  // Attention-hit depth: tokens of the input whose KV the engine holds and would match (after the
  // engine's own caps, e.g. n - 1 and block alignment), whether or not a state goes with it.
  int64_t attention_hit_tokens = 0;
  // Reusable depth: tokens actually skipped (a state is restored at this depth). <= the above.
  int64_t reusable_tokens = 0;
};

// How Admit went.
enum class EngineAdmit {
  kAdmitted,  // running: its lock, its slots and the KV asked for are held
  kNoRoom,    // not now (the pools are short even after evicting what the engine may evict)
  kTooLarge,  // never: the request does not fit the engine even alone in an empty cache
};

// One emulated engine cache. Not thread-safe; one replay or one serving replica owns one
// instance.
//
// The request protocol. Many requests may run at once (the serving model, src/sim/serving); each
// holds memory from the engine's own pools (the KV of its tokens past its hit, its state slots)
// next to the cached content, and the engine evicts cached content to make room in its own
// order, never content a running request holds or has locked. A request's sequence is its input
// followed by its output; position p means its first p tokens. Its life:
//   Admit (lookup, lock, slots, optionally the KV of its first tokens)
//   { Reserve (KV for the next tokens)  Computed (those tokens ran: the engine tracks and inserts
//     states as it does at a step's end) }...
//   Finish (inserts what the engine caches at finish, frees the rest)  or  Abort (preempted).
// Serve() is this protocol with one request; the serving model drives it with many.
class EngineCache {
 public:
  using RequestId = uint64_t;
  // Admit's reserve_tokens: all of [hit, prefill_end), whatever hit its own lookup finds.
  static constexpr int64_t kReserveToPrefillEnd = -1;

  virtual ~EngineCache() = default;

  // Serves one request alone (no other request running): Admit with no KV reserved, then the
  // prefill of `input` in chunks of ServePrefillChunk(), each Reserve'd then Computed, then the
  // decode of `output` (the last sampled token is never decoded) in strides of
  // ServeDecodeStride(), then Finish. A request the engine cannot hold (kTooLarge) is served
  // uncached, with what Admit reported as its lookup. `now` never decreases across calls. Returns
  // what the lookup found. Precondition: input is not empty; no request is running.
  EngineLookup Serve(std::span<const Token> input, std::span<const Token> output, Timestamp now);

  // What Admit's lookup would find now, changing nothing (routers read it). Precondition: input
  // is not empty.
  virtual EngineLookup Peek(std::span<const Token> input) const = 0;

  // Looks `input` up (writing the result to `found` whatever the outcome) and admits request
  // `id` if the pools can hold its lock on the hit, the state slots a running request holds and
  // the KV of `reserve_tokens` tokens past the hit (kReserveToPrefillEnd: every token from the
  // hit this lookup finds to `prefill_end`), evicting cached content as the engine does.
  // The request will prefill its sequence up to `prefill_end` (>= input.size(); more after a
  // preemption, when its generated tokens are recomputed). kNoRoom and kTooLarge change nothing
  // (no eviction: the engine looks before it evicts, as its scheduler does), except for the
  // bookkeeping the engine itself does when it refuses a request it can never hold (llama.cpp
  // chooses a slot and updates its prompt cache first; counters of refused requests). `input`
  // and `output` must stay valid until Finish or Abort. Preconditions: id is not running; input
  // is not empty; reserve_tokens is kReserveToPrefillEnd or in [0, prefill_end - hit];
  // prefill_end <= input + output.
  virtual EngineAdmit Admit(RequestId id, std::span<const Token> input,
                            std::span<const Token> output, int64_t prefill_end,
                            int64_t reserve_tokens, Timestamp now, EngineLookup* found) = 0;

  // Takes the KV of `tokens` more tokens of running request `id` (a prefill chunk not reserved
  // at admission, or decodes), evicting as needed. False: the pools cannot hold them even after
  // evicting; nothing changed (the caller preempts another request and tries again).
  [[nodiscard]] virtual bool Reserve(RequestId id, int64_t tokens) = 0;

  // Request `id` has computed its sequence up to position `pos` (every token up to it reserved):
  // the end of a prefill chunk, or of decode steps. The engine tracks, hashes and inserts states
  // and KV as it does at that point. Positions only grow.
  virtual void Computed(RequestId id, int64_t pos) = 0;

  // Request `id` is done (its sequence computed up to input + output - 1): the engine inserts
  // what it caches at finish, frees the rest of its memory and its lock.
  virtual void Finish(RequestId id, Timestamp now) = 0;

  // Request `id` is preempted (recompute): its memory and lock are freed; what it inserted
  // already stays cached.
  virtual void Abort(RequestId id) = 0;

  // Memory in use, in the engine's own units (padded pages, fp32 slots): running requests' own
  // KV and slots, and the cached content. total() never exceeds the capacity it was made with.
  virtual MemoryUse Memory() const = 0;

  // Counters with CacheStats' definitions. The per-request fields (requests, hit_requests,
  // input_tokens, hit_tokens, matched_tokens = attention hits, flops_saved, flops_without_cache)
  // are counted by ServeCounted (or the serving model); the content fields (cached_tokens,
  // checkpoints, kv_bytes, state_bytes, their peaks, evictions, evicted_*) by the emulation, in
  // bytes of the engine's own accounting (padded pages, fp32 states, ...).
  const CacheStats& stats() const { return stats_; }

  // The sizes the engine derives from the model and the capacity (vLLM's block size, SGLang's
  // state slots, ...), by name, for reports ("derived" in JSON).
  virtual std::map<std::string, double> DerivedSizes() const = 0;

  // Serve() plus the per-request counters.
  EngineLookup ServeCounted(const ModelSpec& model, std::span<const Token> input,
                            std::span<const Token> output, Timestamp now);
  // The per-request counters of one request (ServeCounted's; the serving model calls it once per
  // finished request with its last admission's lookup).
  void CountRequest(const ModelSpec& model, int64_t input_tokens, const EngineLookup& found);

 protected:
  CacheStats stats_;
  // Call after every mutation that changes kv_bytes or state_bytes.
  void UpdatePeaks();
  // Serve()'s prefill chunk (the engine's chunked-prefill size; 0 = the whole input at once) and
  // decode stride (0 = every decode in one Computed call; an engine whose decode-time tracking
  // depends on where the calls fall sets the interval it tracks at).
  virtual int64_t ServePrefillChunk() const { return 0; }
  virtual int64_t ServeDecodeStride() const { return 0; }
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
