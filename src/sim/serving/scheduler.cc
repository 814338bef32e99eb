#include "sim/serving/scheduler.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <string_view>

#include "sim/hindsight.h"
#include "sim/serving/replica.h"

namespace marconi::sim::serving {
namespace {

// Sums the request and eviction counters of the replicas' caches (peaks: the largest).
void AddStats(const CacheStats& s, CacheStats* to) {
  to->requests += s.requests;
  to->hit_requests += s.hit_requests;
  to->input_tokens += s.input_tokens;
  to->hit_tokens += s.hit_tokens;
  to->matched_tokens += s.matched_tokens;
  to->flops_saved += s.flops_saved;
  to->last_token_recomputes += s.last_token_recomputes;
  to->flops_without_cache += s.flops_without_cache;
  to->cached_tokens += s.cached_tokens;
  to->checkpoints += s.checkpoints;
  to->nodes += s.nodes;
  to->kv_bytes += s.kv_bytes;
  to->state_bytes += s.state_bytes;
  to->peak_kv_bytes = std::max(to->peak_kv_bytes, s.peak_kv_bytes);
  to->peak_state_bytes = std::max(to->peak_state_bytes, s.peak_state_bytes);
  to->peak_bytes = std::max(to->peak_bytes, s.peak_bytes);
  to->inserts += s.inserts;
  to->checkpoints_admitted += s.checkpoints_admitted;
  to->evictions += s.evictions;
  to->evicted_checkpoints += s.evicted_checkpoints;
  to->evicted_tokens += s.evicted_tokens;
  to->over_capacity_inserts += s.over_capacity_inserts;
  to->self_evictions += s.self_evictions;
}

// The event loop over the replicas, in time order. At equal times: arrivals first (a replica's
// step includes the arrivals up to its start), then step ends, then step starts; among
// replicas, the lower index first. With one replica this is the single engine's order exactly.
Status RunReplicas(const Trace& trace, const ServingConfig& serving, Router* router,
                   std::vector<std::unique_ptr<Replica>>& replicas, ServingResult* out) {
  const size_t n = trace.requests.size();
  const auto req = [&](size_t i) -> const TraceRequest& { return trace.requests[i]; };
  // Requests released and not yet arrived, by (arrival time, index): the whole trace at its
  // times (open loop), or each session's next turn once its previous one finishes (closed loop).
  using Pending = std::pair<double, size_t>;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> pending;
  constexpr size_t kNone = std::numeric_limits<size_t>::max();
  std::vector<size_t> next_in_session(n, kNone);
  std::map<std::string_view, size_t> last_of_session;  // trace order is ts order
  for (size_t i = 0; i < n; ++i) {
    const auto [it, first] = last_of_session.try_emplace(req(i).session_id, i);
    if (!first) {
      next_in_session[it->second] = i;
      it->second = i;
    }
    if (!serving.closed_loop || first) pending.push({req(i).ts, i});
  }
  out->first_arrival = pending.top().first;
  out->last_finish = out->first_arrival;
  std::vector<ReplicaView> views(replicas.size());
  std::vector<size_t> finished;
  size_t done = 0;
  double now = out->first_arrival;
  while (done < n) {
    // The next event: 0 an arrival, 1 a step's end, 2 a step's start.
    double t = std::numeric_limits<double>::infinity();
    int kind = 3;
    size_t which = 0;
    const auto consider = [&](double time, int k, size_t r) {
      if (time < t || (time == t && (k < kind || (k == kind && r < which)))) {
        t = time, kind = k, which = r;
      }
    };
    if (!pending.empty()) consider(pending.top().first, 0, 0);
    for (size_t r = 0; r < replicas.size(); ++r) {
      if (replicas[r]->in_step()) {
        consider(replicas[r]->step_end(), 1, r);
      } else if (replicas[r]->busy()) {
        consider(replicas[r]->now(), 2, r);
      }
    }
    if (kind == 3) return Status::FailedPrecondition("serving: requests left but none to come");
    now = t;
    if (kind == 0) {
      const size_t id = pending.top().second;
      pending.pop();
      for (size_t r = 0; r < replicas.size(); ++r) {
        views[r] = replicas[r]->View();
      }
      const size_t chosen =
          router->Route({id, req(id).input, req(id).session_id}, std::span(views));
      if (chosen >= replicas.size()) {
        return Status::FailedPrecondition("serving: the router chose replica " +
                                          std::to_string(chosen) + " of " +
                                          std::to_string(replicas.size()));
      }
      if (serving.on_route) serving.on_route({id, now, std::span(views), chosen});
      replicas[chosen]->Arrive(id, now);
    } else {
      // A step's start rejects what can never run, its end finishes requests: either way they
      // leave the system, and a closed-loop session's next turn is released.
      finished.clear();
      if (kind == 2) {
        if (Status s = replicas[which]->StartStep(&finished); !s.ok()) return s;
      } else if (Status s = replicas[which]->EndStep(&finished); !s.ok()) {
        return s;
      }
      for (size_t id : finished) {
        ++done;
        if (serving.closed_loop && next_in_session[id] != kNone) {
          // The session's next turn comes its trace gap (the think time) after this one
          // finished.
          const size_t succ = next_in_session[id];
          pending.push({now + (req(succ).ts - req(id).ts), succ});
        }
      }
    }
  }
  for (auto& r : replicas) r->Close(now);
  return Status::Ok();
}

}  // namespace

Result<int64_t> ServingBudget(const ServingConfig& c, const ModelSpec& model) {
  if (Status s = ValidateDevice(c.device); !s.ok()) return s;
  if (c.max_running < 1 || c.chunk_tokens < 1 || c.state_slots < 0 ||
      c.token_budget < c.max_running || c.budget_bytes < 0) {
    return Status::InvalidArgument(
        "serving: need max running >= 1, a token budget >= max running, chunk >= 1, state slots "
        ">= 0 and a budget >= 0");
  }
  if (c.replicas < 1 || c.replicas > 4096) {
    return Status::InvalidArgument("serving: --replicas must be between 1 and 4096, not " +
                                   std::to_string(c.replicas));
  }
  if (auto router = MakeRouter(c.router); !router.ok()) return router.status();
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
  out.router = serving.router;
  out.replicas = serving.replicas;
  auto router = MakeRouter(serving.router);
  if (!router.ok()) return router.status();
  const size_t count = static_cast<size_t>(serving.replicas);
  const SystemSpec& spec = SpecOf(kind);
  const int64_t slot = serving.state_slots * config.model.StateBytesPerCheckpoint();
  for (size_t i = 0; i < trace.requests.size(); ++i) {
    if (trace.requests[i].input.empty()) {
      return Status::InvalidArgument("request " + std::to_string(i) + " has no input");
    }
  }
  const int64_t states_every = spec.admission == Admission::kBlock
                                   ? static_cast<int64_t>(Param(kind, "block_size", config.params))
                                   : 0;
  std::vector<std::unique_ptr<Replica>> replicas;
  for (size_t r = 0; r < count; ++r) {
    std::unique_ptr<ServedCache> cache;
    if (spec.engine != nullptr) {
      // The engine's pools hold everything: running requests and cached content, the budget.
      EngineContext context;
      context.model = &config.model;
      context.capacity_bytes = budget;
      context.param = [&](std::string_view name) { return Param(kind, name, config.params); };
      auto engine = spec.engine(context);
      if (!engine.ok()) return engine.status();
      cache = MakeServedEngine(trace, config.model, std::move(engine).value(), SystemName(kind));
    } else {
      SystemInstance system;
      if (spec.admission != Admission::kNone) {
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
      cache = MakeServedCore(trace, config.model, std::move(system), budget, slot, states_every);
    }
    replicas.push_back(
        std::make_unique<Replica>(r, trace, config, serving, budget, std::move(cache), &out));
  }
  out.requests.resize(trace.requests.size());
  if (!trace.requests.empty()) {
    if (Status s = RunReplicas(trace, serving, router->get(), replicas, &out); !s.ok()) return s;
  }
  SystemResult& base = out.base;
  base.system = SystemName(kind);
  base.params = EffectiveParams(kind, config.params);
  base.derived = replicas.front()->cache().DerivedSizes();
  const CacheStats* counted = replicas.front()->cache().stats();
  double alpha_sum = 0;
  for (const auto& replica : replicas) {
    if (const CacheStats* stats = replica->cache().stats(); stats != nullptr) {
      AddStats(*stats, &base.stats);
    }
    alpha_sum += replica->cache().alpha();
  }
  base.alpha = alpha_sum / static_cast<double>(count);
  if (spec.tuning == Tuning::kHindsight && spec.engine != nullptr) {
    base.alpha = Param(kind, "alpha", config.params);
  }
  base.rounds = replicas.front()->cache().rounds();
  base.records.reserve(out.requests.size());
  for (const ServingRecord& r : out.requests) {
    if (r.rejected) continue;  // never looked up
    base.records.push_back(
        {r.index, r.input_tokens, r.hit_tokens, r.attention_hit_tokens, 1000 * r.ttft_s()});
    if (counted == nullptr) {
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
  auto budget = ServingBudget(serving, config.model);
  if (!budget.ok()) return budget.status();
  if (!TunedInHindsight(kind, config)) {
    return ServeOnce(trace, kind, config, serving, *budget, 0.0, IsTuned(kind));
  }
  // One serving run per alpha of the grid, the best token hit rate kept, as the unloaded replay.
  auto best = BestAlphaInHindsight<ServingResult>(
      kind, config, static_cast<int64_t>(trace.requests.size()),
      [&](const SimConfig& c, double alpha) {
        return ServeOnce(trace, kind, c, serving, *budget, alpha, false);
      },
      HitRate);
  if (!best.ok()) return best.status();
  ServingResult out = std::move(best->first);
  // Its parameters as asked (an engine's alpha -1: chosen in hindsight); the choice is .alpha.
  out.base.params = EffectiveParams(kind, config.params);
  out.base.alpha = best->second.chosen_alpha;
  out.base.rounds = {best->second};
  return out;
}

}  // namespace marconi::sim::serving
