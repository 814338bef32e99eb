#include "sim/engines/trtllm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "marconi/prefix_cache.h"

namespace marconi::sim {
namespace {

constexpr int64_t kUnbounded = PrefixCacheConfig::kUnlimited;
constexpr NodeId kRoot = 0;
// Every block reserves this many tokens in the arena; TensorRT-LLM uses 8 to 128.
constexpr int64_t kMaxTokensPerBlock = 4096;

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
  arena_.resize(static_cast<size_t>(opt_.tokens_per_block));
  // The tree never holds more blocks than pages: reserve them when that is modest (64 MiB).
  if (kv_pages_ != kUnbounded && (kv_pages_ + 2) * opt_.tokens_per_block <= int64_t{1} << 24) {
    const auto most = static_cast<size_t>(kv_pages_ + 2);
    blocks_.reserve(most);
    arena_.reserve(most * static_cast<size_t>(opt_.tokens_per_block));
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

// A running request's own pages: every token of its sequence up to kv_end past the blocks it
// reuses whole (a partially reused block is copied).
int64_t TrtllmCache::OwnPages(int64_t hit, int64_t kv_end) const {
  const int64_t B = opt_.tokens_per_block;
  return (kv_end + B - 1) / B - hit / B;
}

EngineLookup TrtllmCache::Peek(std::span<const Token> input) const {
  if (!reuse_enabled_) return {};
  Lookup lookup;
  LookUp(input, &lookup);
  return {lookup.match, lookup.hit};
}

EngineAdmit TrtllmCache::Admit(RequestId id, std::span<const Token> input,
                               std::span<const Token> output, int64_t prefill_end,
                               int64_t reserve_tokens, Timestamp /*now*/, EngineLookup* found) {
  const int64_t n = static_cast<int64_t>(input.size());
  const int64_t g = static_cast<int64_t>(output.size());
  // The admission is prepared in the first free entry and kept only if admitted.
  if (live_ == runs_.size()) runs_.emplace_back();
  Running& r = runs_[live_];
  r.id = id;
  r.input = input;
  r.gens.clear();
  r.held.clear();
  r.lookup.path.clear();
  r.lookup.full_matched = 0;
  r.lookup.match = r.lookup.hit = 0;
  r.lookup.hit_node = kNoNode;
  if (reuse_enabled_) LookUp(input, &r.lookup);
  const Lookup& lookup = r.lookup;
  const int64_t hit = lookup.hit;
  *found = {lookup.match, hit};
  if (reserve_tokens == kReserveToPrefillEnd)
    reserve_tokens = std::max<int64_t>(0, prefill_end - hit);
  // GUARANTEED_NO_EVICT (the default capacity scheduler) reserves a request's whole sequence at
  // admission: its own pages for every token of input + output - 1 past the reused blocks.
  r.kv_end = std::max({prefill_end, n + std::max<int64_t>(g, 1) - 1, hit + reserve_tokens});
  const int64_t own = OwnPages(hit, r.kv_end);
  // Its lock: the blocks it reuses, [0, hit), with their states; new_pins of them are not pinned
  // yet.
  int64_t lock = 0, lock_states = 0, new_pins = 0, new_pin_states = 0;
  for (NodeId b : lookup.path) {
    const Block& block = blocks_[static_cast<size_t>(b)];
    if (block.start >= hit) break;
    ++lock;
    lock_states += static_cast<int64_t>(block.states.size());
    if (block.holders == 0) {
      ++new_pins;
      new_pin_states += static_cast<int64_t>(block.states.size());
    }
  }
  const bool pages_bounded = kv_pages_ != kUnbounded;
  const bool slots_bounded = state_slots_ != kUnbounded;
  // Even alone (nothing else running, everything else evicted) it would not fit with its lock.
  if ((pages_bounded && own + lock > kv_pages_) ||
      (slots_bounded && 1 + lock_states > state_slots_)) {
    return EngineAdmit::kTooLarge;
  }
  // The engine looks before it evicts: every block nobody pins may go (an ancestor of a pinned
  // block is pinned, so leaf-only eviction reaches all the others), with its states.
  if ((pages_bounded && own > kv_pages_ - running_pages_ - pinned_blocks_ - new_pins) ||
      (slots_bounded && 1 > state_slots_ - running_slots_ - pinned_states_ - new_pin_states)) {
    return EngineAdmit::kNoRoom;
  }

  r.gens.reserve(lookup.path.size());
  for (NodeId b : lookup.path) r.gens.push_back(blocks_[static_cast<size_t>(b)].gen);
  for (NodeId b : lookup.path) {
    if (blocks_[static_cast<size_t>(b)].start >= hit) break;
    Hold(r, b);
    TouchKv(b);
  }
  if (lookup.hit_node != kNoNode) TouchState(lookup.hit_node);
  r.points = SnapshotPoints(n, lookup.match, hit);
  int64_t new_states = 0;
  for (int64_t p : r.points) new_states += p > hit ? 1 : 0;
  // Its live state slot (required) and one slot per snapshot it takes (as many as can be had).
  EnsureFreePages(own);  // succeeds: checked above
  r.pages = own;
  running_pages_ += own;
  EnsureFreeSlots(1 + new_states);
  const int64_t free_slots = FreeSlots();
  r.slots = free_slots == kUnbounded ? 1 + new_states : std::min(1 + new_states, free_slots);
  running_slots_ += r.slots;
  r.reserved = hit + reserve_tokens;
  r.computed = hit;
  ++live_;
  SyncStats();
  return EngineAdmit::kAdmitted;
}

// Within the sequence reserved at admission a reservation takes nothing more; past it (a caller
// asking beyond input + output - 1) it takes pages like an admission.
bool TrtllmCache::Reserve(RequestId id, int64_t tokens) {
  Running& r = Find(id);
  const int64_t end = r.reserved + tokens;
  const int64_t more = OwnPages(r.lookup.hit, std::max(r.kv_end, end)) - r.pages;
  if (more > 0) {
    if (kv_pages_ != kUnbounded && more > kv_pages_ - running_pages_ - pinned_blocks_) {
      return false;
    }
    EnsureFreePages(more);
    r.pages += more;
    running_pages_ += more;
    r.kv_end = end;
    SyncStats();
  }
  r.reserved = end;
  return true;
}

// The manager commits nothing before the request finishes (snapshots are taken into the slots
// the request holds), so a step's end only moves the position.
void TrtllmCache::Computed(RequestId id, int64_t pos) {
  Running& r = Find(id);
  r.computed = std::max(r.computed, pos);
}

void TrtllmCache::Finish(RequestId id, Timestamp /*now*/) {
  Running& r = Find(id);
  // Its pages and slots go back to the pools; the commit takes what it keeps from them again.
  running_pages_ -= r.pages;
  running_slots_ -= r.slots;
  r.pages = r.slots = 0;
  if (reuse_enabled_) Commit(r);
  Release(r);
  Remove(r);
  CompactHeaps();
  SyncStats();
}

void TrtllmCache::Abort(RequestId id) {
  Running& r = Find(id);
  running_pages_ -= r.pages;
  running_slots_ -= r.slots;
  Release(r);
  Remove(r);
}

TrtllmCache::Running& TrtllmCache::Find(RequestId id) {
  for (size_t i = 0; i < live_; ++i) {
    if (runs_[i].id == id) return runs_[i];
  }
  std::abort();  // precondition: id is running
}

void TrtllmCache::Remove(Running& r) { std::swap(r, runs_[--live_]); }

void TrtllmCache::Release(Running& r) {
  for (NodeId b : r.held) Unhold(b);
  r.held.clear();
}

MemoryUse TrtllmCache::Memory() const {
  const int64_t page_bytes = opt_.tokens_per_block * model_->KvBytesPerToken();
  const int64_t state_bytes = model_->StateBytesPerCheckpoint();
  return {running_pages_ * page_bytes, running_slots_ * state_bytes, tree_pages_ * page_bytes,
          tree_states_ * state_bytes};
}

// At finish (try_commit_blocks with commit_min_snapshot): blocks of the prompt up to the commit
// limit and the snapshots taken; generated tokens and KV past the limit are freed. The full
// blocks the lookup matched are reused as they are, as far as they survived since (leaf-only
// eviction leaves a prefix of them).
void TrtllmCache::Commit(Running& r) {
  const std::span<const Token> input = r.input;
  const int64_t n = static_cast<int64_t>(input.size());
  const int64_t B = opt_.tokens_per_block;
  const int64_t hit = r.lookup.hit;
  auto block_of = [&](int64_t start, int64_t end) {
    return input.subspan(static_cast<size_t>(start), static_cast<size_t>(end - start));
  };
  const int64_t commit_limit = r.points.empty() ? n : r.points.back();
  ++stats_.inserts;
  std::vector<NodeId>& committed = r.lookup.path;
  size_t kept = 0;
  while (kept < r.lookup.full_matched) {
    const Block& b = blocks_[static_cast<size_t>(committed[kept])];
    if (!b.alive || b.gen != r.gens[kept] || b.start + B > commit_limit) break;
    ++kept;
  }
  committed.resize(kept);
  for (size_t i = 0; i < kept; ++i) {
    Hold(r, committed[i]);
    TouchKv(committed[i]);
  }
  NodeId cur = kept > 0 ? committed.back() : kRoot;
  bool fresh = false;  // below a new block nothing exists yet
  for (int64_t start = static_cast<int64_t>(kept) * B; start < commit_limit; start += B) {
    const int64_t end = std::min(start + B, commit_limit);
    const auto tokens = block_of(start, end);
    uint64_t partial = 0;
    uint64_t& content =
        end - start == B ? r.lookup.content[static_cast<size_t>(start / B)] : partial;
    NodeId child = fresh ? kNoNode : FindChild(cur, tokens, &content);
    if (child == kNoNode) {
      if (!EnsureFreePages(1)) break;          // the pools are full of running requests' own memory
      child = NewBlock(cur, tokens, content);  // pinned by this request
      r.held.push_back(child);
      fresh = true;
    } else {
      Hold(r, child);
      TouchKv(child);
    }
    committed.push_back(child);
    cur = child;
  }
  if (fresh) PushCandidates(cur);
  for (int64_t p : r.points) {
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
    ++pinned_states_;  // the block is pinned by this request
    ++stats_.checkpoints_admitted;
    TouchState(id);
  }
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
