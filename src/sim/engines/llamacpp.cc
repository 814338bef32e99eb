#include "sim/engines/llamacpp.h"

#include <algorithm>
#include <cassert>

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
  SyncStats();
}

int64_t LlamacppCache::cache_ram_bytes() const {
  return opt_.cache_ram_mib < 0 ? -1 : opt_.cache_ram_mib * kMiB;
}

// llama_state_seq_get_size: the KV of every token and the recurrent state, plus the checkpoints.
int64_t LlamacppCache::EntryBytes(const std::vector<Token>& tokens, size_t checkpoints) const {
  return Size(tokens) * model_->KvBytesPerToken() +
         (1 + static_cast<int64_t>(checkpoints)) * model_->StateBytesPerCheckpoint();
}

// get_available_slot: among the idle slots, the non-empty one most similar to the prompt (LCP / n
// above the threshold), else the least recently used one (ties: the last). A busy slot is never
// chosen: with none idle, the task waits (process_single_task defers it).
LlamacppCache::Choice LlamacppCache::ChooseSlot(std::span<const Token> input) const {
  const size_t none = slots_.size();
  const auto n = static_cast<double>(input.size());
  size_t chosen = none;
  bool update_cache = false;
  if (opt_.slot_prompt_similarity != 0) {
    double best = 0;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].busy || slots_[i].tokens.empty()) continue;
      const double sim = static_cast<double>(CommonPrefix(slots_[i].tokens, input)) / n;
      if (sim > best && sim > opt_.slot_prompt_similarity) best = sim, chosen = i;
    }
    if (chosen != none) {
      const double keep = best * n / static_cast<double>(slots_[chosen].tokens.size());
      update_cache = keep < 0.5;  // about to lose most of the slot
    }
  }
  if (chosen == none) {
    int64_t oldest = 0;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].busy) continue;
      if (chosen == none || slots_[i].last_used <= oldest) {
        oldest = slots_[i].last_used;
        chosen = i;
      }
    }
    update_cache = true;
  }
  return {chosen, update_cache};
}

// The prompt cache is updated only when it is on and the chosen slot holds something.
bool LlamacppCache::UpdatesCache(const Choice& choice) const {
  return choice.update_cache && opt_.cache_ram_mib != 0 && !slots_[choice.slot].tokens.empty();
}

// server_prompt_cache::alloc, planned without changing anything (Peek reads the plan).
LlamacppCache::SavePlan LlamacppCache::PlanSave(const Slot& slot) const {
  SavePlan plan;
  for (const Entry& e : entries_) {
    if (CommonPrefix(e.tokens, slot.tokens) == Size(slot.tokens)) return plan;  // already held
  }
  plan.bytes = EntryBytes(slot.tokens, slot.checkpoints.size());
  const int64_t limit = cache_ram_bytes();
  if (limit >= 0 && plan.bytes > limit) return plan;  // larger than the whole cache
  plan.store = true;
  plan.drop.assign(entries_.size(), 0);
  int64_t total = entries_bytes_;
  // An entry that is a prefix of the new one is superseded by it.
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (CommonPrefix(entries_[i].tokens, slot.tokens) == Size(entries_[i].tokens)) {
      plan.drop[i] = 1;
      total -= entries_[i].bytes;
    }
  }
  // Then the oldest go until the new one fits.
  for (size_t i = 0; i < entries_.size() && limit >= 0 && total + plan.bytes > limit; ++i) {
    if (plan.drop[i] != 0) continue;
    plan.drop[i] = 2;
    total -= entries_[i].bytes;
  }
  return plan;
}

void LlamacppCache::Save(const Slot& slot) {
  SavePlan plan = PlanSave(slot);
  if (!plan.store) return;
  std::vector<Entry> kept;
  kept.reserve(entries_.size() + 1);
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    if (plan.drop[i] == 0) {
      kept.push_back(std::move(e));
      continue;
    }
    if (plan.drop[i] == 2) {
      ++stats_.evictions;
      stats_.evicted_tokens += Size(e.tokens);
      stats_.evicted_checkpoints += 1 + static_cast<int64_t>(e.checkpoints.size());
    }
    entries_bytes_ -= e.bytes;
  }
  entries_ = std::move(kept);
  entries_.push_back({slot.tokens, slot.checkpoints, plan.bytes});
  entries_bytes_ += plan.bytes;
  ++stats_.inserts;
}

// server_prompt_cache::load's choice: the entry that keeps more of itself than the slot keeps of
// its own content, and covers more of the new prompt (the last such, against the best so far);
// entries marked in `drop` are skipped. entries_.size() = none.
size_t LlamacppCache::BestEntry(const Slot& slot, std::span<const Token> input,
                                const std::vector<char>& drop) const {
  const double n = static_cast<double>(input.size());
  const int64_t lcp_slot = CommonPrefix(slot.tokens, input);
  double f_keep_best =
      slot.tokens.empty() ? -1.0
                          : static_cast<double>(lcp_slot) / static_cast<double>(slot.tokens.size());
  double f_sim_best = static_cast<double>(lcp_slot) / n;
  size_t best = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.tokens.empty() || (!drop.empty() && drop[i] != 0)) continue;
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
  return best;
}

// server_prompt_cache::load: the best entry replaces the slot's content and leaves the cache.
// (The entry Save just stored equals the slot and never beats it.)
bool LlamacppCache::Load(Slot& slot, std::span<const Token> input) {
  const size_t best = BestEntry(slot, input, {});
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

// The in-slot lookup (update_slots): the live state if the slot's content is a proper prefix of
// the prompt, else the newest checkpoint not beyond the common prefix (pos_min_thold), else
// nothing; the last prompt token is recomputed ([TAG_PROMPT_LOGITS]).
LlamacppCache::InSlotHit LlamacppCache::Lookup(const std::vector<Token>& tokens,
                                               const std::vector<Checkpoint>& checkpoints,
                                               std::span<const Token> input) {
  const int64_t n = static_cast<int64_t>(input.size());
  const int64_t lcp = CommonPrefix(tokens, input);
  const int64_t held = Size(tokens);
  const int64_t thold = lcp - (lcp < n ? 0 : 1);
  int64_t hit = 0;
  if (lcp > 0) {
    if (held - 1 < thold) {
      hit = held;
    } else {
      for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
        if (it->n_tokens <= lcp && it->n_tokens - 1 < thold) {
          hit = it->n_tokens;
          break;
        }
      }
    }
  }
  return {lcp, std::min(hit, n - 1)};
}

// "the request exceeds the available context size" (update_slots, context shift off): a prompt of
// n >= n_ctx tokens is refused before it is processed.
bool LlamacppCache::TooLarge(std::span<const Token> input) const {
  return n_ctx_ != kUnbounded && static_cast<int64_t>(input.size()) >= n_ctx_;
}

// create_checkpoint: when the list is about to be full, first drop other requests' checkpoints
// lying within checkpoint_min_step of the previous kept one (reading L3), then the oldest.
void LlamacppCache::AddCheckpoint(Slot& slot, int64_t n_tokens, int64_t task) {
  std::vector<Checkpoint>& list = slot.checkpoints;
  // Assumed: the same position twice holds the same state, so it is not stored twice.
  if (!list.empty() && list.back().n_tokens == n_tokens) return;
  const auto cap = static_cast<size_t>(opt_.ctx_checkpoints);
  if (list.size() + 1 >= cap) {
    std::vector<Checkpoint> kept;
    for (const Checkpoint& c : list) {
      if (!kept.empty() && c.task != task &&
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
  list.push_back({n_tokens, task});
  ++stats_.checkpoints_admitted;
}

// The prompt loop of update_slots over [from, to) of a prompt of P tokens: batches of n_batch that
// also stop at P - min(n_batch, 4 + n_ubatch) and P - min(n_batch, 4) (and where the step ends);
// the state at a batch's start is checkpointed when the batch ends within n_ubatch of the prompt
// end and the memory is not empty (no message spans).
void LlamacppCache::Prefill(Slot& slot, int64_t from, int64_t to, int64_t prompt, int64_t task) {
  if (opt_.ctx_checkpoints <= 0) return;
  const int64_t stops[2] = {prompt - std::min(opt_.n_batch, 4 + opt_.n_ubatch),
                            prompt - std::min(opt_.n_batch, int64_t{4})};
  for (int64_t s = from; s < to;) {
    int64_t e = std::min(s + opt_.n_batch, to);
    for (int64_t stop : stops) {
      if (stop > s && stop < e) e = stop;
    }
    if (s > 0 && prompt - e < opt_.n_ubatch) AddCheckpoint(slot, s, task);
    s = e;
  }
}

EngineLookup LlamacppCache::Peek(std::span<const Token> input) const {
  const Choice choice = ChooseSlot(input);
  if (choice.slot == slots_.size() || TooLarge(input)) return {};
  const Slot& slot = slots_[choice.slot];
  InSlotHit h;
  if (!UpdatesCache(choice)) {
    h = Lookup(slot.tokens, slot.checkpoints, input);
  } else {
    // Save, then load the best entry left (or clear the slot).
    const SavePlan plan = PlanSave(slot);
    const size_t best = BestEntry(slot, input, plan.drop);
    if (best != entries_.size())
      h = Lookup(entries_[best].tokens, entries_[best].checkpoints, input);
  }
  const int64_t n = static_cast<int64_t>(input.size());
  return {std::min(h.lcp, n - 1), h.hit};
}

EngineAdmit LlamacppCache::Admit(RequestId id, std::span<const Token> input,
                                 std::span<const Token> output, int64_t prefill_end,
                                 int64_t reserve_tokens, Timestamp /*now*/, EngineLookup* found) {
  assert(!running_.count(id) && !input.empty());
  *found = {};
  const Choice choice = ChooseSlot(input);
  if (choice.slot == slots_.size()) return EngineAdmit::kNoRoom;  // waits for a slot
  ++task_;
  last_slot_ = choice.slot;
  Slot& slot = slots_[choice.slot];
  if (UpdatesCache(choice)) {
    Save(slot);
    if (!Load(slot, input)) Clear(slot);
  }
  if (TooLarge(input)) {
    // Refused after the slot choice and its prompt-cache update, as update_slots does.
    ++rejected_;
    SyncStats();
    return EngineAdmit::kTooLarge;
  }
  const int64_t n = static_cast<int64_t>(input.size());
  const InSlotHit h = Lookup(slot.tokens, slot.checkpoints, input);
  // Checkpoints past the resume point describe content about to be overwritten.
  std::erase_if(slot.checkpoints, [&](const Checkpoint& c) { return c.n_tokens - 1 > h.hit; });
  slot.tokens.resize(static_cast<size_t>(h.hit));
  slot.busy = true;
  Running& r = running_[id];
  r.slot = choice.slot;
  r.input = input;
  r.output = output;
  r.prompt = std::min(prefill_end, n_ctx_);
  r.hit = h.hit;
  r.pos = h.hit;
  if (reserve_tokens == kReserveToPrefillEnd) {
    reserve_tokens = std::max<int64_t>(0, r.prompt - h.hit);
  }
  r.reserved = h.hit + reserve_tokens;
  r.task = task_;
  SyncStats();
  *found = {std::min(h.lcp, n - 1), h.hit};
  return EngineAdmit::kAdmitted;
}

// The slot's context was allocated at start-up and is the request's own: more tokens always fit
// (past n_ctx the slot keeps n_ctx tokens: llama.cpp stops decoding at the context).
bool LlamacppCache::Reserve(RequestId id, int64_t tokens) {
  running_.at(id).reserved += tokens;
  return true;
}

// The prompt part of [pos, new pos) runs the prompt loop (its checkpoints); the slot then holds
// the sequence up to the new position, at most n_ctx tokens.
void LlamacppCache::Computed(RequestId id, int64_t pos) {
  Running& r = running_.at(id);
  assert(pos >= r.pos && pos <= r.reserved);
  Slot& slot = slots_[r.slot];
  if (r.pos < r.prompt) Prefill(slot, r.pos, std::min(pos, r.prompt), r.prompt, r.task);
  const int64_t n = static_cast<int64_t>(r.input.size());
  const int64_t held = std::min(pos, n_ctx_);
  int64_t from = Size(slot.tokens);
  if (from < std::min(held, n)) {
    slot.tokens.insert(slot.tokens.end(), r.input.begin() + from,
                       r.input.begin() + std::min(held, n));
    from = std::min(held, n);
  }
  if (from < held) {
    slot.tokens.insert(slot.tokens.end(), r.output.begin() + (from - n),
                       r.output.begin() + (held - n));
  }
  r.pos = pos;
  SyncStats();
}

// slot.release(): the slot goes idle keeping its content (tokens, checkpoints), stamped for LRU.
void LlamacppCache::Release(RequestId id) {
  const auto it = running_.find(id);
  assert(it != running_.end());
  Slot& slot = slots_[it->second.slot];
  slot.busy = false;
  slot.last_used = ++releases_;
  running_.erase(it);
  SyncStats();
}

// Nothing more is inserted at finish: the slot already holds the sequence.
void LlamacppCache::Finish(RequestId id, Timestamp /*now*/) { Release(id); }

// A preempted request releases its slot like a finished one: what it computed stays there.
void LlamacppCache::Abort(RequestId id) { Release(id); }

// A busy slot: the reused prefix is cached (pinned), the tokens past it and its live state are the
// running request's. An idle slot: its tokens and live state are cached. Checkpoints and the
// prompt cache are host RAM, outside the capacity (as in the statistics below).
MemoryUse LlamacppCache::Memory() const {
  const int64_t kv = model_->KvBytesPerToken(), st = model_->StateBytesPerCheckpoint();
  MemoryUse m;
  for (const auto& [id, r] : running_) {
    m.cached_kv += r.hit * kv;
    m.running_kv += (Size(slots_[r.slot].tokens) - r.hit) * kv;
    m.running_state += st;
  }
  for (const Slot& s : slots_) {
    if (s.busy) continue;
    m.cached_kv += Size(s.tokens) * kv;
    m.cached_state += s.tokens.empty() ? 0 : st;
  }
  return m;
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
