// vLLM v1's BlockPool (vllm/v1/core/block_pool.py), as the emulation needs it: one pool of
// equal blocks shared by every KV cache group, a map from block hash (with its group) to cached
// blocks, and ONE free-block queue in which blocks that were never hashed go first and hashed
// blocks wait in LRU order, each evictable on its own (no leaf rule).
//
// Blocks that hold no hash are interchangeable, so the pool keeps them as a count (never used)
// plus a stack of ids: vLLM's queue order among them (prepend_n on free, the initial order) only
// decides which physical block is reused, never what is cached. The hashed free blocks keep
// their exact queue order in an intrusive doubly linked list.
#ifndef MARCONI_SIM_ENGINES_VLLM_BLOCK_POOL_H_
#define MARCONI_SIM_ENGINES_VLLM_BLOCK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace marconi::sim {

// A map from 64-bit block keys (already well mixed) to block ids: open addressing with linear
// probing and backward-shift deletion, so that caching and evicting a block allocates nothing.
class BlockKeyMap {
 public:
  static constexpr int32_t kNone = -1;
  int32_t Find(uint64_t key) const {
    key = Norm(key);
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      if (keys_[i] == key) return values_[i];
      if (keys_[i] == kEmpty) return kNone;
    }
  }
  // The value under `key`, inserting `value` if absent.
  int32_t& FindOrInsert(uint64_t key, int32_t value);
  // The slot holding `key`, which must be present; its value may be read and written until
  // the next insertion or erasure.
  size_t SlotOf(uint64_t key) const {
    key = Norm(key);
    size_t i = Home(key);
    while (keys_[i] != key) i = (i + 1) & mask_;
    return i;
  }
  int32_t& value_at(size_t slot) { return values_[slot]; }
  void EraseAt(size_t slot);

 private:
  static constexpr uint64_t kEmpty = 0;
  static uint64_t Norm(uint64_t key) { return key == kEmpty ? 1 : key; }
  // Fibonacci hashing: the slot from the key's high bits after a multiply, so that keys that
  // differ by a group salt do not crowd neighbouring slots.
  size_t Home(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ULL) >> shift_);
  }
  void Grow();
  std::vector<uint64_t> keys_ = std::vector<uint64_t>(16, kEmpty);
  std::vector<int32_t> values_ = std::vector<int32_t>(16, kNone);
  size_t mask_ = 15, size_ = 0;
  int shift_ = 60;  // 64 - log2(slots)
};

class VllmBlockPool {
 public:
  static constexpr int32_t kNone = -1;
  // What a hashed block caches: attention KV of one block in one attention group, or one state
  // in one recurrent group. Counted apart for the statistics.
  enum class Kind : uint8_t { kUnhashed, kAttention, kState };

  // `usable_blocks`: the blocks requests may use (vLLM's num_blocks minus the null block);
  // `groups`: the most groups of one kind (KV cache groups of one spec).
  VllmBlockPool(int64_t usable_blocks, int64_t groups);

  // The first block of `group` cached under `key` (vLLM's get_one_block: the oldest of
  // duplicates), or kNone. One key covers every group of a kind (vLLM keys each group apart;
  // the map keeps one entry with a chain per group, so caching a state costs one map insertion
  // rather than one per group).
  int32_t Find(uint64_t key, int64_t group) const {
    const int32_t e = map_.Find(key);
    return e == kNone ? kNone
                      : heads_[static_cast<size_t>(e) * groups_ + static_cast<size_t>(group)];
  }

  // get_new_blocks(1): a block from the head of the free queue, held by the caller. A hashed
  // block popped there is evicted (its hash dropped, _maybe_evict_cached_block). kNone when no
  // block is free (every block is held).
  int32_t Allocate();
  // touch(): a cached block gets one more user; a free one leaves the free queue.
  void Touch(int32_t block);
  // cache_full_blocks for one block position: held block `blocks[g]` of each group g gets
  // `key`. Duplicates (another block of the group already under `key`) are kept, as vLLM keeps
  // them; lookups return the oldest.
  void Cache(std::span<const int32_t> blocks, uint64_t key, Kind kind);
  // free_blocks for one block: one user less; at zero a hashed block is appended to the queue's
  // tail (most recently used), an unhashed one goes back to the head (reused first).
  void Free(int32_t block);

  // The Marconi variant: when the free queue's head is a state block, the state block evicted is
  // instead the free one of lowest utility S = recency + alpha * value, both min-max normalised
  // over the free state blocks, recency = 1 / (clock - access + 1) with the clock given by
  // set_clock (one tick per request), value = what SetValue gave the block; ties to the older
  // access, then the smaller block id. alpha < 0 (the default) is vLLM's plain LRU.
  void set_state_alpha(double alpha) { state_alpha_ = alpha; }
  void set_clock(int64_t clock) { clock_ = clock; }
  void SetValue(int32_t block, double value) { blocks_[Index(block)].value = value; }

  // Evicts one free hashed block wherever it sits in the queue (what popping it at the head
  // does). For tests that cut a cached path mid-way. False if the block is held or unhashed.
  bool Evict(int32_t block);

  bool hashed(int32_t block) const { return blocks_[Index(block)].kind != Kind::kUnhashed; }
  int32_t ref_count(int32_t block) const { return blocks_[Index(block)].ref; }

  // Free blocks: never hashed or hashed and evictable.
  int64_t free_blocks() const {
    return never_used_ + static_cast<int64_t>(unhashed_free_.size()) + hashed_free_;
  }
  int64_t usable_blocks() const { return usable_; }
  // Blocks held by requests (ref_count > 0).
  int64_t held_blocks() const {
    return created() - static_cast<int64_t>(unhashed_free_.size()) - hashed_free_;
  }
  // Occupied blocks: held by a request or cached (hashed), i.e. all but the never-hashed free.
  int64_t used_blocks() const { return created() - static_cast<int64_t>(unhashed_free_.size()); }
  // Hashed blocks by kind, held or free.
  int64_t hashed_blocks(Kind kind) const { return hashed_[static_cast<int>(kind)]; }
  // Hashed blocks evicted from the queue's head, by kind.
  int64_t evicted_blocks(Kind kind) const { return evicted_[static_cast<int>(kind)]; }
  int64_t created() const { return static_cast<int64_t>(blocks_.size()); }
  // The hashed free blocks from the queue's head (next evicted) to its tail, for tests.
  std::vector<int32_t> HashedFreeOrder() const;

 private:
  struct Block {
    int32_t prev = kNone, next = kNone;  // in the hashed free list
    int32_t dup_next = kNone;            // the next block of its group cached under its key
    int32_t ref = 0;
    int32_t entry = kNone;  // its key's entry
    int32_t group = 0;
    Kind kind = Kind::kUnhashed;
    uint64_t seq = 0;    // when it entered the free queue: the queue's order across kinds
    int64_t access = 0;  // the clock when it was last touched or freed
    double value = 0;    // the Marconi variant's FLOPs saved per byte
  };
  static size_t Index(int32_t block) { return static_cast<size_t>(block); }
  void Unlink(int32_t block);
  void Append(int32_t block);
  int32_t ChooseState() const;
  int ListOf(int32_t block) const { return blocks_[Index(block)].kind == Kind::kState ? 1 : 0; }
  void Uncache(int32_t block);

  int64_t usable_;
  int64_t never_used_;
  std::vector<Block> blocks_;
  std::vector<int32_t> unhashed_free_;
  // The hashed free blocks, LRU first, in two lists (attention, state) whose merge by seq is
  // vLLM's one queue: the state list is the Marconi variant's candidates.
  int32_t head_[2] = {kNone, kNone}, tail_[2] = {kNone, kNone};
  uint64_t seq_ = 0;
  double state_alpha_ = -1;
  int64_t clock_ = 0;
  int64_t hashed_free_ = 0;
  BlockKeyMap map_;  // key -> entry
  size_t groups_;
  // Per entry: the key, the chain head of each group, the blocks cached under it.
  std::vector<uint64_t> entry_key_;
  std::vector<int32_t> heads_;
  std::vector<int32_t> entry_blocks_;
  std::vector<int32_t> free_entries_;
  int64_t hashed_[3] = {0, 0, 0};
  int64_t evicted_[3] = {0, 0, 0};
};

}  // namespace marconi::sim

#endif  // MARCONI_SIM_ENGINES_VLLM_BLOCK_POOL_H_
