#include "sim/engines/trtllm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "marconi/prefix_cache.h"

namespace marconi::sim {
namespace {

constexpr int64_t kUnbounded = PrefixCacheConfig::kUnlimited;
constexpr NodeId kRoot = 0;
constexpr int64_t kIndexAbove = 8;
// Every block reserves this many tokens in the arena; TensorRT-LLM uses 8 to 128.
constexpr int64_t kMaxTokensPerBlock = 4096;

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

TrtllmCache::TrtllmCache(const ModelSpec& model, const TrtllmOptions& options, int64_t kv_pages,
                         int64_t state_slots)
    : model_(&model),
      opt_(options),
      kv_pages_(kv_pages),
      state_slots_(state_slots),
      // With no placement rule the manager has no snapshot point and turns block reuse off
      // (ENGINES.md; the test comment "would silently never engage").
      reuse_enabled_(options.snapshot_interval > 0 || options.offset_from_start >= 0 ||
                     options.offset_from_end >= 0 || options.branch_snapshot) {
  blocks_.emplace_back();
  blocks_[0].alive = true;
  arena_.resize(static_cast<size_t>(opt_.tokens_per_block));
  // The tree never holds more blocks than pages: reserve them when that is modest (64 MiB).
  if (kv_pages_ != kUnbounded && (kv_pages_ + 2) * opt_.tokens_per_block <= int64_t{1} << 24) {
    const auto most = static_cast<size_t>(kv_pages_ + 2);
    blocks_.reserve(most);
    arena_.reserve(most * static_cast<size_t>(opt_.tokens_per_block));
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
  b.pin = epoch_;
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
  // Not a candidate yet: the running request holds it, and the caller pushes the last block of
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

// The least recently used live candidate not held by the running request, popped; kNoNode if
// none. Held candidates are set aside in held_ and pushed back by the caller.
NodeId TrtllmCache::PopLeaf(Heap& heap, bool need_state) {
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), Later);
    const auto [tick, id] = heap.back();
    heap.pop_back();
    const Block& b = blocks_[static_cast<size_t>(id)];
    const uint64_t current = need_state ? b.state_tick : b.kv_tick;
    if (!b.alive || !IsLeaf(id) || tick != current || (need_state && b.states.empty())) continue;
    if (b.pin == epoch_) {
      held_.emplace_back(tick, id);
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

// An attention-page shortfall: the least recently used leaf block not held by the running request
// goes, with the states it holds (a state never outlives its block).
bool TrtllmCache::EvictLeafBlock() {
  NodeId id = kNoNode;
  if (next_leaf_ != kNoNode) {
    const Block& b = blocks_[static_cast<size_t>(next_leaf_)];
    // Older than every heap entry (stale ones included), so the least recently used leaf.
    if (b.pin != epoch_ && (kv_heap_.empty() || b.kv_tick <= kv_heap_.front().first)) {
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
    if (b.pin != epoch_ && (state_heap_.empty() || b.state_tick <= state_heap_.front().first)) {
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
  while (kv_pages_ - tree_pages_ < pages) {
    if (!EvictLeafBlock()) {
      ok = false;
      break;
    }
  }
  FlushNextLeaf();
  for (const auto& e : held_) {
    kv_heap_.push_back(e);
    std::push_heap(kv_heap_.begin(), kv_heap_.end(), Later);
  }
  held_.clear();
  return ok;
}

bool TrtllmCache::EnsureFreeSlots(int64_t slots) {
  if (state_slots_ == kUnbounded) return true;
  bool ok = true;
  while (state_slots_ - tree_states_ < slots) {
    if (!EvictLeafState()) {
      ok = false;
      break;
    }
  }
  FlushNextLeaf();
  // Held entries may come from either heap (EvictLeafState falls back to EvictLeafBlock).
  for (const auto& e : held_) {
    PushCandidates(e.second);
  }
  held_.clear();
  return ok;
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

std::vector<int64_t> TrtllmCache::SnapshotPoints(int64_t prompt, int64_t match_depth,
                                                 int64_t reused) const {
  std::vector<int64_t> points;
  if (opt_.snapshot_interval > 0) {
    for (int64_t p = opt_.snapshot_interval; p <= prompt; p += opt_.snapshot_interval) {
      points.push_back(p);
    }
  }
  if (opt_.offset_from_start > 0 && opt_.offset_from_start <= prompt) {
    points.push_back(opt_.offset_from_start);
  }
  if (opt_.offset_from_end >= 0 && prompt - opt_.offset_from_end > 0) {
    points.push_back(prompt - opt_.offset_from_end);
  }
  if (opt_.branch_snapshot) {
    // With branch snapshots on and no other point, the prompt end is one (case 16: {P} first).
    if (points.empty()) points.push_back(prompt);
    // _record_branch_snapshot_point: where the request leaves the reuse tree, block-aligned.
    const int64_t lookup = prompt - 1;
    const int64_t pt = match_depth / opt_.tokens_per_block * opt_.tokens_per_block;
    if (match_depth < lookup && pt > 0 && pt > reused && pt < prompt) points.push_back(pt);
  }
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  return points;
}

EngineLookup TrtllmCache::Serve(std::span<const Token> input, std::span<const Token> output,
                                Timestamp /*now*/) {
  if (!reuse_enabled_) return {};
  const int64_t n = static_cast<int64_t>(input.size());
  const int64_t B = opt_.tokens_per_block;
  ++epoch_;
  auto block_of = [&](int64_t start, int64_t end) {
    return input.subspan(static_cast<size_t>(start), static_cast<size_t>(end - start));
  };
  content_.assign(static_cast<size_t>(n / B), 0);  // content hashes of full blocks, lazily

  // Lookup over n - 1 tokens ("prefix lookup excludes the final prompt token"): whole blocks by
  // their content, then the best partial match among the children where the walk stops (partial
  // reuse). The hit is the deepest committed snapshot on the matched path, <= the match.
  const int64_t lookup = n - 1;
  path_.clear();
  NodeId cur = kRoot;
  int64_t depth = 0;
  while (depth + B <= lookup) {
    const NodeId child =
        FindChild(cur, block_of(depth, depth + B), &content_[static_cast<size_t>(depth / B)]);
    if (child == kNoNode) break;
    path_.push_back(child);
    cur = child;
    depth += B;
  }
  const size_t full_matched = path_.size();
  int64_t match = depth;
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
      path_.push_back(best);
      match = depth + best_len;
    }
  }
  int64_t hit = 0;
  NodeId hit_node = kNoNode;
  for (NodeId id : path_) {
    for (int64_t s : blocks_[static_cast<size_t>(id)].states) {
      if (s <= match) hit = s, hit_node = id;
    }
  }
  // The running request holds the blocks it reuses, [0, hit).
  for (NodeId id : path_) {
    Block& b = blocks_[static_cast<size_t>(id)];
    if (b.start >= hit) break;
    b.pin = epoch_;
    TouchKv(id);
  }
  if (hit_node != kNoNode) TouchState(hit_node);

  const std::vector<int64_t> points = SnapshotPoints(n, match, hit);
  const int64_t commit_limit = points.empty() ? n : points.back();
  int64_t new_states = 0;
  for (int64_t p : points) new_states += p > hit ? 1 : 0;

  // While it runs: its own pages for every token past the reused blocks (a partially reused block
  // is copied), its live state slot and one slot per snapshot it takes.
  const int64_t g = static_cast<int64_t>(output.size());
  const int64_t kv_tokens = n + std::max<int64_t>(g, 1) - 1;
  const int64_t own_pages = (kv_tokens + B - 1) / B - hit / B;
  EnsureFreePages(own_pages);
  EnsureFreeSlots(1 + new_states);

  // At finish (try_commit_blocks with commit_min_snapshot): blocks of the prompt up to the commit
  // limit and the snapshots taken; generated tokens and KV past the limit are freed. The full
  // blocks the lookup matched are reused as they are, as far as they survived the evictions above
  // (leaf-only eviction leaves a prefix of them).
  ++stats_.inserts;
  std::vector<NodeId>& committed = path_;
  size_t kept = 0;
  while (kept < full_matched && blocks_[static_cast<size_t>(committed[kept])].alive &&
         blocks_[static_cast<size_t>(committed[kept])].start + B <= commit_limit) {
    ++kept;
  }
  committed.resize(kept);
  for (size_t i = 0; i < kept; ++i) {
    blocks_[static_cast<size_t>(committed[i])].pin = epoch_;
    TouchKv(committed[i]);
  }
  cur = kept > 0 ? committed.back() : kRoot;
  bool fresh = false;  // below a new block nothing exists yet
  for (int64_t start = static_cast<int64_t>(kept) * B; start < commit_limit; start += B) {
    const int64_t end = std::min(start + B, commit_limit);
    const auto tokens = block_of(start, end);
    uint64_t partial = 0;
    uint64_t& content = end - start == B ? content_[static_cast<size_t>(start / B)] : partial;
    NodeId child = fresh ? kNoNode : FindChild(cur, tokens, &content);
    if (child == kNoNode) {
      if (!EnsureFreePages(1)) break;  // only when the request alone outgrows the pool
      child = NewBlock(cur, tokens, content);
      fresh = true;
    } else {
      blocks_[static_cast<size_t>(child)].pin = epoch_;
      TouchKv(child);
    }
    committed.push_back(child);
    cur = child;
  }
  if (fresh) PushCandidates(cur);
  for (int64_t p : points) {
    if (p <= hit) continue;
    const size_t index = static_cast<size_t>((p - 1) / B);
    if (index >= committed.size()) break;
    const NodeId id = committed[index];
    {
      const std::vector<int64_t>& states = blocks_[static_cast<size_t>(id)].states;
      if (std::binary_search(states.begin(), states.end(), p)) {
        TouchState(id);
        continue;
      }
    }
    if (!EnsureFreeSlots(1)) continue;
    std::vector<int64_t>& states = blocks_[static_cast<size_t>(id)].states;
    states.insert(std::lower_bound(states.begin(), states.end(), p), p);
    ++tree_states_;
    ++stats_.checkpoints_admitted;
    TouchState(id);
  }
  ++epoch_;  // nothing is held once the request is gone
  CompactHeaps();
  SyncStats();
  return {match, hit};
}

void TrtllmCache::SyncStats() {
  const int64_t page_bytes = opt_.tokens_per_block * model_->KvBytesPerToken();
  stats_.cached_tokens = tree_tokens_;
  stats_.nodes = tree_blocks_;
  stats_.checkpoints = tree_states_;
  stats_.kv_bytes = tree_pages_ * page_bytes;
  stats_.state_bytes = tree_states_ * model_->StateBytesPerCheckpoint();
  UpdatePeaks();
}

std::map<std::string, double> TrtllmCache::DerivedSizes() const {
  auto count = [](int64_t v) { return v == kUnbounded ? -1.0 : static_cast<double>(v); };
  return {{"kv_pages", count(kv_pages_)},
          {"state_slots", count(state_slots_)},
          {"tokens_per_block", static_cast<double>(opt_.tokens_per_block)},
          {"page_bytes", static_cast<double>(opt_.tokens_per_block * model_->KvBytesPerToken())},
          {"state_bytes", static_cast<double>(model_->StateBytesPerCheckpoint())},
          {"reuse_enabled", reuse_enabled_ ? 1.0 : 0.0}};
}

Result<std::unique_ptr<EngineCache>> MakeTrtllm(const EngineContext& context) {
  const ModelSpec& model = *context.model;
  TrtllmOptions o;
  o.tokens_per_block = static_cast<int64_t>(context.param("tokens_per_block"));
  o.snapshot_interval = static_cast<int64_t>(context.param("snapshot_interval"));
  o.offset_from_start = static_cast<int64_t>(context.param("offset_from_start"));
  o.offset_from_end = static_cast<int64_t>(context.param("offset_from_end"));
  o.branch_snapshot = context.param("branch_snapshot") != 0;
  o.max_seq_len = static_cast<int64_t>(context.param("max_seq_len"));
  if (o.tokens_per_block > kMaxTokensPerBlock) {
    return Status::InvalidArgument("trtllm: tokens_per_block must be at most " +
                                   std::to_string(kMaxTokensPerBlock));
  }
  if (o.tokens_per_block < 1)
    return Status::InvalidArgument("trtllm: tokens_per_block must be >= 1");
  if (o.snapshot_interval < 0) {
    return Status::InvalidArgument("trtllm: snapshot_interval must be >= 0 (0 = off)");
  }
  if (o.offset_from_start == 0 || o.offset_from_start < -1) {
    return Status::InvalidArgument(
        "trtllm: offset_from_start must be a positive token count, or -1 for none");
  }
  if (o.offset_from_end < -1) {
    return Status::InvalidArgument("trtllm: offset_from_end must be >= 0, or -1 for none");
  }
  if (o.max_seq_len < 2) return Status::InvalidArgument("trtllm: max_seq_len must be >= 2");

  const int64_t kv_per_token = model.KvBytesPerToken();
  const int64_t state_bytes = model.StateBytesPerCheckpoint();
  const int64_t page_bytes = o.tokens_per_block * kv_per_token;
  int64_t kv_pages = kUnbounded, state_slots = kUnbounded;
  if (context.capacity_bytes != kUnbounded) {
    // _typical_request_descs: a typical request holds max_seq_len / 2 tokens of attention KV and
    // 1 + F state slots (F = fixed-offset rules; periodic snapshots are not counted).
    const double fixed = (o.offset_from_start >= 0 ? 1 : 0) + (o.offset_from_end >= 0 ? 1 : 0);
    const double attn = static_cast<double>(o.max_seq_len / 2) * static_cast<double>(kv_per_token);
    const double state = (1 + fixed) * static_cast<double>(state_bytes);
    const double share = attn + state > 0 ? attn / (attn + state) : 0;
    const double capacity = static_cast<double>(context.capacity_bytes);
    if (page_bytes > 0) {
      kv_pages =
          static_cast<int64_t>(std::floor(capacity * share / static_cast<double>(page_bytes)));
    }
    const int64_t rest = context.capacity_bytes - (page_bytes > 0 ? kv_pages * page_bytes : 0);
    if (state_bytes > 0) state_slots = rest / state_bytes;
    if (kv_pages < 1 || state_slots < 1) {
      return Status::InvalidArgument("trtllm: capacity " + std::to_string(context.capacity_bytes) +
                                     " B holds " + std::to_string(kv_pages) +
                                     " attention pages and " + std::to_string(state_slots) +
                                     " state slots; at least one of each is needed");
    }
  }
  return std::unique_ptr<EngineCache>(new TrtllmCache(model, o, kv_pages, state_slots));
}

}  // namespace marconi::sim
