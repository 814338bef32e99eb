// Emulation of TensorRT-LLM's prefix cache for hybrid models (MambaHybridCacheManagerV2 on
// KVCacheManagerV2): a reuse tree of token blocks, recurrent states only at the request's
// expected snapshot points (periodic, fixed offsets, branch), committed at finish only up to the
// deepest snapshot point, in two pools (attention pages, state slots) each evicted LRU over
// leaves. docs/engines.md ("TensorRT-LLM") states every rule and its source.
#ifndef MARCONI_SIM_ENGINES_TRTLLM_H_
#define MARCONI_SIM_ENGINES_TRTLLM_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sim/engines/engine_cache.h"

namespace marconi::sim {

struct TrtllmOptions {
  int64_t tokens_per_block = 32;
  int64_t snapshot_interval = 0;   // 0 = no periodic snapshots
  int64_t offset_from_start = -1;  // -1 = none
  int64_t offset_from_end = -1;    // -1 = none; 0 = the prompt end
  bool branch_snapshot = false;
  int64_t max_seq_len = 8192;  // sizes the pool split (typical request = max_seq_len / 2)
};

class TrtllmCache final : public EngineCache {
 public:
  // Pools: kv_pages pages of tokens_per_block tokens, state_slots slots (kUnlimited = unbounded).
  TrtllmCache(const ModelSpec& model, const TrtllmOptions& options, int64_t kv_pages,
              int64_t state_slots);

  EngineLookup Serve(std::span<const Token> input, std::span<const Token> output,
                     Timestamp now) override;
  std::map<std::string, double> DerivedSizes() const override;

  // The request's expected snapshot points (prepare_expect_snapshot_points), sorted, given its
  // prompt length, the content-match depth d of its lookup and its reused tokens. Public for tests.
  std::vector<int64_t> SnapshotPoints(int64_t prompt, int64_t match_depth, int64_t reused) const;
  // Whether any placement rule is configured (else block reuse is off).
  bool reuse_enabled() const { return reuse_enabled_; }
  int64_t tree_pages() const { return tree_pages_; }
  int64_t tree_states() const { return tree_states_; }

 private:
  struct Block {
    NodeId parent = kNoNode;
    int64_t start = 0;  // depth of its first token
    std::vector<Token> tokens;
    std::vector<NodeId> children;
    std::vector<int64_t> states;  // positions in (start, start + tokens.size()], ascending
    uint64_t kv_tick = 0;
    uint64_t state_tick = 0;
    uint64_t key = 0;
    uint64_t pin = 0;  // == epoch_: held by the running request
    bool alive = false;
  };

  uint64_t KeyOf(NodeId parent, std::span<const Token> tokens) const;
  NodeId FindChild(NodeId parent, std::span<const Token> tokens) const;
  NodeId NewBlock(NodeId parent, std::span<const Token> tokens);
  void TouchKv(NodeId id);
  void TouchState(NodeId id);
  void RefreshLeafSets(NodeId id);
  bool IsLeaf(NodeId id) const { return blocks_[static_cast<size_t>(id)].children.empty(); }
  // Frees pages (state slots) until `pages` (`slots`) are free or nothing unpinned is left.
  bool EnsureFreePages(int64_t pages);
  bool EnsureFreeSlots(int64_t slots);
  bool EvictLeafBlock();
  bool EvictLeafState();
  void RemoveBlock(NodeId id);
  void SyncStats();

  const ModelSpec* model_;
  TrtllmOptions opt_;
  int64_t kv_pages_;
  int64_t state_slots_;
  bool reuse_enabled_;
  std::vector<Block> blocks_;  // [0] is the root (no tokens)
  std::vector<NodeId> free_ids_;
  std::unordered_map<uint64_t, NodeId> index_;          // KeyOf(parent, tokens) -> block
  std::set<std::pair<uint64_t, NodeId>> kv_leaves_;     // unpinned-or-not leaf blocks by kv_tick
  std::set<std::pair<uint64_t, NodeId>> state_leaves_;  // leaf blocks holding states
  uint64_t tick_ = 0;
  uint64_t epoch_ = 0;
  int64_t tree_pages_ = 0;
  int64_t tree_states_ = 0;
  int64_t tree_tokens_ = 0;
  int64_t tree_blocks_ = 0;
};

// The factory of the `trtllm` registry row. Parameters: tokens_per_block, snapshot_interval,
// offset_from_start, offset_from_end, branch_snapshot, max_seq_len.
Result<std::unique_ptr<EngineCache>> MakeTrtllm(const EngineContext& context);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_ENGINES_TRTLLM_H_
