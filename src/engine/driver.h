// Serving requests through the reference hybrid model with a PrefixCache deciding what is stored
// and reused: on a hit the prefill resumes from the stored KV and recurrent state; the states the
// admission policy asks for are captured during prefill (and after decoding) and stored as bytes.
#ifndef MARCONI_ENGINE_DRIVER_H_
#define MARCONI_ENGINE_DRIVER_H_

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine/hybrid_model.h"
#include "marconi/prefix_cache.h"

namespace marconi::engine {

struct ServedRequest {
  int64_t reused_tokens = 0;        // prefill skipped thanks to the cache
  int64_t computed_tokens = 0;      // prefilled
  std::vector<Token> output;        // greedy decode
  std::vector<float> first_logits;  // after the prefill (what TTFT waits for)
  double prefill_seconds = 0;
};

class Driver {
 public:
  // `cache` must have been created for a ModelSpec of this model (see SpecOf); neither is owned.
  Driver(const HybridModel& model, PrefixCache& cache, ScanKernel kernel)
      : model_(model), cache_(cache), kernel_(kernel) {}

  // Serves one request at time `now`: lookup, (resume +) prefill with captures, greedy decoding
  // of `output_tokens` tokens, then the cache's insert. kFailedPrecondition if the cache reports
  // a hit whose bytes this driver never stored (a cache shared with another driver).
  Result<ServedRequest> Serve(std::span<const Token> input, int64_t output_tokens, Timestamp now);

  // Bytes held for stored checkpoints (states and KV slices), as a real cache would hold them.
  int64_t stored_bytes() const { return stored_bytes_; }

 private:
  struct Stored {
    std::string checkpoint;                        // SerializeCheckpoint
    std::vector<std::vector<float>> keys, values;  // per layer: KV of the prefix
  };
  static uint64_t PrefixKey(std::span<const Token> prefix);
  void Store(const SequenceState& s, const Checkpoint& cp, std::span<const Token> tokens);

  const HybridModel& model_;
  PrefixCache& cache_;
  ScanKernel kernel_;
  std::unordered_map<uint64_t, Stored> store_;
  int64_t stored_bytes_ = 0;
};

// The cost-model view of the engine's model (fp32), for the PrefixCache and FLOP comparisons.
ModelSpec SpecOf(const HybridModel& model);

}  // namespace marconi::engine

#endif  // MARCONI_ENGINE_DRIVER_H_
