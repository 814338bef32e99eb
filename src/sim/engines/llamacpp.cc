#include "sim/engines/llamacpp.h"

#include <algorithm>

#include "marconi/prefix_cache.h"

namespace marconi::sim {
namespace {

constexpr int64_t kUnbounded = PrefixCacheConfig::kUnlimited;
constexpr int64_t kMiB = int64_t{1} << 20;

int64_t CommonPrefix(std::span<const Token> a, std::span<const Token> b) {
  const size_t m = std::min(a.size(), b.size());
  const auto [ia, ib] = std::mismatch(a.begin(), a.begin() + static_cast<ptrdiff_t>(m), b.begin());
  return static_cast<int64_t>(ia - a.begin());
}

int64_t Size(const std::vector<Token>& v) { return static_cast<int64_t>(v.size()); }

}  // namespace

LlamacppCache::LlamacppCache(const ModelSpec& model, const LlamacppOptions& options, int64_t n_ctx)
    : model_(&model), opt_(options), n_ctx_(n_ctx), slots_(static_cast<size_t>(options.parallel)) {
  opt_.n_ubatch = std::min(opt_.n_ubatch, opt_.n_batch);
}

int64_t LlamacppCache::cache_ram_bytes() const {
  return opt_.cache_ram_mib < 0 ? -1 : opt_.cache_ram_mib * kMiB;
}

// llama_state_seq_get_size: the KV of every token and the recurrent state, plus the checkpoints.
int64_t LlamacppCache::EntryBytes(const std::vector<Token>& tokens, size_t checkpoints) const {
  return Size(tokens) * model_->KvBytesPerToken() +
         (1 + static_cast<int64_t>(checkpoints)) * model_->StateBytesPerCheckpoint();
}

// server_prompt_cache::alloc.
void LlamacppCache::Save(const Slot& slot) {
  for (const Entry& e : entries_) {
    if (CommonPrefix(e.tokens, slot.tokens) == Size(slot.tokens)) return;  // already held
  }
  const int64_t bytes = EntryBytes(slot.tokens, slot.checkpoints.size());
  const int64_t limit = cache_ram_bytes();
  if (limit >= 0 && bytes > limit) return;  // larger than the whole cache
  // An entry that is a prefix of the new one is superseded by it.
  for (size_t i = 0; i < entries_.size();) {
    if (CommonPrefix(entries_[i].tokens, slot.tokens) == Size(entries_[i].tokens)) {
      entries_bytes_ -= entries_[i].bytes;
      entries_.erase(entries_.begin() + static_cast<ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  while (limit >= 0 && !entries_.empty() && entries_bytes_ + bytes > limit) {
    const Entry& old = entries_.front();
    ++stats_.evictions;
    stats_.evicted_tokens += Size(old.tokens);
    stats_.evicted_checkpoints += 1 + static_cast<int64_t>(old.checkpoints.size());
    entries_bytes_ -= old.bytes;
    entries_.erase(entries_.begin());
  }
  entries_.push_back({slot.tokens, slot.checkpoints, bytes});
  entries_bytes_ += bytes;
  ++stats_.inserts;
}

// server_prompt_cache::load: the entry that keeps more of itself than the slot keeps of its own
// content, and covers more of the new prompt, replaces the slot's content and leaves the cache.
bool LlamacppCache::Load(Slot& slot, std::span<const Token> input) {
  const double n = static_cast<double>(input.size());
  const int64_t lcp_slot = CommonPrefix(slot.tokens, input);
  double f_keep_best =
      slot.tokens.empty() ? -1.0
                          : static_cast<double>(lcp_slot) / static_cast<double>(slot.tokens.size());
  double f_sim_best = static_cast<double>(lcp_slot) / n;
  size_t best = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.tokens.empty()) continue;
    const int64_t lcp = CommonPrefix(e.tokens, input);
    const double f_keep = static_cast<double>(lcp) / static_cast<double>(e.tokens.size());
    if (f_keep < 0.25) continue;
    const double f_sim = static_cast<double>(lcp) / n;
    if (f_keep_best < f_keep && f_sim_best < f_sim) {
      best = i;
      f_keep_best = f_keep;
      f_sim_best = f_sim;
    }
  }
  if (best == entries_.size()) return false;
  Entry& e = entries_[best];
  slot.tokens = std::move(e.tokens);
  slot.checkpoints = std::move(e.checkpoints);
  entries_bytes_ -= e.bytes;
  entries_.erase(entries_.begin() + static_cast<ptrdiff_t>(best));
  return true;
}

// A slot's content is overwritten, not evicted: the eviction counters count what the prompt cache
// drops for room and the checkpoints a slot's list drops.
void LlamacppCache::Clear(Slot& slot) {
  slot.tokens.clear();
  slot.checkpoints.clear();
}

// create_checkpoint: when the list is about to be full, first drop other requests' checkpoints
// lying within checkpoint_min_step of the previous kept one (reading L3), then the oldest.
void LlamacppCache::AddCheckpoint(Slot& slot, int64_t n_tokens) {
  std::vector<Checkpoint>& list = slot.checkpoints;
  // Assumed: the same position twice holds the same state, so it is not stored twice.
  if (!list.empty() && list.back().n_tokens == n_tokens) return;
  const auto cap = static_cast<size_t>(opt_.ctx_checkpoints);
  if (list.size() + 1 >= cap) {
    std::vector<Checkpoint> kept;
    for (const Checkpoint& c : list) {
      if (!kept.empty() && c.task != task_ &&
          c.n_tokens < kept.back().n_tokens + opt_.checkpoint_min_step) {
        ++stats_.evicted_checkpoints;
        continue;
      }
      kept.push_back(c);
    }
    list = std::move(kept);
  }
  while (!list.empty() && list.size() >= cap) {
    ++stats_.evicted_checkpoints;
    list.erase(list.begin());
  }
  list.push_back({n_tokens, task_});
  ++stats_.checkpoints_admitted;
}

// The prompt loop of update_slots: batches of n_batch that also stop at P - min(n_batch,
// 4 + n_ubatch) and P - min(n_batch, 4); the state at a batch's start is checkpointed when the
// batch ends within n_ubatch of the prompt end and the memory is not empty (no message spans).
void LlamacppCache::Prefill(Slot& slot, int64_t from, int64_t prompt) {
  if (opt_.ctx_checkpoints <= 0) return;
  const int64_t stops[2] = {prompt - std::min(opt_.n_batch, 4 + opt_.n_ubatch),
                            prompt - std::min(opt_.n_batch, int64_t{4})};
  for (int64_t s = from; s < prompt;) {
    int64_t e = std::min(s + opt_.n_batch, prompt);
    for (int64_t stop : stops) {
      if (stop > s && stop < e) e = stop;
    }
    if (s > 0 && prompt - e < opt_.n_ubatch) AddCheckpoint(slot, s);
    s = e;
  }
}

EngineLookup LlamacppCache::Serve(std::span<const Token> input, std::span<const Token> output,
                                  Timestamp /*now*/) {
  ++task_;
  const int64_t n = static_cast<int64_t>(input.size());

  // get_available_slot: the idle slot most similar to the prompt (LCP / n above the threshold),
  // else the least recently used one; both may send its content to the prompt cache.
  size_t chosen = slots_.size();
  bool update_cache = false;
  if (opt_.slot_prompt_similarity != 0) {
    double best = 0;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].tokens.empty()) continue;
      const double sim =
          static_cast<double>(CommonPrefix(slots_[i].tokens, input)) / static_cast<double>(n);
      if (sim > best && sim > opt_.slot_prompt_similarity) best = sim, chosen = i;
    }
    if (chosen != slots_.size()) {
      const double keep =
          best * static_cast<double>(n) / static_cast<double>(slots_[chosen].tokens.size());
      update_cache = keep < 0.5;  // about to lose most of the slot
    }
  }
  if (chosen == slots_.size()) {
    int64_t oldest = 0;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (chosen == slots_.size() || slots_[i].last_used <= oldest) {
        oldest = slots_[i].last_used;
        chosen = i;
      }
    }
    update_cache = true;
  }
  last_slot_ = chosen;
  Slot& slot = slots_[chosen];
  if (update_cache && opt_.cache_ram_mib != 0 && !slot.tokens.empty()) {
    Save(slot);
    if (!Load(slot, input)) Clear(slot);
  }
  if (n_ctx_ != kUnbounded && n >= n_ctx_) {
    // "the request exceeds the available context size": refused before its prompt is processed.
    ++rejected_;
    SyncStats();
    return {};
  }

  // The in-slot lookup: the live state if the slot's content is a proper prefix of the prompt,
  // else the newest checkpoint not beyond the common prefix (pos_min_thold), else nothing.
  const int64_t lcp = CommonPrefix(slot.tokens, input);
  const int64_t held = Size(slot.tokens);
  const int64_t thold = lcp - (lcp < n ? 0 : 1);
  int64_t hit = 0;
  if (lcp > 0) {
    if (held - 1 < thold) {
      hit = held;
    } else {
      for (auto it = slot.checkpoints.rbegin(); it != slot.checkpoints.rend(); ++it) {
        if (it->n_tokens <= lcp && it->n_tokens - 1 < thold) {
          hit = it->n_tokens;
          break;
        }
      }
    }
  }
  hit = std::min(hit, n - 1);  // [TAG_PROMPT_LOGITS]: the last prompt token is recomputed
  // Checkpoints past the resume point describe content about to be overwritten.
  const auto stale = std::remove_if(slot.checkpoints.begin(), slot.checkpoints.end(),
                                    [&](const Checkpoint& c) { return c.n_tokens - 1 > hit; });
  slot.checkpoints.erase(stale, slot.checkpoints.end());
  slot.tokens.resize(static_cast<size_t>(hit));

  Prefill(slot, hit, n);
  // Decode: the slot keeps prompt + output but the last sampled token, up to its context.
  const int64_t g = static_cast<int64_t>(output.size());
  int64_t keep = n + std::max<int64_t>(g, 1) - 1;
  if (n_ctx_ != kUnbounded) keep = std::min(keep, n_ctx_);
  slot.tokens.assign(input.begin(), input.end());
  slot.tokens.insert(slot.tokens.end(), output.begin(),
                     output.begin() + static_cast<ptrdiff_t>(keep - n));
  slot.last_used = task_;
  SyncStats();
  return {std::min(lcp, n - 1), hit};
}

// The content counted is what lives in --capacity: every slot's KV and live recurrent state.
// Checkpoints and the prompt cache are host RAM (prompt_cache_bytes(), cache_ram_mib) and stay out
// of the byte counts, so that peaks compare with the other systems' capacity.
void LlamacppCache::SyncStats() {
  int64_t tokens = 0, states = 0;
  for (const Slot& s : slots_) {
    tokens += Size(s.tokens);
    states += s.tokens.empty() ? 0 : 1;
  }
  stats_.cached_tokens = tokens;
  stats_.checkpoints = states;
  stats_.nodes = static_cast<int64_t>(slots_.size());
  stats_.kv_bytes = tokens * model_->KvBytesPerToken();
  stats_.state_bytes = states * model_->StateBytesPerCheckpoint();
  UpdatePeaks();
}

std::map<std::string, double> LlamacppCache::DerivedSizes() const {
  return {{"slots", static_cast<double>(opt_.parallel)},
          {"n_ctx", n_ctx_ == kUnbounded ? -1.0 : static_cast<double>(n_ctx_)},
          {"checkpoint_bytes", static_cast<double>(model_->StateBytesPerCheckpoint())},
          {"cache_ram_bytes", static_cast<double>(cache_ram_bytes())},
          {"n_ubatch", static_cast<double>(opt_.n_ubatch)}};
}

Result<std::unique_ptr<EngineCache>> MakeLlamacpp(const EngineContext& context) {
  const ModelSpec& model = *context.model;
  LlamacppOptions o;
  o.parallel = static_cast<int64_t>(context.param("parallel"));
  o.ctx_checkpoints = static_cast<int64_t>(context.param("ctx_checkpoints"));
  o.checkpoint_min_step = static_cast<int64_t>(context.param("checkpoint_min_step"));
  o.n_batch = static_cast<int64_t>(context.param("n_batch"));
  o.n_ubatch = static_cast<int64_t>(context.param("n_ubatch"));
  o.cache_ram_mib = static_cast<int64_t>(context.param("cache_ram_mib"));
  o.slot_prompt_similarity = context.param("slot_prompt_similarity");
  if (o.parallel < 1) return Status::InvalidArgument("llamacpp: parallel must be >= 1");
  if (o.ctx_checkpoints < 0)
    return Status::InvalidArgument("llamacpp: ctx_checkpoints must be >= 0");
  if (o.checkpoint_min_step < 0) {
    return Status::InvalidArgument("llamacpp: checkpoint_min_step must be >= 0");
  }
  if (o.n_batch < 1 || o.n_ubatch < 1) {
    return Status::InvalidArgument("llamacpp: n_batch and n_ubatch must be >= 1");
  }
  if (o.cache_ram_mib < -1) {
    return Status::InvalidArgument("llamacpp: cache_ram_mib must be >= 0, or -1 for no limit");
  }
  if (!(o.slot_prompt_similarity >= 0 && o.slot_prompt_similarity <= 1)) {
    return Status::InvalidArgument("llamacpp: slot_prompt_similarity must be in [0, 1]");
  }
  int64_t n_ctx = kUnbounded;
  const int64_t kv = model.KvBytesPerToken();
  if (context.capacity_bytes != kUnbounded && kv > 0) {
    // --capacity is the slots' memory: each slot one context of n_ctx tokens of KV and one
    // recurrent state (checkpoints and the prompt cache live in host RAM, outside it).
    const int64_t per_slot = context.capacity_bytes / o.parallel;
    n_ctx = (per_slot - model.StateBytesPerCheckpoint()) / kv;
    if (n_ctx < 2) {
      return Status::InvalidArgument(
          "llamacpp: capacity " + std::to_string(context.capacity_bytes) + " B over " +
          std::to_string(o.parallel) + " slots leaves a context of fewer than 2 tokens per slot");
    }
  }
  return std::unique_ptr<EngineCache>(new LlamacppCache(model, o, n_ctx));
}

}  // namespace marconi::sim
