#include "sim/engines/vllm.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <variant>

#include "marconi/prefix_cache.h"

namespace marconi::sim {
namespace {

// The smallest kernel block size of FlashAttention/FlashInfer (get_supported_kernel_block_sizes).
constexpr int64_t kMinKernelBlock = 16;
// vLLM's default mamba chunk sizes when the model's config names none (see docs/engines.md).
constexpr int64_t kGatedDeltaNetChunk = 64;  // FLA_CHUNK_SIZE
constexpr int64_t kMamba2Chunk = 256;        // Mamba2Config.chunk_size

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool Mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

uint64_t Mix64(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Keys of the pool's map: the block's chain hash with its group (vLLM's BlockHashWithGroupId).
constexpr uint64_t kGroupSalt = 0x9E3779B97F4A7C15ULL;

uint64_t AttentionKeyOf(uint64_t hash) { return hash ^ kGroupSalt; }
uint64_t StateKeyOf(uint64_t hash) { return hash ^ (kGroupSalt << 1); }

// The hash of one block of B tokens chained to its parent's: equal hashes mean equal prefixes (up
// to about 2^-64 per pair of blocks). Folded 64x64->128-bit multiplies over 4 tokens each, in
// three independent lanes (as wyhash/rapidhash do): hashing every committed token is a large part
// of the emulation's time.
__extension__ typedef unsigned __int128 U128;
constexpr uint64_t kS0 = 0x2D358DCCAA6C78A5ULL, kS1 = 0x8BB84B93962EACC9ULL,
                   kS2 = 0x4B33A62ED433D4A3ULL;

uint64_t Fold(uint64_t a, uint64_t b) {
  const U128 p = static_cast<U128>(a) * b;
  return static_cast<uint64_t>(p) ^ static_cast<uint64_t>(p >> 64);
}

uint64_t BlockHash(uint64_t parent, const Token* t, size_t b) {
  uint64_t lane[3] = {parent ^ kS0, parent ^ kS1, parent ^ kS2};
  size_t i = 0;
  for (; i + 12 <= b; i += 12) {
    uint64_t w[6];
    std::memcpy(w, t + i, sizeof(w));
    lane[0] = Fold(w[0] ^ kS0, w[1] ^ lane[0]);
    lane[1] = Fold(w[2] ^ kS1, w[3] ^ lane[1]);
    lane[2] = Fold(w[4] ^ kS2, w[5] ^ lane[2]);
  }
  uint64_t h = lane[0] ^ std::rotl(lane[1], 21) ^ std::rotl(lane[2], 42);
  for (; i + 2 <= b; i += 2) {
    uint64_t w;
    std::memcpy(&w, t + i, sizeof(w));
    h = Fold(w ^ kS0, h ^ kS1);
  }
  if (i < b) h = Fold(static_cast<uint32_t>(t[i]) ^ kS2, h ^ kS1);
  return Mix64(h ^ parent);
}

// The chain hash of every full B-token block of `head` followed by `tail`.
void ChainHashes(std::span<const Token> head, std::span<const Token> tail, int64_t b,
                 std::vector<uint64_t>* out) {
  const size_t bs = static_cast<size_t>(b);
  out->resize((head.size() + tail.size()) / bs);
  uint64_t parent = 0x243F6A8885A308D3ULL;
  size_t next = 0, pos = 0;
  for (; pos + bs <= head.size(); pos += bs) {
    parent = BlockHash(parent, head.data() + pos, bs);
    (*out)[next++] = parent;
  }
  if (next == out->size()) return;
  // The block that straddles head and tail, copied; then the tail's own blocks.
  std::vector<Token> straddle(head.begin() + static_cast<ptrdiff_t>(pos), head.end());
  const size_t from_tail = bs - straddle.size();
  straddle.insert(straddle.end(), tail.begin(), tail.begin() + static_cast<ptrdiff_t>(from_tail));
  parent = BlockHash(parent, straddle.data(), bs);
  (*out)[next++] = parent;
  for (pos = from_tail; next < out->size(); pos += bs) {
    parent = BlockHash(parent, tail.data() + pos, bs);
    (*out)[next++] = parent;
  }
}

}  // namespace

Result<VllmConfig> DeriveVllmConfig(const ModelSpec& model, int64_t capacity_bytes,
                                    const VllmParams& params) {
  int64_t attention = 0, recurrent = 0, attn_1tok = 0, mamba_page = 0;
  bool gated_deltanet = false, recurrent_first = false;
  for (const LayerSpec& layer : model.layers()) {
    if (std::holds_alternative<AttentionLayer>(layer)) {
      ++attention;
      attn_1tok = std::max(attn_1tok, LayerKvBytesPerToken(layer, model.dtype_bytes()));
    } else if (IsRecurrent(layer)) {
      if (attention == 0 && recurrent == 0) recurrent_first = true;
      ++recurrent;
      mamba_page =
          std::max(mamba_page, LayerStateBytes(layer, model.d_model(), model.dtype_bytes()));
      gated_deltanet |= std::holds_alternative<GatedDeltaNetLayer>(layer);
    }
  }
  if (attention == 0 && recurrent == 0) {
    return Status::InvalidArgument(
        "vllm: model '" + model.name() +
        "' has neither attention nor recurrent layers: nothing to cache");
  }
  if (params.max_num_batched_tokens < 1) {
    return Status::InvalidArgument("vllm: max_num_batched_tokens must be at least 1");
  }
  VllmConfig c;
  c.mode = params.mode;
  c.max_num_batched_tokens = params.max_num_batched_tokens;
  c.retention_interval = params.retention_interval;
  c.recurrent_groups_first = recurrent_first;
  c.flops_linear = model.linear_flops_per_token();
  c.flops_pair = model.attention_pair_flops();
  if (params.marconi_alpha >= 0 && !std::isfinite(params.marconi_alpha)) {
    return Status::InvalidArgument("vllm-marconi: alpha must be finite");
  }
  c.marconi_alpha = params.marconi_alpha;
  const int64_t k = std::max(kMinKernelBlock, params.block_size);
  c.mamba_chunk_size = params.mamba_chunk_size > 0
                           ? params.mamba_chunk_size
                           : (gated_deltanet ? kGatedDeltaNetChunk : kMamba2Chunk);
  // update_block_size_for_backend: raise B until B tokens of ONE attention layer hold the state
  // of ONE recurrent layer (align: a multiple of K; all: a multiple of lcm(chunk, K)).
  const int64_t unit =
      c.mode == VllmMambaCacheMode::kAll && recurrent > 0 ? std::lcm(c.mamba_chunk_size, k) : k;
  int64_t b = unit;
  if (attention > 0 && recurrent > 0) {
    int64_t unit_bytes = 0;
    if (c.mode == VllmMambaCacheMode::kAll) {
      // chunk * cdiv(cdiv(mamba_page, attn_1tok), chunk)
      b = unit * CeilDiv(CeilDiv(mamba_page, attn_1tok), unit);
    } else if (Mul(unit, attn_1tok, &unit_bytes)) {
      b = unit * CeilDiv(mamba_page, unit_bytes);  // K * cdiv(mamba_page, K * attn_1tok)
    } else {
      b = unit;  // one K-token page already exceeds any state
    }
  }
  c.block_size = std::max(unit, b);
  // The page of one layer: B tokens of attention (the state padded to it), or the state alone
  // in a model without attention.
  if (attention > 0) {
    if (!Mul(c.block_size, attn_1tok, &c.page_bytes)) {
      return Status::InvalidArgument("vllm: block of " + std::to_string(c.block_size) +
                                     " tokens overflows the page size");
    }
  } else {
    c.page_bytes = mamba_page;
  }
  // _get_kv_cache_groups_uniform_page_size.
  if (attention == 0 || recurrent == 0) {
    c.group_size = std::max(attention, recurrent);
  } else {
    const int64_t lo = std::min(attention, recurrent), hi = std::max(attention, recurrent);
    c.group_size = 2 * hi < 3 * lo ? hi : lo;  // max < 1.5 * min: one group per type
  }
  c.attention_groups = CeilDiv(attention, c.group_size);
  c.recurrent_groups = CeilDiv(recurrent, c.group_size);
  int64_t block_bytes = 0;
  if (!Mul(c.page_bytes, c.group_size, &block_bytes)) {
    return Status::InvalidArgument("vllm: block of " + std::to_string(c.block_size) +
                                   " tokens overflows the block size in bytes");
  }
  if (capacity_bytes == PrefixCacheConfig::kUnlimited) {
    c.num_blocks = VllmConfig::kUnboundedBlocks;
  } else {
    c.num_blocks = capacity_bytes / block_bytes;
    if (c.num_blocks < 2) {
      return Status::InvalidArgument(
          "vllm: capacity of " + std::to_string(capacity_bytes) + " bytes holds " +
          std::to_string(c.num_blocks) + " block(s) of " + std::to_string(block_bytes) +
          " bytes (B = " + std::to_string(c.block_size) +
          " tokens); the pool needs the null block and at least one more");
    }
  }
  if (c.retention_interval > 0 && c.retention_interval % c.block_size != 0) {
    return Status::InvalidArgument(
        "vllm: retention_interval " + std::to_string(c.retention_interval) +
        " must be a multiple of the block size " + std::to_string(c.block_size));
  }
  return c;
}

VllmCache::VllmCache(const VllmConfig& config)
    : config_(config),
      pool_(config.num_blocks == VllmConfig::kUnboundedBlocks ? VllmConfig::kUnboundedBlocks
                                                              : config.num_blocks - 1,
            std::max(config.attention_groups, config.recurrent_groups)) {
  pool_.set_state_alpha(config.marconi_alpha);
}

bool VllmCache::Retained(const Running& r, int64_t pos) const {
  const int64_t b = config_.block_size;
  if (pos == (r.prompt - 1) / b * b) return true;  // the replay boundary
  if (r.junction > 0 && pos == r.junction) return true;
  return config_.retention_interval > 0 && pos % config_.retention_interval == 0;
}

std::pair<size_t, size_t> VllmCache::LookupBlocks(std::span<const uint64_t> hashes,
                                                  int64_t n) const {
  const int64_t b = config_.block_size;
  const int64_t ga = config_.attention_groups, gm = config_.recurrent_groups;
  // get_computed_blocks: capped at n - 1, whole blocks only.
  const size_t max_blocks = static_cast<size_t>((n - 1) / b);
  size_t a_blocks = max_blocks;
  if (ga > 0) {
    a_blocks = 0;
    while (a_blocks < max_blocks) {
      bool all = true;
      for (int64_t grp = 0; grp < ga && all; ++grp) {
        all = pool_.Find(AttentionKeyOf(hashes[a_blocks]), grp) != VllmBlockPool::kNone;
      }
      if (!all) break;  // the chain match stops at the first miss
      ++a_blocks;
    }
  }
  size_t m_blocks = a_blocks;
  if (gm > 0) {
    m_blocks = 0;
    for (size_t i = a_blocks; i > 0; --i) {  // right to left: the deepest state <= a
      bool all = true;
      for (int64_t grp = 0; grp < gm && all; ++grp) {
        all = pool_.Find(StateKeyOf(hashes[i - 1]), grp) != VllmBlockPool::kNone;
      }
      if (all) {
        m_blocks = i;
        break;
      }
    }
  }
  return {a_blocks, m_blocks};
}

EngineLookup VllmCache::Peek(std::span<const Token> input) const {
  const int64_t b = config_.block_size;
  const int64_t n = static_cast<int64_t>(input.size());
  std::vector<uint64_t> hashes;
  ChainHashes(input.first(static_cast<size_t>((n - 1) / b * b)), {}, b, &hashes);
  const auto [a_blocks, m_blocks] = LookupBlocks(hashes, n);
  return {static_cast<int64_t>(a_blocks) * b, static_cast<int64_t>(m_blocks) * b};
}

EngineAdmit VllmCache::Admit(RequestId id, std::span<const Token> input,
                             std::span<const Token> output, int64_t prefill_end,
                             int64_t reserve_tokens, Timestamp /*now*/, EngineLookup* found) {
  const int64_t b = config_.block_size;
  const int64_t ga = config_.attention_groups, gm = config_.recurrent_groups;
  const int64_t n = static_cast<int64_t>(input.size());
  // Committed tokens at finish: the last sampled token is never decoded.
  const int64_t g = std::max<int64_t>(static_cast<int64_t>(output.size()), 1);
  Running r = std::move(spare_);
  r.committed = n + g - 1;
  // Chain hashes of every full block of the committed tokens, once (hash_request_tokens).
  ChainHashes(input, output.first(static_cast<size_t>(r.committed - n)), b, &r.hashes);
  const auto [a_blocks, m_blocks] = LookupBlocks(r.hashes, n);
  const int64_t a = static_cast<int64_t>(a_blocks) * b, m = static_cast<int64_t>(m_blocks) * b;
  *found = {a, m};

  // The request as it would run: it holds the hit's attention blocks and the one state block
  // used. Nothing is touched until the checks pass.
  r.prompt = n;
  r.prefill_end = std::max(prefill_end, n);
  r.parent_state = r.pos = r.reserved = m;
  r.junction = (ga > 0 && gm > 0 && a > m) ? a : 0;
  r.promised = r.debt = 0;
  r.attn_blocks.clear();
  r.state_index.clear();
  r.state_blocks.clear();
  r.prefill_steps.clear();
  r.state_head = r.state_checked = 0;
  for (size_t i = 0; i < m_blocks; ++i) {
    for (int64_t grp = 0; grp < ga; ++grp) {
      r.attn_blocks.push_back(pool_.Find(AttentionKeyOf(r.hashes[i]), grp));
    }
  }
  r.attn_hashed = m_blocks;
  if (gm > 0 && m_blocks > 0) {
    r.state_index.push_back(static_cast<int64_t>(m_blocks) - 1);
    for (int64_t grp = 0; grp < gm; ++grp) {
      r.state_blocks.push_back(pool_.Find(StateKeyOf(r.hashes[m_blocks - 1]), grp));
    }
    r.state_checked = 1;
  }
  const auto give_back = [&](EngineAdmit why) {
    spare_ = std::move(r);
    return why;
  };
  // kTooLarge: alone, some step would find no free block (allocate_slots would never succeed).
  // A cheap bound first: every attention block, and the state slots one step can hold (align:
  // the one kept from the previous step, the hit's, the new one; all: a slot per block more).
  const int64_t hit_blocks = static_cast<int64_t>(r.attn_blocks.size() + r.state_blocks.size());
  const int64_t step_slots =
      3 + (config_.mode == VllmMambaCacheMode::kAll ? config_.max_num_batched_tokens / b + 1 : 0);
  const int64_t bound = (r.committed + b - 1) / b * ga + step_slots * gm;
  if (config_.num_blocks != VllmConfig::kUnboundedBlocks && bound > pool_.usable_blocks() &&
      hit_blocks + PeakNeed(r, m, r.committed, Refs::kAlone) > pool_.usable_blocks()) {
    ++oversized_requests_;
    return give_back(EngineAdmit::kTooLarge);
  }
  // kNoRoom (the scheduler's can_allocate: free blocks, evictable cached ones included): the hit
  // blocks waiting in the free queue leave it, a hit state block another request holds is
  // counted once more (that request counted on freeing it), then the reserved steps.
  int64_t need = 0;
  for (const int32_t blk : r.attn_blocks) need += pool_.ref_count(blk) == 0;
  for (const int32_t blk : r.state_blocks) {
    if (pool_.ref_count(blk) == 0) {
      ++need;
    } else {
      ++r.debt;
    }
  }
  if (reserve_tokens == kReserveToPrefillEnd)
    reserve_tokens = std::max<int64_t>(0, r.prefill_end - m);
  r.reserved = std::min(r.committed, m + reserve_tokens);
  r.promised =
      std::max(PeakNeed(r, m, r.reserved, Refs::kBeforeTouch), r.state_index.empty() ? gm : 0);
  if (need + r.debt + r.promised > pool_.free_blocks() - promised_total_) {
    return give_back(EngineAdmit::kNoRoom);
  }
  pool_.set_clock(++clock_);
  for (const int32_t blk : r.attn_blocks) pool_.Touch(blk);
  for (const int32_t blk : r.state_blocks) pool_.Touch(blk);
  promised_total_ += r.debt + r.promised;
  running_.insert_or_assign(id, std::move(r));
  return EngineAdmit::kAdmitted;
}

int64_t VllmCache::Promise(const Running& r) const {
  const bool no_slot = r.state_index.size() == r.state_head;
  return std::max(PeakNeed(r, r.pos, r.reserved, Refs::kNow),
                  no_slot && r.pos < r.committed ? config_.recurrent_groups : 0);
}

bool VllmCache::Reserve(RequestId id, int64_t tokens) {
  Running& r = running_.at(id);
  const int64_t target = std::min(r.committed, r.reserved + tokens);
  const int64_t before = r.reserved;
  r.reserved = target;
  const int64_t promise = Promise(r);
  if (promise - r.promised > pool_.free_blocks() - promised_total_) {
    r.reserved = before;
    return false;
  }
  promised_total_ += promise - r.promised;
  r.promised = promise;
  return true;
}

void VllmCache::Computed(RequestId id, int64_t pos) {
  Running& r = running_.at(id);
  pos = std::min(pos, r.committed);
  if (pos <= r.pos) return;
  ForEachStep(r, r.pos, pos, [&](int64_t s, int64_t e, bool prefill) { Step(r, s, e, prefill); });
  r.pos = pos;
  r.reserved = std::max(r.reserved, pos);
  const int64_t promise = Promise(r);
  promised_total_ += promise - r.promised;
  r.promised = promise;
}

void VllmCache::Finish(RequestId id, Timestamp /*now*/) { Release(id, true); }

void VllmCache::Abort(RequestId id) { Release(id, false); }

void VllmCache::Release(RequestId id, bool finished) {
  auto node = running_.extract(id);
  Running& r = node.mapped();
  promised_total_ -= r.promised + r.debt;
  FreeRequest(r);
  if (finished) {
    ++stats_.inserts;
    prefill_steps_.swap(r.prefill_steps);
  }
  RefreshStats();
  spare_ = std::move(r);
}

MemoryUse VllmCache::Memory() const {
  using Kind = VllmBlockPool::Kind;
  const int64_t bytes = config_.block_bytes();
  const size_t ga = static_cast<size_t>(config_.attention_groups);
  MemoryUse use;
  for (const auto& [id, r] : running_) {
    // A running request's own blocks are the unhashed ones; its hashed blocks are cached content.
    use.running_kv += static_cast<int64_t>(r.attn_blocks.size() - r.attn_hashed * ga) * bytes;
    for (size_t j = r.state_head * static_cast<size_t>(config_.recurrent_groups);
         j < r.state_blocks.size(); ++j) {
      use.running_state += pool_.hashed(r.state_blocks[j]) ? 0 : bytes;
    }
  }
  use.cached_kv = pool_.hashed_blocks(Kind::kAttention) * bytes;
  use.cached_state = pool_.hashed_blocks(Kind::kState) * bytes;
  return use;
}

template <typename F>
void VllmCache::ForEachStep(const Running& r, int64_t from, int64_t to, F&& f) const {
  const int64_t b = config_.block_size;
  // Prefill, chunked by the token budget (and, in align mode, _mamba_block_aligned_split): a
  // Computed position is a step end, and the split also ends steps inside [from, to).
  const int64_t n = r.prefill_end;
  const int64_t budget = config_.max_num_batched_tokens;
  const int64_t last_cache_position = n - n % b;
  int64_t s = from;
  for (const int64_t stop_at = std::min(to, n); s < stop_at;) {
    int64_t e = std::min(s + budget, stop_at);
    if (config_.mode == VllmMambaCacheMode::kAlign) {
      if (e < n && e / b * b > s) e = e / b * b;  // else a block larger than the budget
      auto stop = [&](int64_t at) {
        if (s < at && at < e) e = at;
      };
      if (s % b != 0) stop((s / b + 1) * b);
      stop(last_cache_position);
      const int64_t j = r.junction;
      if (j > 0 && s < j && j < e) stop(s + (j - s) / b * b);
    }
    f(s, e, true);
    s = e;
  }
  // Decode: one token per step. Steps change the pool only when they cross into a block
  // (c % b == 0), reach a boundary ((c + 1) % b == 0) or pass one (c % b == 1: the previous
  // state block is released); the others are skipped (the first of a call always runs).
  for (int64_t c = s; c < to;) {
    f(c, c + 1, false);
    const int64_t rem = (c + 1) % b;
    c = (rem == 0 || rem == 1 || rem == b - 1) ? c + 1 : c + 1 + (b - 1 - rem);
  }
}

int64_t VllmCache::PeakNeed(const Running& r, int64_t from, int64_t to, Refs refs) const {
  if (from >= to) return 0;
  const int64_t b = config_.block_size;
  const int64_t ga = config_.attention_groups, gm = config_.recurrent_groups;
  const bool all_mode = config_.mode == VllmMambaCacheMode::kAll;
  // The held state slots, each with the blocks its release returns to the free queue.
  std::vector<std::pair<int64_t, int64_t>>& held = held_scratch_;
  held.clear();
  for (size_t j = r.state_head; j < r.state_index.size(); ++j) {
    int64_t back = gm;
    if (refs != Refs::kAlone) {
      back = 0;
      const int32_t sole = refs == Refs::kNow ? 1 : 0;
      for (int64_t grp = 0; grp < gm; ++grp) {
        back += pool_.ref_count(
                    r.state_blocks[j * static_cast<size_t>(gm) + static_cast<size_t>(grp)]) == sole;
      }
    }
    held.emplace_back(r.state_index[j], back);
  }
  size_t head = 0;
  int64_t attn_held = ga > 0 ? static_cast<int64_t>(r.attn_blocks.size()) / ga : 0;
  int64_t net = 0, peak = 0;
  ForEachStep(r, from, to, [&](int64_t start, int64_t end, bool) {
    if (gm > 0 && start > 0) {
      const int64_t keep = (start - 1) / b;
      for (; head < held.size() && held[head].first < keep; ++head) net -= held[head].second;
    }
    const int64_t last = (end - 1) / b;
    const bool holding = held.size() > head;
    int64_t first_state = all_mode ? (holding ? held.back().first + 1 : start / b) : last;
    if (holding && held.back().first >= last) first_state = last + 1;
    if (gm == 0) first_state = last + 1;
    const int64_t new_attn = ga > 0 ? std::max<int64_t>(0, (end + b - 1) / b - attn_held) : 0;
    for (int64_t idx = first_state; idx <= last; ++idx) held.emplace_back(idx, gm);
    net += std::max<int64_t>(0, last + 1 - first_state) * gm + new_attn * ga;
    attn_held += new_attn;
    peak = std::max(peak, net);
  });
  return peak;
}

void VllmCache::Step(Running& r, int64_t start, int64_t end, bool prefill) {
  const int64_t b = config_.block_size;
  const int64_t ga = config_.attention_groups, gm = config_.recurrent_groups;
  const bool all_mode = config_.mode == VllmMambaCacheMode::kAll;
  if (prefill) r.prefill_steps.emplace_back(start, end);
  // remove_skipped_blocks: state blocks before the one holding the state at `start` are
  // released, group by group, each tail first (hashed ones stay cached, evictable).
  if (gm > 0 && start > 0) {
    const int64_t keep = (start - 1) / b;
    size_t k = r.state_head;
    while (k < r.state_index.size() && r.state_index[k] < keep) ++k;
    for (int64_t grp = 0; grp < gm; ++grp) {
      for (size_t j = k; j > r.state_head; --j) {
        pool_.Free(r.state_blocks[(j - 1) * static_cast<size_t>(gm) + static_cast<size_t>(grp)]);
      }
    }
    r.state_head = k;
  }
  // The blocks this step needs: attention up to cdiv(end, B); the state block(s) up to the one
  // holding the state at `end` (align: that one only, the others stay null; all: every one).
  // The request's promise guarantees them (allocate_slots succeeded when it was Reserve'd).
  const int64_t last = (end - 1) / b;
  const bool holding = r.state_index.size() > r.state_head;
  int64_t first_state = all_mode ? (holding ? r.state_index.back() + 1 : start / b) : last;
  if (holding && r.state_index.back() >= last) first_state = last + 1;
  if (gm == 0) first_state = last + 1;
  const int64_t attn_held = ga > 0 ? static_cast<int64_t>(r.attn_blocks.size()) / ga : 0;
  const int64_t new_attn = ga > 0 ? std::max<int64_t>(0, (end + b - 1) / b - attn_held) : 0;
  for (int64_t idx = first_state; idx <= last && gm > 0; ++idx) {
    r.state_index.push_back(idx);
    for (int64_t grp = 0; grp < gm; ++grp) r.state_blocks.push_back(pool_.Allocate());
  }
  for (int64_t i = 0; i < new_attn * ga; ++i) r.attn_blocks.push_back(pool_.Allocate());

  // cache_blocks: every full attention block; the full state blocks that the mode keeps.
  const size_t full = static_cast<size_t>(end / b);
  for (; r.attn_hashed < full && ga > 0; ++r.attn_hashed) {
    pool_.Cache(std::span(r.attn_blocks)
                    .subspan(r.attn_hashed * static_cast<size_t>(ga), static_cast<size_t>(ga)),
                AttentionKeyOf(r.hashes[r.attn_hashed]), VllmBlockPool::Kind::kAttention);
  }
  for (; r.state_checked < r.state_index.size() && (r.state_index[r.state_checked] + 1) * b <= end;
       ++r.state_checked) {
    const int64_t idx = r.state_index[r.state_checked];
    if (!all_mode && !Retained(r, (idx + 1) * b)) continue;  // unhashed: freed first
    const auto blocks =
        std::span(r.state_blocks)
            .subspan(r.state_checked * static_cast<size_t>(gm), static_cast<size_t>(gm));
    pool_.Cache(blocks, StateKeyOf(r.hashes[static_cast<size_t>(idx)]),
                VllmBlockPool::Kind::kState);
    if (config_.marconi_alpha >= 0) {
      // Marconi's node efficiency: the FLOPs of the tokens between the state on the path below
      // it that this request knows (its hit, or its previous stored state) and it, per byte.
      auto flops = [&](int64_t pos) {
        const double x = static_cast<double>(pos);
        return config_.flops_linear * x + config_.flops_pair * x * x;
      };
      const int64_t pos = (idx + 1) * b;
      const double value =
          (flops(pos) - flops(r.parent_state)) / static_cast<double>(gm * config_.block_bytes());
      for (const int32_t blk : blocks) pool_.SetValue(blk, value);
      r.parent_state = pos;
    }
    admitted_state_blocks_ += gm;
  }
  peak_used_blocks_ = std::max(peak_used_blocks_, pool_.used_blocks());
}

void VllmCache::FreeRequest(Running& r) {
  // KVCacheManager.free: manager by manager in group order, each group's blocks tail first. The
  // group order follows the model's layers (the first layer's type first).
  const size_t ga = static_cast<size_t>(config_.attention_groups);
  const size_t gm = static_cast<size_t>(config_.recurrent_groups);
  auto free_states = [&] {
    for (size_t grp = 0; grp < gm; ++grp) {
      for (size_t j = r.state_index.size(); j > r.state_head; --j) {
        pool_.Free(r.state_blocks[(j - 1) * gm + grp]);
      }
    }
  };
  auto free_attention = [&] {
    const size_t attn = ga > 0 ? r.attn_blocks.size() / ga : 0;
    for (size_t grp = 0; grp < ga; ++grp) {
      for (size_t i = attn; i > 0; --i) pool_.Free(r.attn_blocks[(i - 1) * ga + grp]);
    }
  };
  if (config_.recurrent_groups_first) {
    free_states();
    free_attention();
  } else {
    free_attention();
    free_states();
  }
  r.attn_blocks.clear();
  r.state_index.clear();
  r.state_blocks.clear();
  r.state_head = r.state_checked = 0;
}

void VllmCache::RefreshStats() {
  using Kind = VllmBlockPool::Kind;
  const int64_t b = config_.block_size;
  const int64_t ga = config_.attention_groups, gm = config_.recurrent_groups;
  const int64_t attn = pool_.hashed_blocks(Kind::kAttention);
  const int64_t states = pool_.hashed_blocks(Kind::kState);
  // Tokens and states count whole sets of groups; bytes count every pool block.
  stats_.cached_tokens = ga > 0 ? attn * b / ga : 0;
  stats_.checkpoints = gm > 0 ? states / gm : 0;
  stats_.kv_bytes = attn * config_.block_bytes();
  stats_.state_bytes = states * config_.block_bytes();
  stats_.evictions = pool_.evicted_blocks(Kind::kAttention) + pool_.evicted_blocks(Kind::kState);
  stats_.evicted_tokens = ga > 0 ? pool_.evicted_blocks(Kind::kAttention) * b / ga : 0;
  stats_.evicted_checkpoints = gm > 0 ? pool_.evicted_blocks(Kind::kState) / gm : 0;
  stats_.checkpoints_admitted = gm > 0 ? admitted_state_blocks_ / gm : 0;
  UpdatePeaks();
}

std::map<std::string, double> VllmCache::DerivedSizes() const {
  std::map<std::string, double> out = {
      {"block_size", static_cast<double>(config_.block_size)},
      {"attention_groups", static_cast<double>(config_.attention_groups)},
      {"recurrent_groups", static_cast<double>(config_.recurrent_groups)},
      {"group_size", static_cast<double>(config_.group_size)},
      {"page_bytes", static_cast<double>(config_.page_bytes)},
      {"block_bytes", static_cast<double>(config_.block_bytes())},
      {"state_cost_blocks", static_cast<double>(config_.recurrent_groups)},
  };
  if (config_.num_blocks != VllmConfig::kUnboundedBlocks) {
    out["num_blocks"] = static_cast<double>(config_.num_blocks);
  }
  if (config_.marconi_alpha >= 0) out["alpha"] = config_.marconi_alpha;
  if (config_.mode == VllmMambaCacheMode::kAll) {
    out["mamba_chunk_size"] = static_cast<double>(config_.mamba_chunk_size);
  }
  return out;
}

std::optional<uint64_t> VllmCache::HashOfBlockEndingAt(std::span<const Token> tokens,
                                                       int64_t depth) const {
  const int64_t b = config_.block_size;
  if (depth <= 0 || depth % b != 0 || depth > static_cast<int64_t>(tokens.size())) {
    return std::nullopt;
  }
  std::vector<uint64_t> hashes;
  ChainHashes(tokens.first(static_cast<size_t>(depth)), {}, b, &hashes);
  return hashes.back();
}

bool VllmCache::KvBlockCached(std::span<const Token> tokens, int64_t depth) const {
  const std::optional<uint64_t> hash = HashOfBlockEndingAt(tokens, depth);
  if (!hash) return false;
  for (int64_t grp = 0; grp < config_.attention_groups; ++grp) {
    if (pool_.Find(AttentionKeyOf(*hash), grp) == VllmBlockPool::kNone) return false;
  }
  return true;
}

bool VllmCache::EvictKvBlock(std::span<const Token> tokens, int64_t depth) {
  const std::optional<uint64_t> hash = HashOfBlockEndingAt(tokens, depth);
  if (config_.attention_groups == 0 || !hash) return false;
  const int32_t blk = pool_.Find(AttentionKeyOf(*hash), 0);
  if (blk == VllmBlockPool::kNone || !pool_.Evict(blk)) return false;
  RefreshStats();
  return true;
}

bool VllmCache::StateCached(std::span<const Token> tokens, int64_t depth) const {
  const std::optional<uint64_t> hash = HashOfBlockEndingAt(tokens, depth);
  if (!hash) return false;
  for (int64_t grp = 0; grp < config_.recurrent_groups; ++grp) {
    if (pool_.Find(StateKeyOf(*hash), grp) == VllmBlockPool::kNone) return false;
  }
  return true;
}

}  // namespace marconi::sim

namespace marconi::sim {
namespace {

Result<std::unique_ptr<EngineCache>> MakeVllm(const EngineContext& context, VllmMambaCacheMode mode,
                                              bool marconi = false) {
  if (context.model == nullptr) return Status::InvalidArgument("vllm: no model");
  VllmParams p;
  p.mode = mode;
  p.block_size = static_cast<int64_t>(context.param("block_size"));
  p.max_num_batched_tokens = static_cast<int64_t>(context.param("max_num_batched_tokens"));
  if (mode == VllmMambaCacheMode::kAlign) {
    p.retention_interval = static_cast<int64_t>(context.param("retention_interval"));
    if (marconi) p.marconi_alpha = context.param("alpha");
  } else {
    p.mamba_chunk_size = static_cast<int64_t>(context.param("mamba_chunk_size"));
  }
  auto config = DeriveVllmConfig(*context.model, context.capacity_bytes, p);
  if (!config.ok()) return config.status();
  return std::unique_ptr<EngineCache>(std::make_unique<VllmCache>(*config));
}

}  // namespace

Result<std::unique_ptr<EngineCache>> MakeVllmEngine(const EngineContext& context) {
  return MakeVllm(context, VllmMambaCacheMode::kAlign);
}

Result<std::unique_ptr<EngineCache>> MakeVllmAllEngine(const EngineContext& context) {
  return MakeVllm(context, VllmMambaCacheMode::kAll);
}

Result<std::unique_ptr<EngineCache>> MakeVllmMarconiEngine(const EngineContext& context) {
  return MakeVllm(context, VllmMambaCacheMode::kAlign, /*marconi=*/true);
}

}  // namespace marconi::sim
