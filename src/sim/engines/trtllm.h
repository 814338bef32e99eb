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
#include <span>
#include <string>
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
  // One block of the reuse tree: up to tokens_per_block tokens (fewer only for the last block of
  // a commit), stored in arena_ at id * tokens_per_block; children in an intrusive sibling list.
  struct Block {
    NodeId parent = kNoNode;
    NodeId first_child = kNoNode;
    NodeId next = kNoNode, prev = kNoNode;  // siblings
    int64_t start = 0;                      // depth of its first token
    int64_t len = 0;
    std::vector<int64_t> states;  // positions in (start, start + len], ascending
    uint64_t kv_tick = 0;
    uint64_t state_tick = 0;
    uint64_t key = 0;  // in index_ iff the parent is indexed
    uint64_t pin = 0;
    int64_t children = 0;
    bool indexed = false;  // its children are in index_  // == epoch_: held by the running request
    bool alive = false;
  };
  // Open-addressing map from a block key (parent id and content hash) to the block.
  class Index {
   public:
    NodeId Find(uint64_t key) const;
    void Insert(uint64_t key, NodeId id);  // keeps an existing entry (a hash collision)
    void Erase(uint64_t key, NodeId id);

   private:
    void Grow();
    std::vector<uint64_t> keys_;  // 0 = empty
    std::vector<NodeId> ids_;
    size_t size_ = 0;
  };
  using Heap = std::vector<std::pair<uint64_t, NodeId>>;  // min-heap of (tick, block), lazy

  std::span<const Token> TokensOf(NodeId id) const;
  static uint64_t ContentHash(std::span<const Token> tokens);
  static uint64_t KeyOf(NodeId parent, uint64_t content);
  NodeId FindChild(NodeId parent, std::span<const Token> tokens, uint64_t* content) const;
  void IndexChild(NodeId id);
  NodeId NewBlock(NodeId parent, std::span<const Token> tokens, uint64_t content);
  void TouchKv(NodeId id);
  void TouchState(NodeId id);
  void PushCandidates(NodeId id);
  bool IsLeaf(NodeId id) const { return blocks_[static_cast<size_t>(id)].first_child == kNoNode; }
  // Frees pages (state slots) until `pages` (`slots`) are free or nothing unpinned is left.
  bool EnsureFreePages(int64_t pages);
  bool EnsureFreeSlots(int64_t slots);
  NodeId PopLeaf(Heap& heap, bool need_state);
  bool EvictLeafBlock();
  bool EvictLeafState();
  void RemoveBlock(NodeId id);
  void CompactHeaps();
  void FlushNextLeaf();
  void SyncStats();

  const ModelSpec* model_;
  TrtllmOptions opt_;
  int64_t kv_pages_;
  int64_t state_slots_;
  bool reuse_enabled_;
  std::vector<Block> blocks_;  // [0] is the root (no tokens)
  std::vector<Token> arena_;   // tokens_per_block tokens per block id
  std::vector<NodeId> free_ids_;
  Index index_;
  Heap kv_heap_;                                   // leaf blocks by kv_tick (stale entries skipped)
  Heap state_heap_;                                // leaf blocks holding states by state_tick
  std::vector<std::pair<uint64_t, NodeId>> held_;  // pinned candidates popped during one eviction
  NodeId next_leaf_ = kNoNode;     // a block that just became a leaf, not yet in kv_heap_
  std::vector<uint64_t> content_;  // per-request scratch: block content hashes
  std::vector<NodeId> path_;       // per-request scratch: matched blocks
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
