// Emulation of llama.cpp's server cache for hybrid models: N slots, each one sequence with its
// tokens, its live KV and recurrent state and a list of context checkpoints (recurrent state
// only) taken near the prompt end; a slot is chosen by prompt similarity, else least recently
// used; a host-RAM prompt cache saves a slot's whole state when it is about to be lost and loads
// it back when it beats the slot. No tree across slots. Under load a running request holds one
// slot until it finishes; a request finding no idle slot waits (kNoRoom). docs/engines.md
// ("llama.cpp") states every rule and its source.
#ifndef MARCONI_SIM_ENGINES_LLAMACPP_H_
#define MARCONI_SIM_ENGINES_LLAMACPP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "sim/engines/engine_cache.h"

namespace marconi::sim {

struct LlamacppOptions {
  int64_t parallel = 1;
  int64_t ctx_checkpoints = 32;
  int64_t checkpoint_min_step = 8192;
  int64_t n_batch = 2048;
  int64_t n_ubatch = 512;        // clamped to n_batch, as llama_context does
  int64_t cache_ram_mib = 8192;  // 0 = off, -1 = no limit
  double slot_prompt_similarity = 0.10;
};

class LlamacppCache final : public EngineCache {
 public:
  struct Checkpoint {
    int64_t n_tokens;  // the state after this many tokens
    int64_t task;      // the request that took it
  };
  struct Slot {
    std::vector<Token> tokens;
    std::vector<Checkpoint> checkpoints;  // oldest first
    int64_t last_used = -1;               // release order (t_last_used); -1 = never used
    bool busy = false;                    // a running request holds it
  };
  struct Entry {
    std::vector<Token> tokens;
    std::vector<Checkpoint> checkpoints;
    int64_t bytes = 0;
  };

  // n_ctx: tokens one slot holds (kUnlimited = unbounded).
  LlamacppCache(const ModelSpec& model, const LlamacppOptions& options, int64_t n_ctx);

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

  const std::vector<Slot>& slots() const { return slots_; }
  const std::vector<Entry>& prompt_cache() const { return entries_; }  // oldest first
  int64_t prompt_cache_bytes() const { return entries_bytes_; }
  int64_t cache_ram_bytes() const;  // -1 = no limit, 0 = off
  int64_t n_ctx() const { return n_ctx_; }
  // Requests refused because their prompt does not fit a slot's context.
  int64_t rejected() const { return rejected_; }
  // Index of the slot the last admitted (or refused) request took.
  size_t last_slot() const { return last_slot_; }
  // Requests running (each holds one slot).
  size_t running() const { return running_.size(); }

 private:
  // A running request: the slot it holds and how far its sequence has run.
  struct Running {
    size_t slot = 0;
    std::span<const Token> input, output;
    int64_t prompt = 0;    // P of the checkpoint rule: prefill_end, at most n_ctx
    int64_t hit = 0;       // tokens reused at admission
    int64_t pos = 0;       // computed so far (the slot holds min(pos, n_ctx) tokens)
    int64_t reserved = 0;  // reserved up to
    int64_t task = 0;      // its task number (the checkpoints it takes carry it)
  };
  // get_available_slot's choice: slot == slots_.size() when every slot is busy.
  struct Choice {
    size_t slot;
    bool update_cache;
  };
  // server_prompt_cache::alloc's plan for a slot: whether it is stored, and for each entry 0 =
  // kept, 1 = superseded (a prefix of the slot), 2 = dropped for room.
  struct SavePlan {
    bool store = false;
    int64_t bytes = 0;
    std::vector<char> drop;
  };
  struct InSlotHit {
    int64_t lcp = 0;
    int64_t hit = 0;
  };

  int64_t EntryBytes(const std::vector<Token>& tokens, size_t checkpoints) const;
  Choice ChooseSlot(std::span<const Token> input) const;
  bool UpdatesCache(const Choice& choice) const;
  SavePlan PlanSave(const Slot& slot) const;
  size_t BestEntry(const Slot& slot, std::span<const Token> input,
                   const std::vector<char>& drop) const;
  static InSlotHit Lookup(const std::vector<Token>& tokens,
                          const std::vector<Checkpoint>& checkpoints, std::span<const Token> input);
  bool TooLarge(std::span<const Token> input) const;
  void Save(const Slot& slot);
  bool Load(Slot& slot, std::span<const Token> input);
  void Clear(Slot& slot);
  void AddCheckpoint(Slot& slot, int64_t n_tokens, int64_t task);
  void Prefill(Slot& slot, int64_t from, int64_t to, int64_t prompt, int64_t task);
  void Release(RequestId id);
  void SyncStats();

  const ModelSpec* model_;
  LlamacppOptions opt_;
  int64_t n_ctx_;
  std::vector<Slot> slots_;
  std::vector<Entry> entries_;
  int64_t entries_bytes_ = 0;
  int64_t task_ = 0;
  int64_t rejected_ = 0;
  int64_t releases_ = 0;
  size_t last_slot_ = 0;
  std::unordered_map<RequestId, Running> running_;
};

// The factory of the `llamacpp` registry row. Parameters: parallel, ctx_checkpoints,
// checkpoint_min_step, n_batch, n_ubatch, cache_ram_mib, slot_prompt_similarity.
Result<std::unique_ptr<EngineCache>> MakeLlamacpp(const EngineContext& context);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_ENGINES_LLAMACPP_H_
