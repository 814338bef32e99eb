#include "sim/serving/scheduler.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>

#include "util/parallel_for.h"

namespace marconi::sim::serving {
namespace {

// A request's state in the engine.
struct Live {
  std::optional<RequestHandle> handle;  // from BeginRequest, held until CompleteRequest
  // BeginRequest called for its current admission attempt: once, again after a preemption, and
  // once more if, alone, it gave up its hit to fit (restarted).
  bool begun = false;
  bool restarted = false;
  int64_t hit = 0;
  int64_t matched = 0;  // the lookup's attention-hit depth
  int64_t prefill_left = 0;
  int64_t context = 0;  // tokens whose KV it holds or shares: hit + computed
  int64_t generated = 0;
  int64_t held_tokens = 0;  // KV tokens in running memory (its own, not the cache's)
  bool running = false;
  bool decoding = false;
  double admitted = -1, first_token = -1;
  int64_t preemptions = 0;
};

// Little's law's L x T, by events: += n x (t - last) at each change of n.
struct Occupancy {
  double integral = 0, last = 0;
  int64_t in_system = 0;
  void Advance(double t) {
    integral += static_cast<double>(in_system) * (t - last);
    last = t;
  }
  void Arrive(double t) {
    Advance(t);
    ++in_system;
  }
  void Depart(double t) {
    Advance(t);
    --in_system;
  }
};

class Engine {
 public:
  Engine(const Trace& trace, const SimConfig& config, const ServingConfig& serving, int64_t budget,
         PrefixCache* cache, AlphaTuner* tuner, int64_t states_every)
      : trace_(trace),
        config_(config),
        serving_(serving),
        budget_(budget),
        cache_(cache),
        tuner_(tuner),
        time_(config.model, serving.device, serving.step_overhead_s),
        kv_(config.model.KvBytesPerToken()),
        slot_(serving.state_slots * config.model.StateBytesPerCheckpoint()),
        states_every_(states_every),
        live_(trace.requests.size()) {}

  Status Run(ServingResult* out);

 private:
  const TraceRequest& req(size_t i) const { return trace_.requests[i]; }
  int64_t InputLen(size_t i) const { return static_cast<int64_t>(req(i).input.size()); }
  int64_t OutputLen(size_t i) const {
    return std::max<int64_t>(1, static_cast<int64_t>(req(i).output.size()));
  }
  int64_t RunningBytes(int64_t extra_tokens, int64_t extra_requests) const {
    return (run_tokens_ + extra_tokens) * kv_ +
           (static_cast<int64_t>(running_.size()) + extra_requests) * slot_;
  }
  // Whether `running_bytes` fit with the cache shrunk to the rest of the budget (the cache
  // evicts unpinned content to get there; kResourceExhausted: its pinned content alone is over).
  Result<bool> Fits(int64_t running_bytes) {
    if (running_bytes > budget_) return false;
    if (cache_ == nullptr) return true;
    const Status s = cache_->SetCapacity(budget_ - running_bytes);
    if (s.ok()) return true;
    if (s.code() == StatusCode::kResourceExhausted) return false;
    return s;
  }
  // What the cache cannot evict while `hit` tokens are pinned by a lease: their KV and the states
  // on their path (one, or one per block for block checkpointing). An estimate: paths that share
  // a prefix are counted once each, and other states left on a path by branches are missed.
  int64_t PinnedBytes(int64_t hit) const {
    const int64_t states = states_every_ > 0 ? std::max<int64_t>(1, hit / states_every_) : 1;
    return hit * kv_ + states * config_.model.StateBytesPerCheckpoint();
  }
  void Pin(const Live& v) {
    if (!v.handle || !v.handle->holds_lease()) return;
    if (pins_[v.handle->resume_node()]++ == 0) pinned_estimate_ += PinnedBytes(v.hit);
  }
  void Unpin(const Live& v) {
    if (!v.handle || !v.handle->holds_lease()) return;
    const auto it = pins_.find(v.handle->resume_node());
    if (--it->second == 0) {
      pinned_estimate_ -= PinnedBytes(v.hit);
      pins_.erase(it);
    }
  }
  // Gives back the lease of a request that is not running: it is begun again when admitted.
  void Release(Live& v) {
    Unpin(v);
    v.handle.reset();
    v.begun = false;
    v.restarted = false;
    v.hit = 0;
    v.matched = 0;
  }
  void Preempt(size_t id);
  Status Begin(size_t id);
  Status Finish(size_t id, ServingResult* out);

  const Trace& trace_;
  const SimConfig& config_;
  const ServingConfig& serving_;
  const int64_t budget_;
  PrefixCache* cache_;
  AlphaTuner* tuner_;
  StepTimeModel time_;
  const int64_t kv_, slot_;
  const int64_t states_every_;  // block checkpointing's block size, else 0
  std::vector<Live> live_;
  // Requests released and not yet arrived, by (arrival time, index): the whole trace at its
  // times (open loop), or each session's next turn once its previous one finishes (closed loop).
  using Pending = std::pair<double, size_t>;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pending_;
  std::vector<double> arrival_;          // by request
  std::vector<size_t> next_in_session_;  // closed loop: the session's next turn, or kNone
  static constexpr size_t kNone = std::numeric_limits<size_t>::max();
  std::deque<size_t> waiting_;
  std::vector<size_t> running_;  // in admission order
  int64_t run_tokens_ = 0;       // sum of held_tokens over running_
  double now_ = 0;
  Occupancy occupancy_;
  int64_t preemptions_ = 0, recomputed_ = 0, flushes_ = 0;
  std::unordered_map<NodeId, int64_t> pins_;  // leases held, by node
  int64_t pinned_estimate_ = 0;               // sum of PinnedBytes over pins_
  int64_t pinned_slack_ = 0;                  // what the estimate missed at the last flush
};

void Engine::Preempt(size_t id) {
  // Recompute, as vLLM does by default: the request gives back its memory and its lease (as
  // SGLang's retraction unlocks its prefix) and returns to the head of the queue; on
  // re-admission it is looked up again and prefills its input after the new hit and the tokens
  // it had generated. Keeping the lease instead would let waiting requests pin the cache while
  // holding no memory of their own.
  Live& v = live_[id];
  run_tokens_ -= v.held_tokens;
  recomputed_ += v.context - v.hit;
  Release(v);
  v.held_tokens = 0;
  v.running = false;
  v.decoding = false;
  v.context = 0;
  ++v.preemptions;
  ++preemptions_;
  running_.erase(std::find(running_.begin(), running_.end(), id));
  // Only the head of the queue holds a lease among waiting requests: the one it displaces
  // gives its lease back too (it is looked up again when it is the head again).
  if (!waiting_.empty()) Release(live_[waiting_.front()]);
  waiting_.push_front(id);
}

Status Engine::Begin(size_t id) {
  Live& v = live_[id];
  v.begun = true;
  if (cache_ == nullptr) return Status::Ok();
  auto h = cache_->BeginRequest(req(id).input, now_);
  if (!h.ok()) return h.status();
  v.hit = h->lookup().reusable_tokens;
  v.matched = h->lookup().matched_tokens;
  v.handle = std::move(h).value();
  Pin(v);
  return Status::Ok();
}

Status Engine::Finish(size_t id, ServingResult* out) {
  Live& v = live_[id];
  // Two counters kept apart must agree: the KV it holds is what it computed (context - hit;
  // the last generated token's KV is never written).
  if (v.held_tokens != v.context - v.hit) {
    return Status::FailedPrecondition(
        "serving: request " + std::to_string(id) + " holds " + std::to_string(v.held_tokens) +
        " tokens of KV but computed " + std::to_string(v.context - v.hit));
  }
  running_.erase(std::find(running_.begin(), running_.end(), id));
  run_tokens_ -= v.held_tokens;
  v.held_tokens = 0;
  v.running = false;
  const TraceRequest& r = req(id);
  if (cache_ != nullptr) {
    // The finished request's memory goes back to the cache before its content is inserted.
    if (auto f = Fits(RunningBytes(0, 0)); !f.ok()) return f.status();
    Unpin(v);
    const Status s = cache_->CompleteRequest(std::move(*v.handle), r.input, r.output, now_);
    v.handle.reset();
    // kResourceExhausted leaves the content inserted and the invariants holding; the next step
    // shrinks the cache or preempts.
    if (!s.ok() && s.code() != StatusCode::kResourceExhausted) return s;
    if (tuner_ != nullptr) {
      // Observed at its completion, begin and end alike: the tuner replays its window from a
      // snapshot taken at an earlier completion, so a begin before that snapshot (a request that
      // ran across it) would go back in time; the replay then inserts requests in completion
      // order, as the cache saw them.
      if (Status t = tuner_->Observe(*cache_, r.input, r.output, now_, now_); !t.ok()) {
        return t;
      }
    }
  }
  occupancy_.Depart(now_);
  if (serving_.closed_loop && next_in_session_[id] != kNone) {
    // The session's next turn comes its trace gap (the think time) after this one finished.
    const size_t succ = next_in_session_[id];
    pending_.push({now_ + (req(succ).ts - r.ts), succ});
  }
  ServingRecord& rec = out->requests[id];
  rec.index = id;
  rec.input_tokens = InputLen(id);
  rec.output_tokens = OutputLen(id);
  rec.hit_tokens = v.hit;
  rec.attention_hit_tokens = v.matched;
  rec.arrival = arrival_[id];
  rec.admitted = v.admitted;
  rec.first_token = v.first_token;
  rec.finish = now_;
  rec.preemptions = v.preemptions;
  out->output_tokens += rec.output_tokens;
  out->last_finish = now_;
  return Status::Ok();
}

Status Engine::Run(ServingResult* out) {
  const size_t n = trace_.requests.size();
  out->requests.resize(n);
  for (size_t i = 0; i < n; ++i) {
    // KV of the whole sequence and the slots: what it holds at its end if nothing is shared.
    const int64_t alone = (InputLen(i) + OutputLen(i)) * kv_ + slot_;
    if (InputLen(i) == 0) {
      return Status::InvalidArgument("request " + std::to_string(i) + " has no input");
    }
    if (alone > budget_) {
      return Status::ResourceExhausted(
          "request " + std::to_string(i) + " needs " + std::to_string(alone) +
          " bytes alone (KV of its input and output, its state slots), more than the memory "
          "budget of " +
          std::to_string(budget_) + " bytes");
    }
  }
  if (n == 0) return Status::Ok();
  arrival_.assign(n, 0);
  next_in_session_.assign(n, kNone);
  std::map<std::string_view, size_t> last_of_session;  // trace order is ts order
  for (size_t i = 0; i < n; ++i) {
    const auto [it, first] = last_of_session.try_emplace(req(i).session_id, i);
    if (!first) {
      next_in_session_[it->second] = i;
      it->second = i;
    }
    if (!serving_.closed_loop || first) pending_.push({req(i).ts, i});
  }
  now_ = pending_.top().first;
  out->first_arrival = now_;
  occupancy_.last = now_;
  size_t done = 0;
  const auto arrive = [&] {
    while (!pending_.empty() && pending_.top().first <= now_) {
      const auto [t, id] = pending_.top();
      pending_.pop();
      arrival_[id] = t;
      occupancy_.Arrive(t);
      waiting_.push_back(id);
    }
  };
  struct Item {
    size_t id;
    int64_t tokens;  // 0: a decode
  };
  std::vector<Item> items;
  std::vector<size_t> finished;
  while (done < n) {
    arrive();
    if (running_.empty() && waiting_.empty()) {
      if (pending_.empty()) {
        return Status::FailedPrecondition("serving: requests left but none to come");
      }
      now_ = pending_.top().first;  // idle until the next arrival
      continue;
    }
    // 1. Every decoding request writes the KV of one more token this step; preempt the most
    // recently admitted until that fits.
    int64_t growth = 0;
    for (size_t id : running_) growth += live_[id].decoding ? 1 : 0;
    while (true) {
      auto f = Fits(RunningBytes(growth, 0));
      if (!f.ok()) return f.status();
      if (*f) break;
      if (running_.empty()) break;  // only pinned content is over: admission sorts it out
      growth -= live_[running_.back()].decoding ? 1 : 0;
      Preempt(running_.back());
    }
    for (size_t id : running_) {
      if (live_[id].decoding) ++live_[id].held_tokens, ++run_tokens_;
    }
    // 2. The batch: decodes first, then prefill chunks in admission order, within the budget.
    StepCost cost;
    items.clear();
    int64_t tokens_left = serving_.token_budget;
    for (size_t id : running_) {
      if (!live_[id].decoding) continue;
      time_.Add(live_[id].context, 1, &cost);
      items.push_back({id, 0});
      --tokens_left;
    }
    const auto add_chunk = [&](size_t id) {
      Live& v = live_[id];
      const int64_t c = std::min({serving_.chunk_tokens, v.prefill_left, tokens_left});
      if (c <= 0) return;
      time_.Add(v.context, c, &cost);
      items.push_back({id, c});
      tokens_left -= c;
    };
    for (size_t id : running_) {
      if (!live_[id].decoding) add_chunk(id);
    }
    // 3. Admission, FCFS: the head of the queue, if its memory can be found.
    while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < serving_.max_running &&
           tokens_left > 0) {
      const size_t id = waiting_.front();
      Live& v = live_[id];
      if (!v.begun) {
        if (Status s = Begin(id); !s.ok()) return s;
      }
      const int64_t need = InputLen(id) - v.hit + v.generated;
      // Shrinking the cache for a request that then does not fit would evict all its unpinned
      // content for nothing: like SGLang (free + evictable memory) and vLLM (free + cached
      // blocks), look before evicting, with the pinned bytes estimated.
      if (cache_ != nullptr && !running_.empty() &&
          RunningBytes(need, 1) + pinned_estimate_ + pinned_slack_ > budget_) {
        break;  // wait for memory to free up
      }
      auto f = Fits(RunningBytes(need, 1));
      if (!f.ok()) return f.status();
      if (!*f) {
        if (!running_.empty()) {
          if (cache_ != nullptr) {
            // The estimate was low: the cache is down to its pinned content, whose size is now
            // known. What it missed (states left on pinned paths, mostly) is kept as a margin.
            ++flushes_;
            pinned_slack_ = std::max<int64_t>(0, cache_->stats().bytes() - pinned_estimate_);
          }
          break;  // wait for memory to free up
        }
        if (v.handle && v.hit > 0 && !v.restarted) {
          // Alone, it is its own pinned path (with the states on it) that does not fit: give
          // up the hit, make room for the whole request with nothing pinned (evicting what has
          // to go, that path included if need be), and look it up again in what is left.
          Release(v);
          v.restarted = true;
          if (auto room = Fits(RunningBytes(InputLen(id) + v.generated, 1)); !room.ok()) {
            return room.status();
          }
          continue;
        }
        return Status::ResourceExhausted("request " + std::to_string(id) +
                                         " does not fit in the memory budget of " +
                                         std::to_string(budget_) + " bytes even alone");
      }
      waiting_.pop_front();
      v.running = true;
      v.decoding = false;
      v.held_tokens = need;
      v.prefill_left = need;
      v.context = v.hit;
      run_tokens_ += need;
      if (v.admitted < 0) v.admitted = now_;
      running_.push_back(id);
      add_chunk(id);
    }
    // 4. The memory invariant, checked every step.
    MemoryUse use;
    use.running_kv = run_tokens_ * kv_;
    use.running_state = static_cast<int64_t>(running_.size()) * slot_;
    if (cache_ != nullptr) {
      use.cached_kv = cache_->stats().kv_bytes;
      use.cached_state = cache_->stats().state_bytes;
    }
    if (use.total() > budget_) {
      return Status::FailedPrecondition("serving: memory in use " + std::to_string(use.total()) +
                                        " bytes exceeds the budget " + std::to_string(budget_) +
                                        " at t=" + std::to_string(now_));
    }
    out->peak.running_kv = std::max(out->peak.running_kv, use.running_kv);
    out->peak.running_state = std::max(out->peak.running_state, use.running_state);
    out->peak.cached_kv = std::max(out->peak.cached_kv, use.cached_kv);
    out->peak.cached_state = std::max(out->peak.cached_state, use.cached_state);
    out->peak_bytes = std::max(out->peak_bytes, use.total());
    if (items.empty()) {
      return Status::FailedPrecondition("serving: a step with nothing to run at t=" +
                                        std::to_string(now_));
    }
    const double seconds = time_.Seconds(cost);
    if (serving_.on_step) {
      serving_.on_step({now_, static_cast<int64_t>(running_.size()),
                        static_cast<int64_t>(waiting_.size()), cost.tokens, seconds, use, budget_});
    }
    // 5. Run the step.
    now_ += seconds;
    ++out->steps;
    arrive();  // arrivals during the step join the queue (and the occupancy) at their times
    finished.clear();
    for (const Item& it : items) {
      Live& v = live_[it.id];
      if (it.tokens == 0) {
        ++v.context;
        ++v.generated;
      } else {
        v.context += it.tokens;
        v.prefill_left -= it.tokens;
        if (v.prefill_left == 0) {
          ++v.generated;  // the last chunk's logits give a token
          if (v.first_token < 0) v.first_token = now_;
          v.decoding = true;
        }
      }
      if (v.decoding && v.generated >= OutputLen(it.id)) finished.push_back(it.id);
    }
    for (size_t id : finished) {
      if (Status s = Finish(id, out); !s.ok()) return s;
      ++done;
    }
  }
  occupancy_.Advance(now_);
  out->occupancy_integral = occupancy_.integral;
  out->preemptions = preemptions_;
  out->recomputed_tokens = recomputed_;
  out->cache_flushes = flushes_;
  return Status::Ok();
}

}  // namespace

bool ServingSupports(SystemKind kind) { return SpecOf(kind).engine == nullptr; }

Result<int64_t> ServingBudget(const ServingConfig& c, const ModelSpec& model) {
  if (Status s = ValidateDevice(c.device); !s.ok()) return s;
  if (c.max_running < 1 || c.chunk_tokens < 1 || c.state_slots < 0 ||
      c.token_budget < c.max_running || !(c.step_overhead_s >= 0) || c.budget_bytes < 0) {
    return Status::InvalidArgument(
        "serving: need max running >= 1, a token budget >= max running, chunk >= 1, state slots "
        ">= 0, step overhead >= 0 and a budget >= 0");
  }
  if (c.budget_bytes > 0) return c.budget_bytes;
  const double usable = static_cast<double>(c.device.hbm_bytes) * c.device.memory_utilization;
  const int64_t budget = static_cast<int64_t>(usable) - WeightBytes(model);
  if (budget <= 0) {
    return Status::InvalidArgument("serving: the weights of " + model.name() + " (" +
                                   std::to_string(WeightBytes(model)) + " bytes) do not fit in " +
                                   c.device.name);
  }
  return budget;
}

namespace {

// One serving run of `kind` with eviction alpha `alpha` (tuned from there if `tune`).
Result<ServingResult> ServeOnce(const Trace& trace, SystemKind kind, const SimConfig& config,
                                const ServingConfig& serving, int64_t budget, double alpha,
                                bool tune) {
  ServingResult out;
  out.budget_bytes = budget;
  out.weight_bytes = WeightBytes(config.model);
  SystemInstance system;
  if (SpecOf(kind).admission != Admission::kNone) {
    SimConfig c = config;
    c.capacity_bytes = budget;
    // An engine computes at least the last input token, whose logits give the first output
    // token: a whole-input hit resumes before it (the paper's convention, a hit that skips
    // everything, would leave a request with nothing to prefill and no first token).
    c.leave_last_token = true;
    auto made = MakeSystem(kind, c, alpha, tune);
    if (!made.ok()) return made.status();
    system = std::move(made).value();
  }
  const int64_t states_every = SpecOf(kind).admission == Admission::kBlock
                                   ? static_cast<int64_t>(Param(kind, "block_size", config.params))
                                   : 0;
  Engine engine(trace, config, serving, budget, system.cache.get(), system.tuner.get(),
                states_every);
  if (Status s = engine.Run(&out); !s.ok()) return s;
  SystemResult& base = out.base;
  base.system = SystemName(kind);
  base.params = EffectiveParams(kind, config.params);
  if (system.cache) {
    base.stats = system.cache->stats();
    base.alpha = system.cache->alpha();
  }
  if (system.tuner) base.rounds = system.tuner->rounds();
  base.records.reserve(out.requests.size());
  for (const ServingRecord& r : out.requests) {
    base.records.push_back(
        {r.index, r.input_tokens, r.hit_tokens, r.attention_hit_tokens, 1000 * r.ttft_s()});
    if (!system.cache) {
      ++base.stats.requests;
      base.stats.input_tokens += r.input_tokens;
      base.stats.flops_without_cache += config.model.PrefillFlops(0, r.input_tokens);
    }
  }
  return out;
}

// Token hit rate of a serving run, each request counted once (its last admission's hit).
double HitRate(const ServingResult& r) {
  int64_t input = 0, hit = 0;
  for (const ServingRecord& q : r.requests) input += q.input_tokens, hit += q.hit_tokens;
  return input > 0 ? static_cast<double>(hit) / static_cast<double>(input) : 0;
}

}  // namespace

Result<ServingResult> RunServing(const Trace& trace, SystemKind kind, const SimConfig& config,
                                 const ServingConfig& serving) {
  if (!ServingSupports(kind)) {
    return Status::Unimplemented(std::string("--serving does not serve ") + SystemName(kind) +
                                 " yet: engine emulations reserve their own state slots and "
                                 "come later");
  }
  auto budget = ServingBudget(serving, config.model);
  if (!budget.ok()) return budget.status();
  if (SpecOf(kind).tuning != Tuning::kHindsight) {
    return ServeOnce(trace, kind, config, serving, *budget, 0.0, IsTuned(kind));
  }
  // The oracle: one serving run per alpha of the grid, the best token hit rate in hindsight
  // (ties keep the smaller alpha), as the unloaded replay's oracle does.
  std::vector<double> grid = config.tuner.grid;
  std::sort(grid.begin(), grid.end());
  if (grid.empty()) return Status::InvalidArgument("the oracle needs a grid of alphas");
  std::vector<Result<ServingResult>> runs(grid.size(), Status::Unimplemented("not run"));
  internal::ParallelFor(
      grid.size(), static_cast<size_t>(std::max(1, config.threads)), [&](size_t i) {
        runs[i] = ServeOnce(trace, kind, config, serving, *budget, grid[i], false);
      });
  size_t best = 0;
  TuningRound round;
  round.alphas = grid;
  for (size_t i = 0; i < grid.size(); ++i) {
    if (!runs[i].ok()) return runs[i].status();
    round.objective.push_back(HitRate(*runs[i]));
    if (round.objective[i] > round.objective[best]) best = i;
  }
  ServingResult out = std::move(runs[best]).value();
  out.base.alpha = grid[best];
  round.chosen_alpha = grid[best];
  round.window = static_cast<int64_t>(trace.requests.size());
  round.after_request = round.window;
  out.base.rounds = {round};
  return out;
}

}  // namespace marconi::sim::serving
