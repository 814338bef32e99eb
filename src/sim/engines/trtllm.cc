#include "sim/engines/trtllm.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "marconi/prefix_cache.h"

namespace marconi::sim {
namespace {

constexpr int64_t kUnbounded = PrefixCacheConfig::kUnlimited;
constexpr NodeId kRoot = 0;

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

}  // namespace

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
}

uint64_t TrtllmCache::KeyOf(NodeId parent, std::span<const Token> tokens) const {
  uint64_t h = Mix(static_cast<uint64_t>(parent) * 0x9e3779b97f4a7c15ULL + tokens.size());
  for (Token t : tokens) h = Mix(h ^ static_cast<uint32_t>(t)) + 0x632be59bd9b4e019ULL;
  return h;
}

NodeId TrtllmCache::FindChild(NodeId parent, std::span<const Token> tokens) const {
  const auto it = index_.find(KeyOf(parent, tokens));
  if (it == index_.end()) return kNoNode;
  const Block& b = blocks_[static_cast<size_t>(it->second)];
  if (b.parent != parent ||
      !std::equal(b.tokens.begin(), b.tokens.end(), tokens.begin(), tokens.end())) {
    return kNoNode;  // a hash collision: treated as absent
  }
  return it->second;
}

NodeId TrtllmCache::NewBlock(NodeId parent, std::span<const Token> tokens) {
  NodeId id;
  if (!free_ids_.empty()) {
    id = free_ids_.back();
    free_ids_.pop_back();
  } else {
    id = static_cast<NodeId>(blocks_.size());
    blocks_.emplace_back();
  }
  Block& p = blocks_[static_cast<size_t>(parent)];
  if (p.children.empty() && parent != kRoot) {
    kv_leaves_.erase({p.kv_tick, parent});
    state_leaves_.erase({p.state_tick, parent});
  }
  p.children.push_back(id);
  Block& b = blocks_[static_cast<size_t>(id)];
  b = Block{};
  b.parent = parent;
  b.start = blocks_[static_cast<size_t>(parent)].start +
            static_cast<int64_t>(blocks_[static_cast<size_t>(parent)].tokens.size());
  b.tokens.assign(tokens.begin(), tokens.end());
  b.alive = true;
  b.pin = epoch_;
  b.kv_tick = b.state_tick = ++tick_;
  b.key = KeyOf(parent, tokens);
  index_.emplace(b.key, id);  // keeps an existing entry on a collision
  kv_leaves_.insert({b.kv_tick, id});
  ++tree_pages_;
  ++tree_blocks_;
  tree_tokens_ += static_cast<int64_t>(tokens.size());
  return id;
}

void TrtllmCache::TouchKv(NodeId id) {
  if (id == kRoot) return;
  Block& b = blocks_[static_cast<size_t>(id)];
  const bool leaf = b.children.empty();
  if (leaf) kv_leaves_.erase({b.kv_tick, id});
  b.kv_tick = ++tick_;
  if (leaf) kv_leaves_.insert({b.kv_tick, id});
}

void TrtllmCache::TouchState(NodeId id) {
  if (id == kRoot) return;
  Block& b = blocks_[static_cast<size_t>(id)];
  const bool listed = b.children.empty() && !b.states.empty();
  if (listed) state_leaves_.erase({b.state_tick, id});
  b.state_tick = ++tick_;
  if (listed) state_leaves_.insert({b.state_tick, id});
}

// After a block's states changed: it is in state_leaves_ iff it is a leaf holding a state.
void TrtllmCache::RefreshLeafSets(NodeId id) {
  if (id == kRoot) return;
  const Block& b = blocks_[static_cast<size_t>(id)];
  if (b.children.empty() && !b.states.empty()) {
    state_leaves_.insert({b.state_tick, id});
  } else {
    state_leaves_.erase({b.state_tick, id});
  }
}

void TrtllmCache::RemoveBlock(NodeId id) {
  Block& b = blocks_[static_cast<size_t>(id)];
  kv_leaves_.erase({b.kv_tick, id});
  state_leaves_.erase({b.state_tick, id});
  const auto it = index_.find(b.key);
  if (it != index_.end() && it->second == id) index_.erase(it);
  ++stats_.evictions;
  stats_.evicted_tokens += static_cast<int64_t>(b.tokens.size());
  stats_.evicted_checkpoints += static_cast<int64_t>(b.states.size());
  tree_states_ -= static_cast<int64_t>(b.states.size());
  tree_tokens_ -= static_cast<int64_t>(b.tokens.size());
  --tree_pages_;
  --tree_blocks_;
  const NodeId parent = b.parent;
  b.alive = false;
  b.tokens.clear();
  b.states.clear();
  free_ids_.push_back(id);
  Block& p = blocks_[static_cast<size_t>(parent)];
  p.children.erase(std::find(p.children.begin(), p.children.end(), id));
  if (p.children.empty() && parent != kRoot) {
    kv_leaves_.insert({p.kv_tick, parent});
    RefreshLeafSets(parent);
  }
}

// An attention-page shortfall: the least recently used leaf block not held by the running request
// goes, with the states it holds (a state never outlives its block).
bool TrtllmCache::EvictLeafBlock() {
  for (const auto& [tick, id] : kv_leaves_) {
    if (blocks_[static_cast<size_t>(id)].pin == epoch_) continue;
    RemoveBlock(id);
    return true;
  }
  return false;
}

// A state-slot shortfall: the least recently used state page among leaf blocks goes alone (the
// deepest of its block first); the block's KV stays and still serves attention matches. With no
// leaf state left, a leaf block goes to expose the states above it.
bool TrtllmCache::EvictLeafState() {
  for (const auto& [tick, id] : state_leaves_) {
    Block& b = blocks_[static_cast<size_t>(id)];
    if (b.pin == epoch_) continue;
    b.states.pop_back();
    --tree_states_;
    ++stats_.evictions;
    ++stats_.evicted_checkpoints;
    RefreshLeafSets(id);
    return true;
  }
  return EvictLeafBlock();
}

bool TrtllmCache::EnsureFreePages(int64_t pages) {
  if (kv_pages_ == kUnbounded) return true;
  while (kv_pages_ - tree_pages_ < pages) {
    if (!EvictLeafBlock()) return false;
  }
  return true;
}

bool TrtllmCache::EnsureFreeSlots(int64_t slots) {
  if (state_slots_ == kUnbounded) return true;
  while (state_slots_ - tree_states_ < slots) {
    if (!EvictLeafState()) return false;
  }
  return true;
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

  // Lookup over n - 1 tokens ("prefix lookup excludes the final prompt token"): whole blocks by
  // their content, then the best partial match among the children where the walk stops (partial
  // reuse). The hit is the deepest committed snapshot on the matched path, <= the match.
  const int64_t lookup = n - 1;
  std::vector<NodeId> path;  // matched blocks, root excluded
  NodeId cur = kRoot;
  int64_t depth = 0;
  while (depth + B <= lookup) {
    const NodeId child =
        FindChild(cur, input.subspan(static_cast<size_t>(depth), static_cast<size_t>(B)));
    if (child == kNoNode) break;
    path.push_back(child);
    cur = child;
    depth += B;
  }
  int64_t match = depth;
  if (depth < lookup) {
    const auto rest =
        input.subspan(static_cast<size_t>(depth), static_cast<size_t>(std::min(B, lookup - depth)));
    NodeId best = kNoNode;
    int64_t best_len = 0;
    for (NodeId c : blocks_[static_cast<size_t>(cur)].children) {
      const int64_t l = CommonPrefix(blocks_[static_cast<size_t>(c)].tokens, rest);
      if (l > best_len) best = c, best_len = l;
    }
    if (best != kNoNode) {
      path.push_back(best);
      match = depth + best_len;
    }
  }
  int64_t hit = 0;
  NodeId hit_node = kNoNode;
  for (NodeId id : path) {
    for (int64_t s : blocks_[static_cast<size_t>(id)].states) {
      if (s <= match) hit = s, hit_node = id;
    }
  }
  // The running request holds the blocks it reuses, [0, hit).
  for (NodeId id : path) {
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
  // limit and the snapshots taken; generated tokens and KV past the limit are freed.
  ++stats_.inserts;
  std::vector<NodeId> committed;
  cur = kRoot;
  for (int64_t start = 0; start < commit_limit; start += B) {
    const auto tokens = input.subspan(static_cast<size_t>(start),
                                      static_cast<size_t>(std::min(B, commit_limit - start)));
    NodeId child = FindChild(cur, tokens);
    if (child == kNoNode) {
      if (!EnsureFreePages(1)) break;  // only when the request alone outgrows the pool
      child = NewBlock(cur, tokens);
    } else {
      blocks_[static_cast<size_t>(child)].pin = epoch_;
      TouchKv(child);
    }
    committed.push_back(child);
    cur = child;
  }
  for (int64_t p : points) {
    if (p <= hit) continue;
    const size_t index = static_cast<size_t>((p - 1) / B);
    if (index >= committed.size()) break;
    const NodeId id = committed[index];
    std::vector<int64_t>& states = blocks_[static_cast<size_t>(id)].states;
    const auto at = std::lower_bound(states.begin(), states.end(), p);
    if (at != states.end() && *at == p) {
      TouchState(id);
      continue;
    }
    if (!EnsureFreeSlots(1)) continue;
    blocks_[static_cast<size_t>(id)].states.insert(
        std::lower_bound(states.begin(), states.end(), p), p);
    ++tree_states_;
    ++stats_.checkpoints_admitted;
    TouchState(id);
    RefreshLeafSets(id);
  }
  ++epoch_;  // nothing is held once the request is gone
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
