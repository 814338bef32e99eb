// vLLM v1's prefix cache for hybrid models (docs/engines.md, "vLLM"; reading notes in
// docs/engine-sources.md section 2): one BlockPool for every layer group, blocks of B tokens
// with B raised until one attention page holds a recurrent state, chain-hashed full blocks, and
// the Mamba manager's two cache modes:
//   align (`vllm`): states only at block boundaries that end a scheduler step, hashed only at
//     the reachable boundaries (the replay boundary and the shared-prefix junction);
//   all (`vllm-all`): a state at every block boundary, all hashed.
#ifndef MARCONI_SIM_ENGINES_VLLM_H_
#define MARCONI_SIM_ENGINES_VLLM_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "marconi/model_spec.h"
#include "marconi/status.h"
#include "sim/engines/engine_cache.h"
#include "sim/engines/vllm_block_pool.h"

namespace marconi::sim {

enum class VllmMambaCacheMode { kAlign, kAll };

// Everything vLLM derives before serving (update_block_size_for_backend,
// _get_kv_cache_groups_uniform_page_size) plus the scheduler settings the emulation uses.
struct VllmConfig {
  VllmMambaCacheMode mode = VllmMambaCacheMode::kAlign;
  int64_t block_size = 16;       // B: tokens per block, every group
  int64_t attention_groups = 1;  // gA: blocks one cached B-token KV block costs
  int64_t recurrent_groups = 1;  // gM: blocks one stored state costs
  int64_t group_size = 1;        // layers per group
  int64_t page_bytes = 0;        // one layer's page: B tokens of attention = one padded state
  int64_t num_blocks = 0;        // the pool, null block included; kUnboundedBlocks = no bound
  int64_t mamba_chunk_size = 0;  // all mode: the model's chunk size used for B
  int64_t max_num_batched_tokens = 8192;
  int64_t retention_interval = 0;  // align: 0 = reachable boundaries only, >0 also every R tokens
  // Group ids follow the model's layer order, so this says whose blocks a request frees first.
  bool recurrent_groups_first = true;
  // `vllm-marconi`: Marconi's utility chooses among free hashed state blocks (< 0: vLLM's LRU).
  double marconi_alpha = -1;
  // PrefillFlops(0, p) = flops_linear * p + flops_pair * p * p (the model's closed form).
  double flops_linear = 0, flops_pair = 0;
  static constexpr int64_t kUnboundedBlocks = INT64_MAX;

  int64_t block_bytes() const { return page_bytes * group_size; }
};

// What the registry's parameters set; 0 means "derive as vLLM does".
struct VllmParams {
  VllmMambaCacheMode mode = VllmMambaCacheMode::kAlign;
  int64_t block_size = 0;        // cache_config.block_size; K = max(16, it)
  int64_t mamba_chunk_size = 0;  // all mode; 0 = 64 for GatedDeltaNet models, else 256
  int64_t max_num_batched_tokens = 8192;
  int64_t retention_interval = 0;
  double marconi_alpha = -1;  // >= 0: the Marconi variant
};

// The derivation of docs/engines.md ("Derived sizes"); kInvalidArgument when the parameters or
// the capacity cannot make a pool (fewer than 2 blocks: the null block and one usable block; a
// retention interval that is not a multiple of B; sizes that overflow).
Result<VllmConfig> DeriveVllmConfig(const ModelSpec& model, int64_t capacity_bytes,
                                    const VllmParams& params);

class VllmCache : public EngineCache {
 public:
  explicit VllmCache(const VllmConfig& config);

  // The request protocol (docs/engines.md, "Under load"). Serve's hooks keep their defaults (0):
  // Computed runs vLLM's own steps inside the range it is given (the token budget and, in align
  // mode, _mamba_block_aligned_split for the prefill; one token per decode step), so the whole
  // prefill in one call reproduces the one-request chunking.
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

  const VllmConfig& config() const { return config_; }
  const VllmBlockPool& pool() const { return pool_; }
  // Whether every attention group holds the KV block ending at `depth` of `tokens` (a multiple
  // of B), and whether every recurrent group holds the state at `depth`. For tests.
  bool KvBlockCached(std::span<const Token> tokens, int64_t depth) const;
  bool StateCached(std::span<const Token> tokens, int64_t depth) const;
  // Evicts the cached KV block ending at `depth` of `tokens` in attention group 0, as the free
  // queue would when it reaches it: vLLM's LRU reaches a mid-path block when concurrent requests
  // interleave their frees; tests use this to check that deeper hits are cut. False if absent.
  bool EvictKvBlock(std::span<const Token> tokens, int64_t depth);
  // The scheduler steps [start, end) of the prefill of the last request that finished, for tests.
  const std::vector<std::pair<int64_t, int64_t>>& last_prefill_steps() const {
    return prefill_steps_;
  }
  // Admissions refused as kTooLarge: the request's blocks at its peak exceed the pool even alone.
  int64_t oversized_requests() const { return oversized_requests_; }
  // The most blocks ever held or cached at once (held + hashed free): never above the pool.
  int64_t peak_used_blocks() const { return peak_used_blocks_; }

 private:
  // A running request (vLLM's Request with its KVCacheManager blocks).
  struct Running {
    std::vector<uint64_t> hashes;       // chain hash of each full block of committed tokens
    std::vector<int32_t> attn_blocks;   // [block index * gA + group]
    size_t attn_hashed = 0;             // block indices below this are hashed
    std::vector<int64_t> state_index;   // held state slots: block index (state at (i+1)*B)
    std::vector<int32_t> state_blocks;  // [slot * gM + group]
    size_t state_head = 0;              // slots below were freed (remove_skipped_blocks)
    size_t state_checked = 0;           // slots below were considered for hashing
    int64_t prompt = 0;                 // P
    int64_t prefill_end = 0;            // where the prefill's chunking stops (>= P)
    int64_t committed = 0;              // P + G - 1
    int64_t junction = 0;               // J (0 = none)
    int64_t parent_state = 0;           // the deepest state of this request's path so far
    int64_t pos = 0;                    // computed up to here
    int64_t reserved = 0;               // Reserve'd up to here
    int64_t promised = 0;               // free blocks set aside for [pos, reserved)
    int64_t debt = 0;                   // hit state blocks other requests held at admission
    std::vector<std::pair<int64_t, int64_t>> prefill_steps;
  };
  // How a dry run counts the blocks a held state slot returns to the free queue when released.
  enum class Refs { kNow, kBeforeTouch, kAlone };

  // The chain hash of the block ending at `depth` of `tokens`, or nullopt when `depth` is not a
  // positive multiple of the block size within `tokens` (the test hooks' common first step).
  std::optional<uint64_t> HashOfBlockEndingAt(std::span<const Token> tokens, int64_t depth) const;
  // get_computed_blocks over chain hashes: the attention-hit and the state-hit block counts.
  std::pair<size_t, size_t> LookupBlocks(std::span<const uint64_t> hashes, int64_t n) const;
  // The scheduler steps computing [from, to) of `r`: f(start, end, prefill).
  template <typename F>
  void ForEachStep(const Running& r, int64_t from, int64_t to, F&& f) const;
  // One scheduler step computing tokens [start, end) of `r`.
  void Step(Running& r, int64_t start, int64_t end, bool prefill);
  // The most free blocks the steps over [from, to) of `r` take at once (a dry run of Step).
  int64_t PeakNeed(const Running& r, int64_t from, int64_t to, Refs refs) const;
  // Free blocks `r` needs set aside: its steps up to `reserved`, at least a state slot.
  int64_t Promise(const Running& r) const;
  // Whether align mode hashes the state at `pos` (MambaManager.reachable_block_mask).
  bool Retained(const Running& r, int64_t pos) const;
  void FreeRequest(Running& r);
  // Finish and Abort: free `id`'s blocks and forget it.
  void Release(RequestId id, bool finished);
  void RefreshStats();

  VllmConfig config_;
  VllmBlockPool pool_;
  std::unordered_map<RequestId, Running> running_;
  Running spare_;               // a finished request's vectors, reused by the next admission
  int64_t promised_total_ = 0;  // sum of running requests' promised blocks
  // PeakNeed's held state slots (block index, blocks returned when released), reused.
  mutable std::vector<std::pair<int64_t, int64_t>> held_scratch_;
  std::vector<std::pair<int64_t, int64_t>> prefill_steps_;
  int64_t oversized_requests_ = 0;
  int64_t peak_used_blocks_ = 0;
  int64_t admitted_state_blocks_ = 0;
  int64_t clock_ = 0;  // requests admitted: the Marconi variant's recency clock
};

// Registry factories: `vllm` (align), `vllm-all`, and `vllm-marconi` (align with Marconi's
// FLOP-aware choice among free state blocks).
Result<std::unique_ptr<EngineCache>> MakeVllmEngine(const EngineContext& context);
Result<std::unique_ptr<EngineCache>> MakeVllmAllEngine(const EngineContext& context);
Result<std::unique_ptr<EngineCache>> MakeVllmMarconiEngine(const EngineContext& context);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_ENGINES_VLLM_H_
