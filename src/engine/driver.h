// Serving requests through the reference hybrid model with a PrefixCache deciding what is stored
// and reused: on a hit the prefill resumes from the stored KV and recurrent state; the states the
// admission policy asks for are captured during prefill and decoding and stored as bytes; the
// cache's evictions free them (the driver is the cache's CacheListener). What the driver holds is
// exactly what the cache accounts for: stored_bytes() == kv_bytes + state_bytes after each call.
#ifndef MARCONI_ENGINE_DRIVER_H_
#define MARCONI_ENGINE_DRIVER_H_

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/hybrid_model.h"
#include "marconi/prefix_cache.h"

namespace marconi::engine {

struct ServedRequest {
  int64_t reused_tokens = 0;        // prefill skipped thanks to the cache
  int64_t computed_tokens = 0;      // prefilled
  int64_t captured_states = 0;      // states captured (prefill and decode) and stored
  std::vector<Token> output;        // generated greedily, or the forced output
  std::vector<float> first_logits;  // after the prefill (what TTFT waits for)
  double load_seconds = 0;          // gathering the cached KV and state before the prefill
  double prefill_seconds = 0;       // the prefill itself, captures included
};

class Driver : private CacheListener {
 public:
  // `cache` may be null: every request is then a full recompute (the no-cache baseline). When
  // given, it must have been created for SpecOf(model) with PrefixCacheConfig::leave_last_token
  // (Serve fails with kFailedPrecondition otherwise) and be used through this driver only; the
  // driver registers itself as its listener until destroyed. Neither is owned; both must outlive
  // the driver.
  Driver(const HybridModel& model, PrefixCache* cache, Kernels kernels);
  ~Driver() override;
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;

  // Serves one request at time `now`: lookup, load, (resumed) prefill with the planned captures,
  // greedy decoding of `output_tokens` tokens (each fed back, so the state after the last one can
  // be stored), then the cache's CompleteRequest. An input equal to a cached sequence is
  // recomputed from scratch (its logits are not stored). Errors: the model's (bad token) and the
  // cache's, with nothing stored for the request; kFailedPrecondition if the cache reports a hit
  // whose bytes this driver does not hold (a cache shared with another driver).
  Result<ServedRequest> Serve(std::span<const Token> input, int64_t output_tokens, Timestamp now);
  // The same with teacher forcing: `output` is fed as the decoded tokens (a trace replay, whose
  // next turns contain the recorded outputs).
  Result<ServedRequest> ServeForced(std::span<const Token> input, std::span<const Token> output,
                                    Timestamp now);

  // Prefills in chunks of `tokens` (0, the default: in one piece), handing each chunk's captured
  // states to the cache with InsertChunk as it goes (SGLang's chunked prefill). Negative is 0.
  void set_prefill_chunk(int64_t tokens) { prefill_chunk_ = tokens > 0 ? tokens : 0; }

  // Payload bytes held: KV rows of the cached tokens and the checkpoints' states (fp32).
  int64_t stored_bytes() const;
  int64_t stored_kv_tokens() const { return static_cast<int64_t>(kv_.size()); }
  int64_t stored_states() const { return static_cast<int64_t>(states_.size()); }

 private:
  struct KvRow {
    Token token;        // checked on load: the row belongs to this prefix
    std::string bytes;  // HybridModel::SerializeKv of this one token
  };
  // Rolling hashes: hashes[i] names the prefix of i tokens (hashes[0] the empty one, added when
  // `hashes` is empty); appends the names of the prefixes ending at each of `tokens`.
  static void AppendHashes(std::span<const Token> tokens, std::vector<uint64_t>& hashes);
  Result<ServedRequest> ServeImpl(std::span<const Token> input, int64_t output_tokens,
                                  std::span<const Token> forced, Timestamp now);
  Status Load(std::span<const Token> input, const std::vector<uint64_t>& hashes, int64_t reuse,
              uint64_t slot, SequenceState& state) const;
  // Stores the KV rows of tokens [0, cp.position) (from `state`) and the checkpoint's state in a
  // new slot, whose id it returns (the state's payload in the cache).
  uint64_t Store(const SequenceState& state, const Checkpoint& cp, std::span<const Token> sequence,
                 const std::vector<uint64_t>& hashes, std::vector<uint64_t>* added_rows);
  void OnEvicted(const EvictionEvent& event) override;
  void OnNotAdopted(const NotAdoptedEvent& event) override;

  const HybridModel& model_;
  PrefixCache* cache_;
  Kernels kernels_;
  std::unordered_map<uint64_t, KvRow> kv_;            // by hash of the prefix ending at the token
  std::unordered_map<uint64_t, std::string> states_;  // SerializeCheckpoint, by slot (payload)
  uint64_t next_slot_ = 0;
  int64_t prefill_chunk_ = 0;
  std::string listener_error_;  // an eviction of bytes never stored (reported by the next call)
};

// The cost-model view of the engine's model (fp32), for the PrefixCache and FLOP comparisons.
ModelSpec SpecOf(const HybridModel& model);

}  // namespace marconi::engine

#endif  // MARCONI_ENGINE_DRIVER_H_
