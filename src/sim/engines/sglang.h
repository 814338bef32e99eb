// The emulation of SGLang's prefix cache for hybrid models (the Mamba radix cache), in its three
// scheduler strategies (extra_buffer, no_buffer, extra_buffer_lazy) and in the "Marconi in an
// engine" variant (SGLang's admission with Marconi's FLOP-aware eviction order, PR #21862).
// This file holds the request life cycle (which states are tracked and inserted, which slots a
// running request holds) and the memory split; the tree and its two pools are SglangTree.
// docs/engines.md states every rule with its source function; docs/engine-sources.md §1 holds the
// reading notes.
#ifndef MARCONI_SIM_ENGINES_SGLANG_H_
#define MARCONI_SIM_ENGINES_SGLANG_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "marconi/model_spec.h"
#include "marconi/status.h"
#include "sim/engines/engine_cache.h"
#include "sim/engines/sglang_tree.h"

namespace marconi::sim {

// --mamba-scheduler-strategy.
enum class SglangStrategy { kExtraBuffer, kNoBuffer, kExtraBufferLazy };

struct SglangConfig {
  SglangStrategy strategy = SglangStrategy::kExtraBuffer;
  SglangTree::Order order = SglangTree::Order::kLru;
  double alpha = 1.0;                    // kFlopAware only
  int64_t chunk_size = 0;                // mamba_cache_chunk_size C; 0 = derive from the model
  int64_t track_interval = 256;          // --mamba-track-interval
  int64_t chunked_prefill_size = 8192;   // --chunked-prefill-size; 0 = no chunking
  double mamba_full_memory_ratio = 0.9;  // --mamba-full-memory-ratio
  int64_t ssm_dtype_bytes = 4;           // --mamba-ssm-dtype (float32)
  int64_t max_mamba_cache_size = 0;      // --max-mamba-cache-size (slots); 0 = derive
};

// C derived from the model: 64 (FLA_CHUNK_SIZE) for GatedDeltaNet models and for models without
// a mamba_chunk_size (Mamba1), else 256 (the HF Mamba2 default mamba_chunk_size).
int64_t SglangDerivedChunkSize(const ModelSpec& model);
// mamba_cache_per_req: the conv and temporal states of every recurrent layer, both at
// ssm_dtype_bytes per element.
int64_t SglangStateSlotBytes(const ModelSpec& model, int64_t ssm_dtype_bytes);

class SglangCache final : public EngineCache {
 public:
  // kInvalidArgument when a parameter is out of range, or the capacity leaves fewer slots than
  // one running request holds, or no KV token. A model without recurrent layers gets SGLang's
  // plain RadixCache (every committed token cached, a hit anywhere on the matched path).
  static Result<std::unique_ptr<SglangCache>> Create(const ModelSpec& model, int64_t capacity_bytes,
                                                     const SglangConfig& config);

  EngineLookup Peek(std::span<const Token> input) const override;
  EngineAdmit Admit(RequestId id, std::span<const Token> input, std::span<const Token> output,
                    int64_t prefill_end, int64_t reserve_tokens, Timestamp now,
                    EngineLookup* found) override;
  [[nodiscard]] bool Reserve(RequestId id, int64_t tokens) override;
  void Computed(RequestId id, int64_t pos) override;
  void Finish(RequestId id, Timestamp now) override;
  void Abort(RequestId id) override;
  MemoryUse Memory() const override;
  std::map<std::string, double> DerivedSizes() const override;

  int64_t chunk_size() const { return chunk_size_; }
  int64_t state_slots() const { return slots_; }  // SglangTree::kUnbounded when unbounded
  int64_t kv_tokens() const { return kv_tokens_; }
  int64_t state_slot_bytes() const { return slot_bytes_; }
  // Slots a running request holds: 1 live + the ping-pong buffer (2 with overlap; lazy 1).
  int64_t reserved_slots() const { return reserved_per_request_; }
  const SglangTree& tree() const { return tree_; }

 protected:
  // Serve(): extends of chunked_prefill_size; lazy decodes up to each track boundary (its
  // transient slot is looked for there), the other strategies all at once.
  int64_t ServePrefillChunk() const override { return prefill_chunk_; }
  int64_t ServeDecodeStride() const override;

 private:
  // A running request.
  struct Running {
    SglangTree::Key seq;  // input + output minus the last sampled token
    int64_t prefill_end = 0;
    int32_t locked = SglangTree::kRoot;
    int64_t shared = 0;       // its tokens whose KV is the tree's (the locked path)
    int64_t kv_end = 0;       // its tokens in KV (reserved): [shared, kv_end) is its own
    int64_t computed = 0;     // its tokens computed
    int64_t reserved = 0;     // slots it holds
    int64_t branch = -1;      // mamba_branching_seqlen (-1: none)
    int64_t last_track = -1;  // mamba_last_track_seqlen (-1: None)
  };

  SglangCache(const ModelSpec& model, const SglangConfig& config, int64_t chunk_size,
              int64_t prefill_chunk, int64_t slot_bytes, int64_t slots, int64_t kv_tokens,
              bool plain = false);
  // A model without recurrent layers: SGLang's plain RadixCache.
  static Result<std::unique_ptr<SglangCache>> CreatePlain(const ModelSpec& model,
                                                          int64_t capacity_bytes,
                                                          const SglangConfig& config);
  bool buffered() const { return config_.strategy != SglangStrategy::kNoBuffer; }
  Running& Get(RequestId id);
  // Sets what `r` holds outside the tree and tells the tree the sum over all running requests.
  void SetHeld(Running& r, int64_t shared, int64_t kv_end, int64_t reserved);
  // Inserts the request's tokens [0, pos) with a state and moves the request's lock there
  // (cache_unfinished_req).
  void InsertChunk(Running& r, int64_t pos);
  // The extend [from, to) of a prefill ended (to == prefill_end: the last one).
  void ExtendEnded(Running& r, int64_t from, int64_t to);
  // Decode steps brought the sequence from `from` (>= prefill_end) to `to`.
  void DecodeEnded(Running& r, int64_t from, int64_t to);

  SglangConfig config_;
  int64_t chunk_size_, prefill_chunk_, slot_bytes_, slots_, kv_tokens_;
  int64_t reserved_per_request_;
  bool plain_;
  int64_t kv_per_token_;
  SglangTree tree_;
  std::unordered_map<RequestId, Running> running_;
  int64_t held_kv_ = 0, held_slots_ = 0;  // the sums over running_
};

// Registry factories (systems.cc): extra_buffer, no_buffer, extra_buffer_lazy, and extra_buffer
// with Marconi's eviction order.
Result<std::unique_ptr<EngineCache>> MakeSglang(const EngineContext& context);
Result<std::unique_ptr<EngineCache>> MakeSglangNoBuffer(const EngineContext& context);
Result<std::unique_ptr<EngineCache>> MakeSglangLazy(const EngineContext& context);
Result<std::unique_ptr<EngineCache>> MakeSglangMarconi(const EngineContext& context);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_ENGINES_SGLANG_H_
