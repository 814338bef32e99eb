#include "sim/engines/sglang.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <variant>

#include "marconi/prefix_cache.h"

namespace marconi::sim {
namespace {

constexpr int64_t kUnbounded = SglangTree::kUnbounded;

// _calculate_mamba_ratio: MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO (3) plus 2 for
// extra_buffer with the overlap scheduler, 1 for extra_buffer_lazy, 0 for no_buffer.
int64_t MambaRatio(SglangStrategy s) {
  switch (s) {
    case SglangStrategy::kExtraBuffer:
      return 5;
    case SglangStrategy::kExtraBufferLazy:
      return 4;
    case SglangStrategy::kNoBuffer:
      return 3;
  }
  return 5;
}

// HybridReqToTokenPool: the live slot plus mamba_ping_pong_track_buffer_size (2 with overlap);
// lazy allocates one ping-pong slot up front; no_buffer only the live slot.
int64_t ReservedPerRequest(SglangStrategy s) {
  switch (s) {
    case SglangStrategy::kExtraBuffer:
      return 3;
    case SglangStrategy::kExtraBufferLazy:
      return 2;
    case SglangStrategy::kNoBuffer:
      return 1;
  }
  return 3;
}

}  // namespace

int64_t SglangDerivedChunkSize(const ModelSpec& model) {
  bool gdn = false, mamba2 = false;
  for (const LayerSpec& layer : model.layers()) {
    gdn = gdn || std::holds_alternative<GatedDeltaNetLayer>(layer);
    mamba2 = mamba2 || std::holds_alternative<Mamba2Layer>(layer) ||
             std::holds_alternative<PaperSsmLayer>(layer);
  }
  if (gdn) return 64;
  return mamba2 ? 256 : 64;
}

int64_t SglangStateSlotBytes(const ModelSpec& model, int64_t ssm_dtype_bytes) {
  int64_t bytes = 0;
  for (const LayerSpec& layer : model.layers()) {
    if (IsRecurrent(layer)) bytes += LayerStateBytes(layer, model.d_model(), ssm_dtype_bytes);
  }
  return bytes;
}

Result<std::unique_ptr<SglangCache>> SglangCache::Create(const ModelSpec& model,
                                                         int64_t capacity_bytes,
                                                         const SglangConfig& config) {
  const int64_t slot_bytes = SglangStateSlotBytes(model, config.ssm_dtype_bytes);
  if (config.ssm_dtype_bytes < 1 || config.ssm_dtype_bytes > 8) {
    return Status::InvalidArgument("sglang: ssm_dtype_bytes must be in 1..8");
  }
  if (!(config.mamba_full_memory_ratio > 0) || !std::isfinite(config.mamba_full_memory_ratio)) {
    return Status::InvalidArgument("sglang: mamba_full_memory_ratio must be > 0");
  }
  if (config.track_interval < 1 || config.chunk_size < 0 || config.chunked_prefill_size < 0 ||
      config.max_mamba_cache_size < 0) {
    return Status::InvalidArgument(
        "sglang: track_interval must be >= 1; chunk_size, chunked_prefill_size and "
        "max_mamba_cache_size >= 0");
  }
  if (!(config.alpha >= 0) || !std::isfinite(config.alpha)) {
    return Status::InvalidArgument("sglang: alpha must be finite and >= 0");
  }
  if (slot_bytes <= 0) return CreatePlain(model, capacity_bytes, config);
  const bool buffered = config.strategy != SglangStrategy::kNoBuffer;
  const int64_t chunk = config.chunk_size > 0 ? config.chunk_size : SglangDerivedChunkSize(model);
  int64_t prefill_chunk = config.chunked_prefill_size;
  if (buffered && prefill_chunk > 0) {
    // Chunks end on the state grid so that every chunk end can be tracked.
    prefill_chunk = prefill_chunk / chunk * chunk;
    if (prefill_chunk == 0) {
      return Status::InvalidArgument(
          "sglang: chunked_prefill_size " + std::to_string(config.chunked_prefill_size) +
          " is below the mamba cache chunk size " + std::to_string(chunk));
    }
  }
  const int64_t reserved = ReservedPerRequest(config.strategy);
  int64_t slots = kUnbounded, kv_tokens = kUnbounded;
  if (config.max_mamba_cache_size > 0) slots = config.max_mamba_cache_size;
  if (capacity_bytes != PrefixCacheConfig::kUnlimited) {
    if (capacity_bytes <= 0) return Status::InvalidArgument("sglang: capacity must be > 0");
    if (config.max_mamba_cache_size == 0) {
      // _handle_max_mamba_cache: the state pool gets r / (1 + r) of the memory.
      const long double r = config.mamba_full_memory_ratio;
      slots = static_cast<int64_t>(std::floor(static_cast<long double>(capacity_bytes) * r /
                                              (1 + r) / static_cast<long double>(slot_bytes)));
    }
    if (slots > capacity_bytes / slot_bytes) {
      return Status::InvalidArgument("sglang: max_mamba_cache_size " + std::to_string(slots) +
                                     " slots of " + std::to_string(slot_bytes) +
                                     " bytes exceed the capacity");
    }
    const int64_t kv_bytes = model.KvBytesPerToken();
    if (kv_bytes > 0) {
      kv_tokens = (capacity_bytes - slots * slot_bytes) / kv_bytes;
      if (kv_tokens < 1) {
        return Status::InvalidArgument("sglang: capacity " + std::to_string(capacity_bytes) +
                                       " bytes leaves no KV token after " + std::to_string(slots) +
                                       " state slots");
      }
    }
  }
  if (slots < reserved) {
    return Status::InvalidArgument(
        "sglang: " + std::to_string(slots) + " state slots of " + std::to_string(slot_bytes) +
        " bytes, fewer than the " + std::to_string(reserved) +
        " one running request holds (raise the capacity or max_mamba_cache_size)");
  }
  return std::unique_ptr<SglangCache>(
      new SglangCache(model, config, chunk, prefill_chunk, slot_bytes, slots, kv_tokens));
}

Result<std::unique_ptr<SglangCache>> SglangCache::CreatePlain(const ModelSpec& model,
                                                              int64_t capacity_bytes,
                                                              const SglangConfig& config) {
  // Without recurrent layers SGLang runs its plain RadixCache: KV of every committed token,
  // inserted at each chunk end and at finish (as no_buffer), a hit anywhere on the matched path,
  // all the capacity to the KV pool.
  SglangConfig plain = config;
  plain.strategy = SglangStrategy::kNoBuffer;
  int64_t kv_tokens = kUnbounded;
  if (capacity_bytes != PrefixCacheConfig::kUnlimited) {
    if (capacity_bytes <= 0) return Status::InvalidArgument("sglang: capacity must be > 0");
    kv_tokens = capacity_bytes / std::max<int64_t>(model.KvBytesPerToken(), 1);
    if (kv_tokens < 1) {
      return Status::InvalidArgument("sglang: capacity " + std::to_string(capacity_bytes) +
                                     " bytes holds no KV token");
    }
  }
  return std::unique_ptr<SglangCache>(new SglangCache(model, plain, 0, config.chunked_prefill_size,
                                                      0, kUnbounded, kv_tokens, /*plain=*/true));
}

SglangCache::SglangCache(const ModelSpec& model, const SglangConfig& config, int64_t chunk_size,
                         int64_t prefill_chunk, int64_t slot_bytes, int64_t slots,
                         int64_t kv_tokens, bool plain)
    : config_(config),
      chunk_size_(chunk_size),
      prefill_chunk_(prefill_chunk),
      slot_bytes_(slot_bytes),
      slots_(slots),
      kv_tokens_(kv_tokens),
      reserved_per_request_(plain ? 0 : ReservedPerRequest(config.strategy)),
      plain_(plain),
      kv_per_token_(model.KvBytesPerToken()),
      tree_({&model, kv_tokens, slots, model.KvBytesPerToken(), slot_bytes, config.order,
             config.alpha, plain},
            &stats_) {}

std::map<std::string, double> SglangCache::DerivedSizes() const {
  std::map<std::string, double> out;
  if (plain_) {
    out["chunked_prefill_size"] = static_cast<double>(prefill_chunk_);
    if (kv_tokens_ != kUnbounded) out["kv_tokens"] = static_cast<double>(kv_tokens_);
    return out;
  }
  out["state_slot_bytes"] = static_cast<double>(slot_bytes_);
  if (buffered()) {
    out["chunk_size"] = static_cast<double>(chunk_size_);
    out["track_interval"] = static_cast<double>(config_.track_interval);
  }
  out["chunked_prefill_size"] = static_cast<double>(prefill_chunk_);
  if (slots_ != kUnbounded) {
    out["state_slots"] = static_cast<double>(slots_);
    // resolve_max_num_reqs: min(kv_tokens // 2, slots // ratio).
    int64_t running = slots_ / MambaRatio(config_.strategy);
    if (kv_tokens_ != kUnbounded) running = std::min(running, kv_tokens_ / 2);
    out["max_running_requests"] = static_cast<double>(running);
  }
  if (kv_tokens_ != kUnbounded) out["kv_tokens"] = static_cast<double>(kv_tokens_);
  return out;
}

int64_t SglangCache::ServeDecodeStride() const {
  return config_.strategy == SglangStrategy::kExtraBufferLazy && !plain_ ? config_.track_interval
                                                                         : 0;
}

SglangCache::Running& SglangCache::Get(RequestId id) {
  auto it = running_.find(id);
  assert(it != running_.end() && "not a running request");
  return it->second;
}

void SglangCache::SetHeld(Running& r, int64_t shared, int64_t kv_end, int64_t reserved) {
  held_kv_ += (kv_end - shared) - (r.kv_end - r.shared);
  held_slots_ += reserved - r.reserved;
  r.shared = shared;
  r.kv_end = kv_end;
  r.reserved = reserved;
  tree_.SetExternal(held_kv_, held_slots_);
}

void SglangCache::InsertChunk(Running& r, int64_t pos) {
  const int32_t from = r.locked;
  int64_t reserved = r.reserved;
  if (buffered()) {
    // donate_mamba_ping_pong_slot: the tracked slot goes to the tree (or is freed if the node has
    // a state already), then the request's buffer gets a fresh slot. Under load a request whose
    // buffer could not be refilled holds no tracked slot past its live one: nothing to insert.
    if (reserved < 2) return;
    --reserved;
  } else if (!tree_.EnsureFreeSlots(1)) {
    // no_buffer: a copy of the live state into a newly allocated slot; without a slot the chunk
    // is not cached.
    return;
  }
  // The request's KV of [shared, pos) moves to the tree (what the tree holds already is freed).
  SetHeld(r, pos, r.kv_end, reserved);
  r.seq.size = static_cast<size_t>(pos);
  const auto [node, stored] = tree_.Insert(r.seq, true, from);
  // cache_unfinished_req: inc_lock_ref on the new node before dec_lock_ref on the old one.
  tree_.Lock(node);
  tree_.Unlock(r.locked);
  r.locked = node;
  if (buffered() && tree_.EnsureFreeSlots(1)) SetHeld(r, r.shared, r.kv_end, r.reserved + 1);
  UpdatePeaks();
}

EngineLookup SglangCache::Peek(std::span<const Token> input) const {
  // Req._compute_max_prefix_len: the last input token is recomputed for its logits.
  const SglangTree::Match m = tree_.Lookup(input.first(input.size() - 1));
  return {m.matched, m.hit};
}

EngineAdmit SglangCache::Admit(RequestId id, std::span<const Token> input,
                               std::span<const Token> output, int64_t prefill_end,
                               int64_t reserve_tokens, Timestamp /*now*/, EngineLookup* found) {
  assert(!running_.contains(id) && !input.empty());
  const int64_t n = static_cast<int64_t>(input.size());
  const int64_t g = static_cast<int64_t>(output.size());
  // The last sampled token is never decoded (with no output, the prompt alone is in KV).
  const int64_t committed = std::max(prefill_end, g > 0 ? n + g - 1 : n);
  const std::span<const Token> key = input.first(static_cast<size_t>(n - 1));
  // A request that cannot fit the KV pool is rejected by the scheduler: nothing is cached.
  const bool too_large = kv_tokens_ != kUnbounded && committed > kv_tokens_;
  // The slots a running request holds (the hit's state is copied into its live slot); a pool of
  // exactly one request's slots leaves one fewer beside a locked hit.
  const bool small_pool = !plain_ && slots_ != kUnbounded && slots_ - 1 < reserved_per_request_;
  int64_t slots_needed = reserved_per_request_;
  // PrefillAdder: available + evictable, KV and mamba slots, before anything is evicted. The
  // lookup is needed for it only when the pools are short whatever the hit locks.
  const int64_t free_slots = tree_.FreeSlots(), free_kv = tree_.FreeKv();
  const SglangTree::Match none;
  // Up to prefill_end: all of it bounds what is past any hit, until the lookup says the hit.
  const bool to_end = reserve_tokens == kReserveToPrefillEnd;
  if (to_end) reserve_tokens = prefill_end;
  if (too_large || small_pool || free_kv < reserve_tokens ||
      (free_slots < slots_needed && free_slots + tree_.EvictableSlots(none) - 1 < slots_needed)) {
    const SglangTree::Match look = tree_.Lookup(key);
    *found = {look.matched, look.hit};
    if (too_large) return EngineAdmit::kTooLarge;
    if (to_end) reserve_tokens = std::max<int64_t>(0, prefill_end - look.hit);
    if (small_pool) {
      const int64_t hit_slot = look.state_node != SglangTree::kRoot ? 1 : 0;
      slots_needed = std::max<int64_t>(0, std::min(slots_needed, slots_ - hit_slot));
    }
    if ((free_slots < slots_needed && free_slots + tree_.EvictableSlots(look) < slots_needed) ||
        (free_kv < reserve_tokens && free_kv + tree_.EvictableKv(look) < reserve_tokens)) {
      return EngineAdmit::kNoRoom;
    }
  }
  tree_.BeginRequest();
  const SglangTree::Match m = tree_.MatchPrefix(key);
  *found = {m.matched, m.hit};
  if (to_end) reserve_tokens = std::max<int64_t>(0, prefill_end - m.hit);
  Running& r = running_[id];
  r.seq = {input, output.first(static_cast<size_t>(std::max<int64_t>(g - 1, 0))), 0};
  r.prefill_end = prefill_end;
  // mamba_branching_seqlen (grid = C with page size 1).
  if (buffered()) {
    const int64_t aligned = m.matched / chunk_size_ * chunk_size_;
    if (aligned > m.hit) r.branch = aligned;
  }
  r.locked = m.state_node;
  tree_.Lock(r.locked);
  r.computed = m.hit;
  const bool slots = tree_.EnsureFreeSlots(slots_needed);
  assert(slots);
  SetHeld(r, m.hit, m.hit, slots_needed);
  const bool kv = tree_.EnsureFreeKv(reserve_tokens);
  assert(kv);
  (void)slots;
  (void)kv;
  SetHeld(r, m.hit, m.hit + reserve_tokens, slots_needed);
  return EngineAdmit::kAdmitted;
}

bool SglangCache::Reserve(RequestId id, int64_t tokens) {
  Running& r = Get(id);
  const SglangTree::Match none;  // nothing more to lock
  const int64_t free_kv = tree_.FreeKv();
  if (free_kv < tokens && free_kv + tree_.EvictableKv(none) < tokens) return false;
  tree_.EnsureFreeKv(tokens);
  SetHeld(r, r.shared, r.kv_end + tokens, r.reserved);
  return true;
}

void SglangCache::ExtendEnded(Running& r, int64_t p, int64_t end) {
  const bool last_chunk = end == r.prefill_end;
  if (buffered()) {
    // _mamba_radix_cache_v2_req_prepare_for_extend: one state per extend.
    const int64_t e = end - p;
    int64_t track = e >= chunk_size_ ? p + e / chunk_size_ * chunk_size_ : -1;
    if (r.branch > p && r.branch < end && (r.branch - p) % chunk_size_ == 0) track = r.branch;
    if (track >= 0) r.last_track = track;
    if (!last_chunk && r.last_track >= 0) {
      InsertChunk(r, r.last_track);
      r.last_track = -1;
    }
  } else if (!last_chunk) {
    InsertChunk(r, end);
  }
}

void SglangCache::DecodeEnded(Running& r, int64_t from, int64_t to) {
  // Every multiple of the track interval reached is tracked; only the last survives (ping-pong).
  if (!buffered()) return;
  const int64_t t = config_.track_interval;
  if (config_.strategy == SglangStrategy::kExtraBufferLazy) {
    // mamba_lazy_prealloc_at_boundary: a transient slot, after evicting at most one state.
    for (int64_t b = (from / t + 1) * t; b <= to; b += t) {
      if (tree_.EnsureFreeSlots(1, 1)) r.last_track = b;
    }
  } else if (to / t * t > from) {
    r.last_track = to / t * t;
  }
}

void SglangCache::Computed(RequestId id, int64_t pos) {
  Running& r = Get(id);
  assert(pos >= r.computed && pos <= r.kv_end);
  const int64_t from = r.computed;
  r.computed = pos;
  if (from < r.prefill_end) ExtendEnded(r, from, std::min(pos, r.prefill_end));
  if (pos > r.prefill_end) DecodeEnded(r, std::max(from, r.prefill_end), pos);
}

void SglangCache::Finish(RequestId id, Timestamp /*now*/) {
  Running& r = Get(id);
  // cache_finished_req: insert up to the last tracked position with the kept slot (no_buffer:
  // every committed token with the live slot); the rest of the KV is freed.
  const int64_t cache_len = buffered() ? std::max<int64_t>(r.last_track, 0) : r.computed;
  if (cache_len > 0 && (plain_ || r.reserved > 0)) {
    const int32_t from = r.shared <= cache_len ? r.locked : SglangTree::kRoot;
    // Its KV is now the tree's up to cache_len, and freed past it; its donated slot the tree's.
    SetHeld(r, 0, 0, plain_ ? r.reserved : r.reserved - 1);
    r.seq.size = static_cast<size_t>(cache_len);
    tree_.Insert(r.seq, true, from);
  }
  Abort(id);
  UpdatePeaks();
}

void SglangCache::Abort(RequestId id) {
  Running& r = Get(id);
  tree_.Unlock(r.locked);
  SetHeld(r, 0, 0, 0);
  running_.erase(id);
}

MemoryUse SglangCache::Memory() const {
  const int64_t kv = kv_per_token_;
  return {held_kv_ * kv, held_slots_ * slot_bytes_, tree_.tree_kv_tokens() * kv,
          tree_.states() * slot_bytes_};
}

namespace {

SglangConfig ConfigOf(const EngineContext& c, SglangStrategy strategy) {
  auto integer = [&](std::string_view name) { return static_cast<int64_t>(c.param(name)); };
  SglangConfig config;
  config.strategy = strategy;
  config.chunked_prefill_size = integer("chunked_prefill_size");
  config.mamba_full_memory_ratio = c.param("mamba_full_memory_ratio");
  config.ssm_dtype_bytes = integer("ssm_dtype_bytes");
  config.max_mamba_cache_size = integer("max_mamba_cache_size");
  if (strategy != SglangStrategy::kNoBuffer) {
    config.chunk_size = integer("chunk_size");
    config.track_interval = integer("track_interval");
  }
  return config;
}

Result<std::unique_ptr<EngineCache>> Make(const EngineContext& c, const SglangConfig& config) {
  if (c.model == nullptr) return Status::InvalidArgument("sglang: no model");
  auto cache = SglangCache::Create(*c.model, c.capacity_bytes, config);
  if (!cache.ok()) return cache.status();
  return std::unique_ptr<EngineCache>(std::move(cache).value());
}

}  // namespace

Result<std::unique_ptr<EngineCache>> MakeSglang(const EngineContext& context) {
  return Make(context, ConfigOf(context, SglangStrategy::kExtraBuffer));
}

Result<std::unique_ptr<EngineCache>> MakeSglangNoBuffer(const EngineContext& context) {
  return Make(context, ConfigOf(context, SglangStrategy::kNoBuffer));
}

Result<std::unique_ptr<EngineCache>> MakeSglangLazy(const EngineContext& context) {
  return Make(context, ConfigOf(context, SglangStrategy::kExtraBufferLazy));
}

Result<std::unique_ptr<EngineCache>> MakeSglangMarconi(const EngineContext& context) {
  SglangConfig config = ConfigOf(context, SglangStrategy::kExtraBuffer);
  config.order = SglangTree::Order::kFlopAware;
  config.alpha = context.param("alpha");
  return Make(context, config);
}

}  // namespace marconi::sim
