#include "sim/replay.h"

#include <algorithm>
#include <sstream>

#include "marconi/policies.h"
#include "util/parallel_for.h"

namespace marconi::sim {
namespace {

constexpr std::pair<PolicyKind, const char*> kNames[] = {
    {PolicyKind::kVanilla, "vanilla"},
    {PolicyKind::kVllmPlus, "vllm+"},
    {PolicyKind::kSglangPlus, "sglang+"},
    {PolicyKind::kMarconi, "marconi"},
    {PolicyKind::kOracle, "oracle"},
    {PolicyKind::kSparse, "sparse"},
    {PolicyKind::kMarconiOneShot, "marconi-oneshot"}};

struct Setup {
  std::unique_ptr<AdmissionPolicy> admission;
  std::unique_ptr<EvictionPolicy> eviction;
};

Result<Setup> MakeSetup(PolicyKind kind, const SimConfig& config, double alpha) {
  Setup s;
  switch (kind) {
    case PolicyKind::kVllmPlus: {
      auto a = MakeBlockAdmission({config.block_size});
      if (!a.ok()) return a.status();
      s.admission = std::move(a).value();
      s.eviction = MakeLruEviction();
      return s;
    }
    case PolicyKind::kSglangPlus:
      s.admission = MakeJudiciousAdmission();
      s.eviction = MakeLruEviction();
      return s;
    case PolicyKind::kSparse: {
      SparseAdmissionConfig c;
      c.relative = true;
      c.budget = 2;
      auto a = MakeSparseAdmission(c);
      if (!a.ok()) return a.status();
      s.admission = std::move(a).value();
      break;
    }
    default:
      s.admission = MakeJudiciousAdmission();
      break;
  }
  auto e = MakeFlopAwareEviction({alpha, config.recency});
  if (!e.ok()) return e.status();
  s.eviction = std::move(e).value();
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
    if (on_lookup) on_lookup(i, h->lookup);
    Status s = cache.CompleteRequest(std::move(h).value(), r.input, r.output, ts);
    if (!s.ok()) return s;
    if (tuner) {
      if (Status t = tuner->Observe(cache, r.input, r.output, ts, ts); !t.ok()) return t;
    }
  }
  return Status::Ok();
}

// One replay with a fixed setup; the tuner (if any) observes every request.
Result<PolicyResult> Serve(const Requests& trace, PolicyKind kind, const SimConfig& config,
                           double alpha, bool tune) {
  auto policy = MakePolicy(kind, config, alpha, tune);
  if (!policy.ok()) return policy.status();
  PrefixCache* cache = policy->cache.get();
  AlphaTuner* tuner = policy->tuner.get();
  PolicyResult out;
  out.policy = PolicyName(kind);
  out.records.reserve(trace.size());
  auto record = [&](size_t i, const LookupResult& lookup) {
    const int64_t n = static_cast<int64_t>(trace[i].input.size());
    const int64_t hit = lookup.reusable_tokens;
    out.records.push_back({i, n, hit, config.ttft.Ms(config.model, hit, n - hit)});
    if (config.progress) config.progress(i + 1, trace.size());
  };
  if (Status s = ServeRequests(trace, *cache, record, tuner); !s.ok()) return s;
  out.stats = cache->stats();
  out.alpha = cache->alpha();
  if (tuner) out.rounds = tuner->rounds();
  return out;
}

PolicyResult Vanilla(const Requests& trace, const SimConfig& config) {
  PolicyResult out;
  out.policy = "vanilla";
  for (size_t i = 0; i < trace.size(); ++i) {
    const int64_t n = static_cast<int64_t>(trace[i].input.size());
    out.records.push_back({i, n, 0, config.ttft.Ms(config.model, 0, n)});
    ++out.stats.requests;
    out.stats.input_tokens += n;
    out.stats.flops_without_cache += config.model.PrefillFlops(0, n);
    if (config.progress) config.progress(i + 1, trace.size());
  }
  return out;
}

Result<PolicyResult> Oracle(const Requests& trace, const SimConfig& config) {
  std::vector<double> grid = config.tuner.grid;
  std::sort(grid.begin(), grid.end());
  std::vector<Result<PolicyResult>> runs(grid.size(), Status::Unimplemented("not run"));
  internal::ParallelFor(grid.size(), static_cast<size_t>(std::max(1, config.threads)),
                        [&](size_t i) {
                          SimConfig c = config;
                          if (i > 0) c.progress = nullptr;  // one replay reports, from one thread
                          runs[i] = Serve(trace, PolicyKind::kOracle, c, grid[i], false);
                        });
  size_t best = 0;
  TuningRound round;
  round.alphas = grid;
  for (size_t i = 0; i < grid.size(); ++i) {
    if (!runs[i].ok()) return runs[i].status();
    round.objective.push_back(runs[i]->stats.token_hit_rate());
    if (runs[i]->stats.token_hit_rate() > runs[best]->stats.token_hit_rate()) best = i;
  }
  PolicyResult out = std::move(runs[best]).value();
  out.alpha = grid[best];
  round.chosen_alpha = grid[best];
  round.window = static_cast<int64_t>(trace.size());
  round.after_request = round.window;
  out.rounds = {round};
  return out;
}

}  // namespace

Result<PolicyInstance> MakePolicy(PolicyKind kind, const SimConfig& config, double alpha,
                                  bool tune) {
  if (kind == PolicyKind::kVanilla) return Status::InvalidArgument("vanilla has no cache");
  auto setup = MakeSetup(kind, config, alpha);
  if (!setup.ok()) return setup.status();
  PrefixCacheConfig cc;
  cc.capacity_bytes = config.capacity_bytes;
  auto cache = PrefixCache::Create(cc, config.model, std::move(setup->admission),
                                   std::move(setup->eviction));
  if (!cache.ok()) return cache.status();
  PolicyInstance out;
  out.cache = std::move(cache).value();
  if (tune) {
    AlphaTunerConfig tc = config.tuner;
    tc.threads = config.threads;
    if (kind == PolicyKind::kMarconiOneShot) tc.retune = false;
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

bool IsTuned(PolicyKind kind) {
  return kind == PolicyKind::kMarconi || kind == PolicyKind::kMarconiOneShot ||
         kind == PolicyKind::kSparse;
}

const char* PolicyName(PolicyKind kind) {
  for (const auto& [k, name] : kNames) {
    if (k == kind) return name;
  }
  return "?";
}

Result<std::vector<PolicyKind>> ParsePolicies(const std::string& list) {
  std::vector<PolicyKind> out;
  if (list == "all") {
    for (const auto& [k, name] : kNames) out.push_back(k);
    return out;
  }
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    bool found = false;
    for (const auto& [k, name] : kNames) {
      if (item == name) {
        if (std::find(out.begin(), out.end(), k) == out.end()) out.push_back(k);
        found = true;
      }
    }
    if (!found) {
      return Status::InvalidArgument(
          "unknown policy '" + item +
          "' (policies: vanilla, vllm+, sglang+, marconi, marconi-oneshot, oracle, sparse, or "
          "all)");
    }
  }
  if (out.empty()) return Status::InvalidArgument("no policy given");
  return out;
}

namespace {

Result<PolicyResult> Run(const Requests& requests, PolicyKind kind, const SimConfig& config) {
  switch (kind) {
    case PolicyKind::kVanilla:
      return Vanilla(requests, config);
    case PolicyKind::kOracle:
      return Oracle(requests, config);
    default:
      return Serve(requests, kind, config, 0.0, IsTuned(kind));
  }
}

}  // namespace

Result<PolicyResult> RunPolicy(const Trace& trace, PolicyKind kind, const SimConfig& config) {
  return Run(Requests{trace}, kind, config);
}

Result<PolicyResult> RunPolicy(const Trace& trace, const Schedule& schedule, PolicyKind kind,
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
