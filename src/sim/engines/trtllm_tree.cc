// The reuse tree of the TensorRT-LLM emulation: blocks in a flat arena, the hash index of a
// block's many children, the lookup, the pins of running requests and the per-pool LRU leaf
// eviction. The request life cycle is in trtllm.cc.
#include <algorithm>
#include <string>

#include "marconi/prefix_cache.h"
#include "sim/engines/trtllm.h"

namespace marconi::sim {
namespace {

constexpr int64_t kUnbounded = PrefixCacheConfig::kUnlimited;
constexpr NodeId kRoot = 0;
constexpr int64_t kIndexAbove = 8;

uint64_t Mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

int64_t CommonPrefix(std::span<const Token> a, std::span<const Token> b) {
  const size_t m = std::min(a.size(), b.size());
  const auto [ia, ib] = std::mismatch(a.begin(), a.begin() + static_cast<ptrdiff_t>(m), b.begin());
  return static_cast<int64_t>(ia - a.begin());
}

// std::push_heap with this keeps the smallest tick on top.
struct LaterT {
  bool operator()(const std::pair<uint64_t, NodeId>& a,
                  const std::pair<uint64_t, NodeId>& b) const {
    return a.first > b.first;
  }
};
constexpr LaterT Later;

}  // namespace

NodeId TrtllmCache::Index::Find(uint64_t key) const {
  if (keys_.empty()) return kNoNode;
  const size_t mask = keys_.size() - 1;
  for (size_t i = key & mask;; i = (i + 1) & mask) {
    if (keys_[i] == key) return ids_[i];
    if (keys_[i] == 0) return kNoNode;
  }
}

void TrtllmCache::Index::Insert(uint64_t key, NodeId id) {
  if ((size_ + 1) * 2 > keys_.size()) Grow();
  const size_t mask = keys_.size() - 1;
  size_t i = key & mask;
  while (keys_[i] != 0) {
    if (keys_[i] == key) return;
    i = (i + 1) & mask;
  }
  keys_[i] = key;
  ids_[i] = id;
  ++size_;
}

// Linear probing with backward-shift deletion: no tombstones.
void TrtllmCache::Index::Erase(uint64_t key, NodeId id) {
  if (keys_.empty()) return;
  const size_t mask = keys_.size() - 1;
  size_t i = key & mask;
  while (keys_[i] != key) {
    if (keys_[i] == 0) return;
    i = (i + 1) & mask;
  }
  if (ids_[i] != id) return;
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (keys_[j] == 0) break;
    const size_t home = keys_[j] & mask;
    // Move j's entry into the hole at i unless its home lies cyclically in (i, j].
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      keys_[i] = keys_[j];
      ids_[i] = ids_[j];
      i = j;
    }
  }
  keys_[i] = 0;
  --size_;
}

void TrtllmCache::Index::Grow() {
  std::vector<uint64_t> keys = std::move(keys_);
  std::vector<NodeId> ids = std::move(ids_);
  keys_.assign(std::max<size_t>(64, keys.size() * 2), 0);
  ids_.assign(keys_.size(), kNoNode);
  size_ = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i] != 0) Insert(keys[i], ids[i]);
  }
}

std::span<const Token> TrtllmCache::TokensOf(NodeId id) const {
  const Block& b = blocks_[static_cast<size_t>(id)];
  return {arena_.data() + static_cast<size_t>(id) * static_cast<size_t>(opt_.tokens_per_block),
          static_cast<size_t>(b.len)};
}

// A block's content hash: four independent lanes of two tokens each, so that the multiplies
// overlap (this hash is most of the cost of a replay that commits much).
uint64_t TrtllmCache::ContentHash(std::span<const Token> tokens) {
  constexpr uint64_t kMul = 0x9fb21c651e98df25ULL;
  uint64_t lane[4] = {0x9e3779b97f4a7c15ULL ^ tokens.size(), 0xc2b2ae3d27d4eb4fULL,
                      0x165667b19e3779f9ULL, 0x27d4eb2f165667c5ULL};
  auto word = [&tokens](size_t i) {
    return static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) |
           static_cast<uint64_t>(static_cast<uint32_t>(tokens[i + 1])) << 32;
  };
  size_t i = 0;
  for (; i + 8 <= tokens.size(); i += 8) {
    for (size_t k = 0; k < 4; ++k) {
      lane[k] = (lane[k] ^ word(i + 2 * k)) * kMul;
      lane[k] ^= lane[k] >> 29;
    }
  }
  for (; i < tokens.size(); ++i) {
    lane[0] = (lane[0] ^ static_cast<uint32_t>(tokens[i])) * kMul;
    lane[0] ^= lane[0] >> 29;
  }
  return Mix(lane[0] ^ Mix(lane[1] ^ Mix(lane[2] ^ Mix(lane[3])))) | 1;  // 0 = not computed
}

uint64_t TrtllmCache::KeyOf(NodeId parent, uint64_t content) {
  return Mix(content + static_cast<uint64_t>(parent) * 0xc2b2ae3d27d4eb4fULL) | 1;  // never 0
}

// The child of `parent` holding exactly `tokens`. A block with few children (the usual case: a
// chain of one prompt's blocks) has them compared directly; one with many has them in the index,
// found by the content hash, computed into *content on first use (0 = not yet).
NodeId TrtllmCache::FindChild(NodeId parent, std::span<const Token> tokens,
                              uint64_t* content) const {
  const Block& p = blocks_[static_cast<size_t>(parent)];
  auto holds = [&](NodeId id) {
    const auto have = TokensOf(id);
    return std::equal(have.begin(), have.end(), tokens.begin(), tokens.end());
  };
  if (!p.indexed) {
    for (NodeId c = p.first_child; c != kNoNode; c = blocks_[static_cast<size_t>(c)].next) {
      if (holds(c)) return c;
    }
    return kNoNode;
  }
  if (*content == 0) *content = ContentHash(tokens);
  const NodeId id = index_.Find(KeyOf(parent, *content));
  if (id == kNoNode) return kNoNode;
  const Block& b = blocks_[static_cast<size_t>(id)];
  if (!b.alive || b.parent != parent || !holds(id)) return kNoNode;  // a hash collision
  return id;
}

// Past kIndexAbove children, a block's children go into the index (and stay there).
void TrtllmCache::IndexChild(NodeId id) {
  Block& b = blocks_[static_cast<size_t>(id)];
  b.key = KeyOf(b.parent, ContentHash(TokensOf(id)));
  index_.Insert(b.key, id);
}

NodeId TrtllmCache::NewBlock(NodeId parent, std::span<const Token> tokens, uint64_t content) {
  NodeId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<NodeId>(blocks_.size());
    blocks_.emplace_back();
    arena_.resize(arena_.size() + static_cast<size_t>(opt_.tokens_per_block));
  }
  Block& p = blocks_[static_cast<size_t>(parent)];
  Block& b = blocks_[static_cast<size_t>(id)];
  b.parent = parent;
  b.first_child = kNoNode;
  b.prev = kNoNode;
  b.next = p.first_child;
  if (p.first_child != kNoNode) blocks_[static_cast<size_t>(p.first_child)].prev = id;
  p.first_child = id;  // the parent is no longer a leaf: its heap entries go stale
  b.start = p.start + p.len;
  b.len = static_cast<int64_t>(tokens.size());
  std::copy(tokens.begin(), tokens.end(),
            arena_.begin() + static_cast<ptrdiff_t>(id) * opt_.tokens_per_block);
  b.states.clear();
  b.children = 0;
  b.indexed = false;
  b.alive = true;
  b.holders = 1;  // the committing request's pin
  ++pinned_blocks_;
  b.kv_tick = b.state_tick = ++tick_;
  ++p.children;
  if (p.indexed) {
    b.key = KeyOf(parent, content != 0 ? content : ContentHash(tokens));
    index_.Insert(b.key, id);
  } else if (p.children > kIndexAbove) {
    p.indexed = true;
    for (NodeId c = p.first_child; c != kNoNode; c = blocks_[static_cast<size_t>(c)].next) {
      IndexChild(c);
    }
  }
  // Not a candidate yet: the committing request holds it, and the caller pushes the last block of
  // its commit once the blocks below it exist (no stale entry per block).
  ++tree_pages_;
  ++tree_blocks_;
  tree_tokens_ += b.len;
  return id;
}

// Leaves enter the page heap, leaves with states the state heap; entries of a block that stops
// being a leaf, is touched again or dies are skipped when popped.
void TrtllmCache::PushCandidates(NodeId id) {
  if (id == kRoot || !IsLeaf(id)) return;
  const Block& b = blocks_[static_cast<size_t>(id)];
  kv_heap_.emplace_back(b.kv_tick, id);
  std::push_heap(kv_heap_.begin(), kv_heap_.end(), Later);
  if (!b.states.empty()) {
    state_heap_.emplace_back(b.state_tick, id);
    std::push_heap(state_heap_.begin(), state_heap_.end(), Later);
  }
}

void TrtllmCache::TouchKv(NodeId id) {
  if (id == kRoot) return;
  blocks_[static_cast<size_t>(id)].kv_tick = ++tick_;
  if (IsLeaf(id)) {
    kv_heap_.emplace_back(blocks_[static_cast<size_t>(id)].kv_tick, id);
    std::push_heap(kv_heap_.begin(), kv_heap_.end(), Later);
  }
}

void TrtllmCache::TouchState(NodeId id) {
  if (id == kRoot) return;
  Block& b = blocks_[static_cast<size_t>(id)];
  b.state_tick = ++tick_;
  if (IsLeaf(id) && !b.states.empty()) {
    state_heap_.emplace_back(b.state_tick, id);
    std::push_heap(state_heap_.begin(), state_heap_.end(), Later);
  }
}

// The least recently used live candidate no running request holds, popped; kNoNode if
// none. Held candidates are set aside (held_kv_, held_state_) and pushed back by the caller.
NodeId TrtllmCache::PopLeaf(Heap& heap, bool need_state) {
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), Later);
    const auto [tick, id] = heap.back();
    heap.pop_back();
    const Block& b = blocks_[static_cast<size_t>(id)];
    const uint64_t current = need_state ? b.state_tick : b.kv_tick;
    if (!b.alive || !IsLeaf(id) || tick != current || (need_state && b.states.empty())) continue;
    if (b.holders > 0) {
      (need_state ? held_state_ : held_kv_).emplace_back(tick, id);
      continue;
    }
    return id;
  }
  return kNoNode;
}

void TrtllmCache::RemoveBlock(NodeId id) {
  Block& b = blocks_[static_cast<size_t>(id)];
  if (blocks_[static_cast<size_t>(b.parent)].indexed) index_.Erase(b.key, id);
  --blocks_[static_cast<size_t>(b.parent)].children;
  ++stats_.evictions;
  stats_.evicted_tokens += b.len;
  stats_.evicted_checkpoints += static_cast<int64_t>(b.states.size());
  tree_states_ -= static_cast<int64_t>(b.states.size());
  tree_tokens_ -= b.len;
  --tree_pages_;
  --tree_blocks_;
  b.alive = false;
  ++b.gen;
  b.states.clear();
  if (b.prev != kNoNode) blocks_[static_cast<size_t>(b.prev)].next = b.next;
  if (b.next != kNoNode) blocks_[static_cast<size_t>(b.next)].prev = b.prev;
  Block& p = blocks_[static_cast<size_t>(b.parent)];
  if (p.first_child == id) p.first_child = b.next;
  free_ids_.push_back(id);
  // A parent left without children becomes a leaf. Evicting a chain of blocks, it is usually the
  // next victim: kept aside in next_leaf_ rather than pushed and popped at once.
  FlushNextLeaf();
  if (b.parent != kRoot && IsLeaf(b.parent)) next_leaf_ = b.parent;
}

void TrtllmCache::FlushNextLeaf() {
  if (next_leaf_ != kNoNode) PushCandidates(next_leaf_);
  next_leaf_ = kNoNode;
}

// An attention-page shortfall: the least recently used leaf block no running request holds
// goes, with the states it holds (a state never outlives its block).
bool TrtllmCache::EvictLeafBlock() {
  NodeId id = kNoNode;
  if (next_leaf_ != kNoNode) {
    const Block& b = blocks_[static_cast<size_t>(next_leaf_)];
    // Older than every heap entry (stale ones included), so the least recently used leaf.
    if (b.holders == 0 && (kv_heap_.empty() || b.kv_tick <= kv_heap_.front().first)) {
      id = next_leaf_;
      next_leaf_ = kNoNode;
    } else {
      FlushNextLeaf();
    }
  }
  if (id == kNoNode) id = PopLeaf(kv_heap_, false);
  if (id == kNoNode) return false;
  RemoveBlock(id);
  return true;
}

// A state-slot shortfall: the least recently used state page among leaf blocks goes alone (the
// deepest of its block first); the block's KV stays and still serves attention matches. With no
// leaf state left, a leaf block goes to expose the states above it.
bool TrtllmCache::EvictLeafState() {
  NodeId id = kNoNode;
  if (next_leaf_ != kNoNode && !blocks_[static_cast<size_t>(next_leaf_)].states.empty()) {
    const Block& b = blocks_[static_cast<size_t>(next_leaf_)];
    // As in EvictLeafBlock: older than every state-heap entry, so the least recently used.
    if (b.holders == 0 && (state_heap_.empty() || b.state_tick <= state_heap_.front().first)) {
      id = next_leaf_;  // stays pending as a page candidate
    } else {
      FlushNextLeaf();
    }
  }
  if (id == kNoNode) id = PopLeaf(state_heap_, true);
  if (id == kNoNode) return EvictLeafBlock();
  Block& b = blocks_[static_cast<size_t>(id)];
  b.states.pop_back();
  --tree_states_;
  ++stats_.evictions;
  ++stats_.evicted_checkpoints;
  if (!b.states.empty() && id != next_leaf_) {  // still the least recently used candidate
    state_heap_.emplace_back(b.state_tick, id);
    std::push_heap(state_heap_.begin(), state_heap_.end(), Later);
  }
  return true;
}

bool TrtllmCache::EnsureFreePages(int64_t pages) {
  if (kv_pages_ == kUnbounded) return true;
  bool ok = true;
  while (kv_pages_ - tree_pages_ - running_pages_ < pages) {
    if (!EvictLeafBlock()) {
      ok = false;
      break;
    }
  }
  FlushNextLeaf();
  RestoreHeld();
  return ok;
}

bool TrtllmCache::EnsureFreeSlots(int64_t slots) {
  if (state_slots_ == kUnbounded) return true;
  bool ok = true;
  while (state_slots_ - tree_states_ - running_slots_ < slots) {
    if (!EvictLeafState()) {
      ok = false;
      break;
    }
  }
  FlushNextLeaf();
  RestoreHeld();
  return ok;
}

// Pinned candidates go back into the heap they came from, once each (pins can outlast many
// evictions under load: a copy per heap each time would pile up).
void TrtllmCache::RestoreHeld() {
  for (const auto& e : held_kv_) {
    kv_heap_.push_back(e);
    std::push_heap(kv_heap_.begin(), kv_heap_.end(), Later);
  }
  for (const auto& e : held_state_) {
    state_heap_.push_back(e);
    std::push_heap(state_heap_.begin(), state_heap_.end(), Later);
  }
  held_kv_.clear();
  held_state_.clear();
}

// Stale heap entries pile up with every touch; rebuild from the live leaves now and then.
void TrtllmCache::CompactHeaps() {
  if (kv_heap_.size() + state_heap_.size() < 4 * static_cast<size_t>(tree_blocks_) + 4096) return;
  kv_heap_.clear();
  state_heap_.clear();
  for (size_t i = 1; i < blocks_.size(); ++i) {
    if (blocks_[i].alive) PushCandidates(static_cast<NodeId>(i));
  }
}
// Lookup over n - 1 tokens ("prefix lookup excludes the final prompt token"): whole blocks by
// their content, then the best partial match among the children where the walk stops (partial
// reuse). The hit is the deepest committed snapshot on the matched path, <= the match.
void TrtllmCache::LookUp(std::span<const Token> input, Lookup* out) const {
  const int64_t n = static_cast<int64_t>(input.size());
  const int64_t B = opt_.tokens_per_block;
  auto block_of = [&](int64_t start, int64_t end) {
    return input.subspan(static_cast<size_t>(start), static_cast<size_t>(end - start));
  };
  out->content.assign(static_cast<size_t>(n / B), 0);  // content hashes of full blocks, lazily
  out->path.clear();
  const int64_t lookup = n - 1;
  NodeId cur = kRoot;
  int64_t depth = 0;
  while (depth + B <= lookup) {
    const NodeId child =
        FindChild(cur, block_of(depth, depth + B), &out->content[static_cast<size_t>(depth / B)]);
    if (child == kNoNode) break;
    out->path.push_back(child);
    cur = child;
    depth += B;
  }
  out->full_matched = out->path.size();
  out->match = depth;
  if (depth < lookup) {
    const auto rest = block_of(depth, std::min(depth + B, lookup));
    // The longest partial match; among equal ones, the block with the deepest usable state.
    NodeId best = kNoNode;
    int64_t best_len = 0, best_state = -1;
    for (NodeId c = blocks_[static_cast<size_t>(cur)].first_child; c != kNoNode;
         c = blocks_[static_cast<size_t>(c)].next) {
      const int64_t l = CommonPrefix(TokensOf(c), rest);
      if (l == 0 || l < best_len) continue;
      int64_t state = 0;
      for (int64_t st : blocks_[static_cast<size_t>(c)].states) {
        if (st <= depth + l) state = st;
      }
      if (l > best_len || state > best_state) best = c, best_len = l, best_state = state;
    }
    if (best != kNoNode) {
      out->path.push_back(best);
      out->match = depth + best_len;
    }
  }
  out->hit = 0;
  out->hit_node = kNoNode;
  for (NodeId id : out->path) {
    for (int64_t s : blocks_[static_cast<size_t>(id)].states) {
      if (s <= out->match) out->hit = s, out->hit_node = id;
    }
  }
}

int64_t TrtllmCache::FreePages() const {
  return kv_pages_ == kUnbounded ? kUnbounded : kv_pages_ - tree_pages_ - running_pages_;
}

int64_t TrtllmCache::FreeSlots() const {
  return state_slots_ == kUnbounded ? kUnbounded : state_slots_ - tree_states_ - running_slots_;
}

// One pin of `r` on block `id`; a pinned block and its states are never evicted.
void TrtllmCache::Hold(Running& r, NodeId id) {
  Block& b = blocks_[static_cast<size_t>(id)];
  if (b.holders++ == 0) {
    ++pinned_blocks_;
    pinned_states_ += static_cast<int64_t>(b.states.size());
  }
  r.held.push_back(id);
}

void TrtllmCache::Unhold(NodeId id) {
  Block& b = blocks_[static_cast<size_t>(id)];
  if (--b.holders == 0) {
    --pinned_blocks_;
    pinned_states_ -= static_cast<int64_t>(b.states.size());
  }
}

std::string TrtllmCache::CheckInvariants() const {
  std::vector<uint32_t> pins(blocks_.size(), 0);
  int64_t pages = 0, slots = 0;
  for (size_t k = 0; k < live_; ++k) {
    const Running& r = runs_[k];
    const RequestId id = r.id;
    for (NodeId h : r.held) ++pins[static_cast<size_t>(h)];
    pages += r.pages;
    slots += r.slots;
    if (r.lookup.hit > 0) {
      const Block& b = blocks_[static_cast<size_t>(r.lookup.hit_node)];
      if (!b.alive || b.holders == 0 ||
          !std::binary_search(b.states.begin(), b.states.end(), r.lookup.hit)) {
        return "request " + std::to_string(id) + " lost the state of its hit";
      }
    }
    // Its lock: the path's blocks below the hit (path[i] starts at i * tokens_per_block).
    for (size_t i = 0; i < r.lookup.path.size(); ++i) {
      if (static_cast<int64_t>(i) * opt_.tokens_per_block >= r.lookup.hit) break;
      const Block& b = blocks_[static_cast<size_t>(r.lookup.path[i])];
      if (!b.alive || b.gen != r.gens[i] || b.holders == 0) {
        return "request " + std::to_string(id) + " lost a block of its hit";
      }
    }
  }
  int64_t tree_pages = 0, tree_states = 0, tree_tokens = 0, pinned = 0, pinned_states = 0;
  for (size_t i = 1; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    const std::string name = "block " + std::to_string(i);
    if (!b.alive) {
      if (pins[i] != 0) return name + " is dead but pinned";
      continue;
    }
    ++tree_pages;
    tree_states += static_cast<int64_t>(b.states.size());
    tree_tokens += b.len;
    if (b.holders != pins[i]) return name + " counts a wrong number of pins";
    if (!blocks_[static_cast<size_t>(b.parent)].alive) return name + " has a dead parent";
    if (b.holders > 0) {
      ++pinned;
      pinned_states += static_cast<int64_t>(b.states.size());
      if (b.parent != kRoot && blocks_[static_cast<size_t>(b.parent)].holders == 0) {
        return name + " is pinned below an unpinned block";
      }
    }
    for (size_t k = 0; k < b.states.size(); ++k) {
      if (b.states[k] <= b.start || b.states[k] > b.start + b.len ||
          (k > 0 && b.states[k] <= b.states[k - 1])) {
        return name + " holds a state outside it";
      }
    }
  }
  if (tree_pages != tree_pages_ || tree_states != tree_states_ || tree_tokens != tree_tokens_) {
    return "tree counters differ from the tree";
  }
  if (pinned != pinned_blocks_ || pinned_states != pinned_states_) return "pin counters differ";
  if (pages != running_pages_ || slots != running_slots_) return "running counters differ";
  if (kv_pages_ != kUnbounded && tree_pages_ + running_pages_ > kv_pages_) {
    return "the page pool is exceeded";
  }
  if (state_slots_ != kUnbounded && tree_states_ + running_slots_ > state_slots_) {
    return "the state pool is exceeded";
  }
  return "";
}

}  // namespace marconi::sim
