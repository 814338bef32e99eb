// Emulation of TensorRT-LLM's prefix cache for hybrid models (MambaHybridCacheManagerV2 on
// KVCacheManagerV2): a reuse tree of token blocks, recurrent states only at the request's
// expected snapshot points (periodic, fixed offsets, branch), committed at finish only up to the
// deepest snapshot point, in two pools (attention pages, state slots) each evicted LRU over
// leaves. Running requests hold their own pages (the whole sequence from admission, as the
// GUARANTEED_NO_EVICT capacity scheduler reserves it), their live state slot and their snapshot
// slots from the same pools, and pin the blocks they reuse. docs/engines.md ("TensorRT-LLM")
// states every rule and its source. trtllm.cc holds the request life cycle, trtllm_tree.cc the
// reuse tree, its index and its eviction.
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

  // The request's expected snapshot points (prepare_expect_snapshot_points), sorted, given its
  // prompt length, the content-match depth d of its lookup and its reused tokens. Public for tests.
  std::vector<int64_t> SnapshotPoints(int64_t prompt, int64_t match_depth, int64_t reused) const;
  // Whether any placement rule is configured (else block reuse is off).
  bool reuse_enabled() const { return reuse_enabled_; }
  int64_t tree_pages() const { return tree_pages_; }
  int64_t tree_states() const { return tree_states_; }
  int64_t running_pages() const { return running_pages_; }
  int64_t running_slots() const { return running_slots_; }
  // Recounts the tree, the pins and the running requests' memory against the counters and the
  // pools; empty when consistent, else what is wrong (tests call it after every step).
  std::string CheckInvariants() const;

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
    uint64_t key = 0;      // in index_ iff the parent is indexed
    uint32_t holders = 0;  // running requests pinning it (never evicted while > 0)
    uint32_t gen = 0;      // bumped when the block dies: (id, gen) names one block
    int64_t children = 0;
    bool indexed = false;  // its children are in index_
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
  // What the lookup of an input finds: the matched path (full blocks, then at most one partial),
  // the content hashes of the input's full blocks computed on the way (0 = not yet), the
  // attention match and the hit with the block holding its state.
  struct Lookup {
    std::vector<NodeId> path;
    std::vector<uint64_t> content;
    size_t full_matched = 0;
    int64_t match = 0;
    int64_t hit = 0;
    NodeId hit_node = kNoNode;
  };
  // A running request: its lookup, the blocks it pins (its lock, then what it commits; one pin
  // each), its snapshot points, and the pages and slots it holds from the pools.
  struct Running {
    RequestId id = 0;
    std::span<const Token> input;
    Lookup lookup;
    std::vector<uint32_t> gens;  // of lookup.path, at admission
    std::vector<NodeId> held;
    std::vector<int64_t> points;
    int64_t kv_end = 0;    // its pages cover the sequence up to here
    int64_t reserved = 0;  // the scheduler reserved KV up to here
    int64_t computed = 0;
    int64_t pages = 0;
    int64_t slots = 0;
  };

  void LookUp(std::span<const Token> input, Lookup* out) const;
  int64_t OwnPages(int64_t hit, int64_t kv_end) const;
  int64_t FreePages() const;  // kUnlimited when unbounded
  int64_t FreeSlots() const;
  void Hold(Running& r, NodeId id);
  void Unhold(NodeId id);
  void Commit(Running& r);
  void Release(Running& r);
  Running& Find(RequestId id);
  void Remove(Running& r);  // after Release
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
  // Free means held neither by the tree nor by a running request.
  bool EnsureFreePages(int64_t pages);
  bool EnsureFreeSlots(int64_t slots);
  NodeId PopLeaf(Heap& heap, bool need_state);
  bool EvictLeafBlock();
  bool EvictLeafState();
  void RemoveBlock(NodeId id);
  void CompactHeaps();
  void RestoreHeld();
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
  Heap kv_heap_;                // leaf blocks by kv_tick (stale entries skipped)
  Heap state_heap_;             // leaf blocks holding states by state_tick
  Heap held_kv_, held_state_;   // pinned candidates popped during one eviction, per heap
  NodeId next_leaf_ = kNoNode;  // a block that just became a leaf, not yet in kv_heap_
  // Running requests in [0, live_), in no order; the entries past live_ keep their buffers for the
  // next admissions (no allocation per request).
  std::vector<Running> runs_;
  size_t live_ = 0;
  uint64_t tick_ = 0;
  int64_t running_pages_ = 0;  // pages running requests hold for their own tokens
  int64_t running_slots_ = 0;  // their live and snapshot state slots
  int64_t pinned_blocks_ = 0;  // blocks with holders > 0 (an ancestor of one is one too)
  int64_t pinned_states_ = 0;  // states in them
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
