#include "sim/replay.h"

#include <algorithm>
#include <sstream>

#include "marconi/policies.h"
#include "sim/hindsight.h"

namespace marconi::sim {
namespace {

struct Setup {
  std::unique_ptr<AdmissionPolicy> admission;
  std::unique_ptr<EvictionPolicy> eviction;
};

Result<Setup> MakeSetup(SystemKind kind, const SimConfig& config, double alpha) {
  const SystemSpec& spec = SpecOf(kind);
  Setup s;
  switch (spec.admission) {
    case Admission::kNone:
      return Status::InvalidArgument(std::string(spec.name) + " has no cache");
    case Admission::kEngine:
      return Status::InvalidArgument(std::string(spec.name) +
                                     " is an engine emulation, not a PrefixCache");
    case Admission::kJudicious:
      s.admission = MakeJudiciousAdmission();
      break;
    case Admission::kBlock: {
      auto a = MakeBlockAdmission({static_cast<int64_t>(Param(kind, "block_size", config.params))});
      if (!a.ok()) return a.status();
      s.admission = std::move(a).value();
      break;
    }
    case Admission::kSparse: {
      SparseAdmissionConfig c;
      c.relative = true;
      c.budget = static_cast<int64_t>(Param(kind, "budget", config.params));
      c.chunk_tokens = static_cast<int64_t>(Param(kind, "chunk_tokens", config.params));
      c.max_tokens = std::max(c.max_tokens, c.chunk_tokens);
      auto a = MakeSparseAdmission(c);
      if (!a.ok()) return a.status();
      s.admission = std::move(a).value();
      break;
    }
  }
  switch (spec.eviction) {
    case Eviction::kNone:
    case Eviction::kEngine:
      return Status::InvalidArgument(std::string(spec.name) + " has no PrefixCache eviction");
    case Eviction::kLru:
      s.eviction = MakeLruEviction();
      break;
    case Eviction::kFlopAware: {
      auto e = MakeFlopAwareEviction({alpha, config.recency});
      if (!e.ok()) return e.status();
      s.eviction = std::move(e).value();
      break;
    }
  }
  return s;
}

// The requests of a replay: the trace's, in its order, or in a schedule's order and times.
struct Requests {
  const Trace& trace;
  const Schedule* schedule = nullptr;
  size_t size() const { return schedule ? schedule->order.size() : trace.requests.size(); }
  const TraceRequest& operator[](size_t k) const {
    return schedule ? trace.requests[schedule->order[k]] : trace.requests[k];
  }
  double ts(size_t k) const { return schedule ? schedule->ts[k] : trace.requests[k].ts; }
};

Status ServeRequests(const Requests& requests, PrefixCache& cache,
                     const std::function<void(size_t, const LookupResult&)>& on_lookup,
                     AlphaTuner* tuner) {
  for (size_t i = 0; i < requests.size(); ++i) {
    const TraceRequest& r = requests[i];
    const double ts = requests.ts(i);
    auto h = cache.BeginRequest(r.input, ts);
    if (!h.ok()) return h.status();
    if (on_lookup) on_lookup(i, h->lookup());
    Status s = cache.CompleteRequest(std::move(h).value(), r.input, r.output, ts);
    if (!s.ok()) return s;
    if (tuner) {
      if (Status t = tuner->Observe(cache, r.input, r.output, ts, ts); !t.ok()) return t;
    }
  }
  return Status::Ok();
}

// One replay with a fixed setup; the tuner (if any) observes every request.
Result<SystemResult> Serve(const Requests& trace, SystemKind kind, const SimConfig& config,
                           double alpha, bool tune) {
  auto policy = MakeSystem(kind, config, alpha, tune);
  if (!policy.ok()) return policy.status();
  PrefixCache* cache = policy->cache.get();
  AlphaTuner* tuner = policy->tuner.get();
  SystemResult out;
  out.system = SystemName(kind);
  out.params = EffectiveParams(kind, config.params);
  out.records.reserve(trace.size());
  auto record = [&](size_t i, const LookupResult& lookup) {
    const int64_t n = static_cast<int64_t>(trace[i].input.size());
    const int64_t hit = lookup.reusable_tokens;
    out.records.push_back(
        {i, n, hit, lookup.matched_tokens, config.ttft.Ms(config.model, hit, n - hit)});
    if (config.progress) config.progress(i + 1, trace.size());
  };
  if (Status s = ServeRequests(trace, *cache, record, tuner); !s.ok()) return s;
  out.stats = cache->stats();
  out.alpha = cache->alpha();
  if (tuner) out.rounds = tuner->rounds();
  return out;
}

SystemResult Vanilla(const Requests& trace, SystemKind kind, const SimConfig& config) {
  SystemResult out;
  out.system = SystemName(kind);
  out.params = EffectiveParams(kind, config.params);
  for (size_t i = 0; i < trace.size(); ++i) {
    const int64_t n = static_cast<int64_t>(trace[i].input.size());
    out.records.push_back({i, n, 0, 0, config.ttft.Ms(config.model, 0, n)});
    ++out.stats.requests;
    out.stats.input_tokens += n;
    out.stats.flops_without_cache += config.model.PrefillFlops(0, n);
    if (config.progress) config.progress(i + 1, trace.size());
  }
  return out;
}

// A replay through an emulated engine's cache (SystemSpec::engine).
Result<SystemResult> Engine(const Requests& trace, SystemKind kind, const SimConfig& config) {
  const SystemSpec& spec = SpecOf(kind);
  EngineContext context;
  context.model = &config.model;
  context.capacity_bytes = config.capacity_bytes;
  context.param = [&](std::string_view name) { return Param(kind, name, config.params); };
  auto engine = spec.engine(context);
  if (!engine.ok()) return engine.status();
  EngineCache& cache = **engine;
  SystemResult out;
  out.system = SystemName(kind);
  out.params = EffectiveParams(kind, config.params);
  out.derived = cache.DerivedSizes();
  if (spec.tuning == Tuning::kHindsight) out.alpha = Param(kind, "alpha", config.params);
  out.records.reserve(trace.size());
  for (size_t i = 0; i < trace.size(); ++i) {
    const TraceRequest& r = trace[i];
    const int64_t n = static_cast<int64_t>(r.input.size());
    if (n == 0) return Status::InvalidArgument("request " + std::to_string(i) + " has no input");
    const EngineLookup found = cache.ServeCounted(config.model, r.input, r.output, trace.ts(i));
    out.records.push_back(
        {i, n, found.reusable_tokens, found.attention_hit_tokens,
         config.ttft.Ms(config.model, found.reusable_tokens, n - found.reusable_tokens)});
    if (config.progress) config.progress(i + 1, trace.size());
  }
  out.stats = cache.stats();
  return out;
}

}  // namespace

Result<SystemInstance> MakeSystem(SystemKind kind, const SimConfig& config, double alpha,
                                  bool tune) {
  auto setup = MakeSetup(kind, config, alpha);
  if (!setup.ok()) return setup.status();
  PrefixCacheConfig cc;
  cc.capacity_bytes = config.capacity_bytes;
  cc.leave_last_token = config.leave_last_token;
  auto cache = PrefixCache::Create(cc, config.model, std::move(setup->admission),
                                   std::move(setup->eviction));
  if (!cache.ok()) return cache.status();
  SystemInstance out;
  out.cache = std::move(cache).value();
  if (tune) {
    AlphaTunerConfig tc = config.tuner;
    tc.threads = config.threads;
    tc.retune = SpecOf(kind).tuning != Tuning::kOneShot;
    auto t = AlphaTuner::Create(tc);
    if (!t.ok()) return t.status();
    out.tuner = std::move(t).value();
  }
  return out;
}

Status ServeTrace(const Trace& trace, PrefixCache& cache,
                  const std::function<void(size_t, const LookupResult&)>& on_lookup,
                  AlphaTuner* tuner) {
  return ServeRequests(Requests{trace}, cache, on_lookup, tuner);
}

namespace {

Result<SystemResult> Run(const Requests& requests, SystemKind kind, const SimConfig& config) {
  if (TunedInHindsight(kind, config)) {
    const bool engine = SpecOf(kind).engine != nullptr;
    auto best = BestAlphaInHindsight<SystemResult>(
        kind, config, static_cast<int64_t>(requests.size()),
        [&](const SimConfig& c, double alpha) {
          return engine ? Engine(requests, kind, c) : Serve(requests, kind, c, alpha, false);
        },
        [](const SystemResult& r) { return r.stats.token_hit_rate(); });
    if (!best.ok()) return best.status();
    SystemResult out = std::move(best->first);
    // Its parameters as asked (an engine's alpha -1: chosen in hindsight); the choice is .alpha.
    out.params = EffectiveParams(kind, config.params);
    out.alpha = best->second.chosen_alpha;
    out.rounds = {best->second};
    return out;
  }
  if (SpecOf(kind).engine != nullptr) return Engine(requests, kind, config);
  if (SpecOf(kind).admission == Admission::kNone) return Vanilla(requests, kind, config);
  return Serve(requests, kind, config, 0.0, IsTuned(kind));
}

}  // namespace

Result<SystemResult> RunSystem(const Trace& trace, SystemKind kind, const SimConfig& config) {
  return Run(Requests{trace}, kind, config);
}

Result<SystemResult> RunSystem(const Trace& trace, const Schedule& schedule, SystemKind kind,
                               const SimConfig& config) {
  if (schedule.order.size() != schedule.ts.size()) {
    return Status::InvalidArgument("schedule: order and ts differ in length");
  }
  for (size_t i : schedule.order) {
    if (i >= trace.requests.size()) {
      return Status::InvalidArgument("schedule: request " + std::to_string(i) +
                                     " is not in the trace");
    }
  }
  return Run(Requests{trace, &schedule}, kind, config);
}

}  // namespace marconi::sim
