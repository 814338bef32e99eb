// SGLang's hybrid radix cache (MambaRadixCache / UnifiedRadixCache with its Mamba component), as a
// data structure: a radix tree over tokens whose nodes hold a KV segment and at most one recurrent
// state, with two separate pools (KV tokens, state slots) and two eviction lists. The strategy of
// when states are tracked and inserted lives in SglangCache (sglang.h); docs/engines.md states
// every rule with its source function.
//
// - A partial edge match during a lookup splits the edge: the new parent holds no state (a
//   "tombstone") and inherits the child's locks.
// - KV side: evicts the least recently used unlocked leaf (KV + state), then deletes parents that
//   became tombstone leaves. A lookup or an insert refreshes every node of its path.
// - State side: walks the nodes holding a state from the least recently used, skipping locked
//   ones; an internal node becomes a tombstone (KV kept), a leaf is deleted as above. Only the
//   node whose state a hit uses is refreshed; a newly stored state enters as the most recent.
// - Order::kFlopAware replaces both orders by Marconi's utility (the "Marconi in an engine"
//   variant, SGLang PR #21862): recency 1 / (requests since the last access + 1) plus alpha times
//   FLOPs saved per byte freed, both min-max normalised over the current candidates.
#ifndef MARCONI_SIM_ENGINES_SGLANG_TREE_H_
#define MARCONI_SIM_ENGINES_SGLANG_TREE_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "marconi/cache_stats.h"
#include "marconi/model_spec.h"
#include "marconi/types.h"

namespace marconi::sim {

class SglangTree {
 public:
  static constexpr int64_t kUnbounded = std::numeric_limits<int64_t>::max();
  static constexpr int32_t kRoot = 0;

  enum class Order { kLru, kFlopAware };

  struct Config {
    const ModelSpec* model = nullptr;
    int64_t kv_tokens = kUnbounded;  // the KV token pool
    int64_t slots = kUnbounded;      // the state slot pool
    int64_t kv_bytes_per_token = 0;  // for CacheStats
    int64_t state_slot_bytes = 0;    // bytes of one slot (fp32 temporal state by default)
    Order order = Order::kLru;
    double alpha = 0;  // kFlopAware only
    // SGLang's plain RadixCache (a model without recurrent layers): every node, the upper part of
    // a split included, is a hit position (a "state" of 0 bytes).
    bool every_node_usable = false;
  };

  struct Match {
    int32_t state_node = kRoot;  // the deepest node of the matched path holding a state
    int64_t hit = 0;             // its depth: the tokens reused
    int64_t matched = 0;         // the matched path's length (full-KV match), >= hit
  };

  SglangTree(const Config& config, CacheStats* stats);

  // Ticks the request clock (Marconi's recency counts requests).
  void BeginRequest() { ++clock_; }

  // _match_prefix_helper: walks `key`, splitting a partly matched edge, refreshes the matched
  // path in the KV order and the used state node in the state order.
  Match MatchPrefix(std::span<const Token> key);
  // The Match MatchPrefix would return, changing nothing (no split, no refresh). With
  // every_node_usable a partly matched edge gives state_node = that edge's node and hit = the
  // matched length (MatchPrefix would split it there).
  Match Lookup(std::span<const Token> key) const;

  // The tokens of an insert: `head` then `tail`, the first `size` of them (a request's input and
  // output, never concatenated: the tree copies only the tokens it does not hold yet).
  struct Key {
    std::span<const Token> head, tail;
    size_t size = 0;
  };

  // Inserts key[0, size) with a state at its end (`with_state`; the state enters the slot pool:
  // the caller hands over a slot it held). Returns the node ending at size and whether a state
  // was newly stored there (false: the node already had one; it is refreshed). The KV of tokens
  // already in the tree is not duplicated. Refreshes the path in the KV order. `from`, a node
  // whose path is a prefix of the key, only saves the walk from the root.
  std::pair<int32_t, bool> Insert(const Key& key, bool with_state, int32_t from = kRoot);

  // inc_lock_ref / dec_lock_ref: the full lock on node..root, the state lock on the node.
  void Lock(int32_t node);
  void Unlock(int32_t node);

  // The caller's usage outside the tree: the running requests' own KV tokens and their slots.
  void SetExternal(int64_t kv_tokens, int64_t slots);
  int64_t FreeKv() const;
  int64_t FreeSlots() const;
  // What evicting everything the pools may evict would add to FreeKv() / FreeSlots() once the
  // path of `m` (a Lookup result) is locked too: the KV of every unlocked node (all of it can go,
  // leaf after leaf) but m's path, and every evictable state but m's (kUnbounded for an
  // unbounded pool). The scheduler's admission check (available + evictable).
  int64_t EvictableKv(const Match& m) const;
  int64_t EvictableSlots(const Match& m) const;
  // Evicts on the KV side until FreeKv() >= tokens; false if unlocked leaves ran out first.
  bool EnsureFreeKv(int64_t tokens);
  // Evicts on the state side until FreeSlots() >= slots, at most `max_evictions` states; false if
  // that is not enough.
  bool EnsureFreeSlots(int64_t slots, int64_t max_evictions = kUnbounded);

  int64_t tree_kv_tokens() const { return tree_kv_; }
  // For tests: EvictableKv / EvictableSlots with nothing more to lock, counted by a walk of
  // every node (pairs {kv, slots}).
  std::pair<int64_t, int64_t> CountEvictable() const;
  int64_t states() const { return states_; }
  // High-water marks of the pools' use, the caller's usage included (the capacity invariant).
  int64_t peak_kv_used() const { return peak_kv_used_; }
  int64_t peak_slots_used() const { return peak_slots_used_; }

  // For tests: the depths of the nodes holding a state along the path of `tokens` (fully matched
  // nodes only), without splitting or refreshing anything.
  std::vector<int64_t> StateDepths(std::span<const Token> tokens) const;

 private:
  struct Node {
    int32_t parent = -1;
    int32_t children = 0;
    int64_t depth = 0;  // tokens from the root to the end of this node's edge
    // The edge is (*buf)[begin, begin + len); the parts of a split edge share one buffer.
    std::shared_ptr<const std::vector<Token>> buf;
    int64_t begin = 0, len = 0;
    const Token* edge() const { return buf->data() + begin; }
    bool alive = false;
    bool has_state = false;
    int32_t full_lock = 0;
    int32_t state_lock = 0;
    int64_t kv_seq = 0, kv_clock = 0;        // the KV order
    int64_t state_seq = 0, state_clock = 0;  // the state order
    int32_t prev = -1, next = -1;            // the state list (LRU first)
  };
  static uint64_t ChildKey(int32_t parent, Token first) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(parent)) << 32) |
           static_cast<uint32_t>(first);
  }
  int32_t Child(int32_t parent, Token first) const;
  int32_t NewNode();
  // Splits `node` after its first `offset` tokens; returns the new upper node.
  int32_t Split(int32_t node, int64_t offset);
  bool IsLeaf(int32_t id) const { return id != kRoot && nodes_[id].children == 0; }
  bool EvictableLeaf(int32_t id) const { return IsLeaf(id) && nodes_[id].full_lock == 0; }
  // Keeps `id`'s membership (and key) in the evictable-leaf set current.
  void SyncLeaf(int32_t id);
  void TouchKv(int32_t id);
  void AddState(int32_t id);
  void RemoveState(int32_t id);
  void RefreshState(int32_t id);
  // Deletes a leaf (its KV and state), then its parents while they are unlocked tombstone leaves.
  void DeleteLeaf(int32_t id);
  // Victims; kNoNode when every candidate is locked.
  int32_t KvVictim() const;
  int32_t StateVictim() const;
  bool StateEvictable(int32_t id) const;
  // Marconi's utility: the candidate of least normalised recency + alpha * efficiency.
  template <typename Range, typename ClockOf>
  int32_t FlopAwareVictim(const Range& candidates, ClockOf clock_of, bool state_side) const;
  double Efficiency(int32_t id) const;
  void UpdateUse();
  // The number of leading tokens of `child`'s edge equal to key[pos, size).
  size_t MatchEdge(int32_t child, const Key& key, size_t pos) const;

  Config config_;
  CacheStats* stats_;
  std::vector<Node> nodes_;
  std::vector<int32_t> free_ids_;
  std::unordered_map<uint64_t, int32_t> children_;  // (parent, first token) -> child
  std::set<std::pair<int64_t, int32_t>> leaves_;    // evictable leaves by (kv_seq, id)
  int32_t lru_head_ = -1, lru_tail_ = -1;           // the state list
  int64_t seq_ = 0, clock_ = 0;
  int64_t tree_kv_ = 0, states_ = 0;
  int64_t locked_kv_ = 0;      // KV of the nodes with full_lock > 0
  int64_t locked_states_ = 0;  // states of the nodes with state_lock > 0
  int64_t external_kv_ = 0, external_slots_ = 0;
  int64_t peak_kv_used_ = 0, peak_slots_used_ = 0;
  std::vector<int32_t> path_;  // scratch
};

}  // namespace marconi::sim

#endif  // MARCONI_SIM_ENGINES_SGLANG_TREE_H_
