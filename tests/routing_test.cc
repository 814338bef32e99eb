// Replicas and routers of the serving model (sim/serving/router.h, replica.h): one replica is
// the single engine whatever the router; round robin, session affinity and the cache-aware
// routers decide as documented (checked against brute force at every decision); determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "sim/serving/metrics.h"
#include "sim/serving/router.h"
#include "sim/serving/scheduler.h"
#include "sim/synthetic.h"
#include "token_util.h"

namespace marconi::sim::serving {
namespace {

SimConfig ConfigFor() {
  SimConfig c;
  c.model = ModelSpec::Preset("paper-7b").value();
  c.threads = 1;
  return c;
}

ServingConfig H100() {
  ServingConfig s;
  s.device = DevicePreset("H100-80GB").value();
  return s;
}

// Sessions whose turns extend their previous turn (input + output + new tokens); every input
// starts with one of `prompts` shared system prompts, so replicas differ in what they hold.
Trace SharedPromptSessions(uint64_t seed, int sessions, int turns, int prompts) {
  std::mt19937_64 rng(seed);
  const auto tokens = [&](int64_t n) { return testing::RandomTokens(rng, n); };
  std::vector<std::vector<Token>> system(static_cast<size_t>(prompts));
  for (auto& p : system) p = tokens(3000);
  Trace t;
  t.source = "shared-prompt-sessions";
  for (int s = 0; s < sessions; ++s) {
    std::vector<Token> context = system[static_cast<size_t>(s % prompts)];
    const double start = 0.2 * s;
    for (int k = 0; k < turns; ++k) {
      const std::vector<Token> more = tokens(400 + static_cast<int64_t>(rng() % 800));
      context.insert(context.end(), more.begin(), more.end());
      std::vector<Token> out = tokens(50 + static_cast<int64_t>(rng() % 100));
      t.requests.push_back({"s" + std::to_string(s), k, start + 0.5 * k, context, out, 0});
      context.insert(context.end(), out.begin(), out.end());
    }
  }
  SortByTime(&t);
  return t;
}

void ExpectSameRun(const ServingResult& a, const ServingResult& b) {
  ASSERT_EQ(a.requests.size(), b.requests.size());
  for (size_t i = 0; i < a.requests.size(); ++i) {
    const ServingRecord &x = a.requests[i], &y = b.requests[i];
    EXPECT_EQ(x.arrival, y.arrival) << i;
    EXPECT_EQ(x.admitted, y.admitted) << i;
    EXPECT_EQ(x.first_token, y.first_token) << i;
    EXPECT_EQ(x.finish, y.finish) << i;
    EXPECT_EQ(x.hit_tokens, y.hit_tokens) << i;
    EXPECT_EQ(x.replica, y.replica) << i;
  }
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.preemptions, b.preemptions);
  EXPECT_EQ(a.occupancy_integral, b.occupancy_integral);
  EXPECT_EQ(a.peak_bytes, b.peak_bytes);
  EXPECT_EQ(a.base.stats.evictions, b.base.stats.evictions);
  EXPECT_EQ(a.base.alpha, b.base.alpha);
}

TEST(Routing, TheTableNamesEveryRouterAndRefusesOthers) {
  EXPECT_EQ(RouterNames(),
            "round-robin, least-loaded, session, prefix, state, prefix-load, state-load");
  EXPECT_EQ(ParseRouters("all")->size(), Routers().size());
  EXPECT_EQ(*ParseRouters("state,prefix"), (std::vector<std::string>{"state", "prefix"}));
  const auto bad = ParseRouters("prefix,nearest");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("unknown router 'nearest' (routers: round-robin"),
            std::string::npos);
  EXPECT_FALSE(ParseRouters("state,state").ok());
  EXPECT_FALSE(ParseRouters("").ok());
  ServingConfig zero = H100();
  zero.replicas = 0;
  EXPECT_EQ(ServingBudget(zero, ConfigFor().model).status().code(), StatusCode::kInvalidArgument);
  ServingConfig unknown = H100();
  unknown.router = "random";
  EXPECT_EQ(ServingBudget(unknown, ConfigFor().model).status().code(),
            StatusCode::kInvalidArgument);
}

// One replica: every router has one choice, and the run is the single engine's exactly (under
// load, with evictions and preemptions).
TEST(Routing, OneReplicaIsTheSingleEngineWhateverTheRouter) {
  const uint64_t seed = 21;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const Trace trace = SharedPromptSessions(seed, 24, 4, 3);
  for (SystemKind kind : {SystemKind::kVanilla, SystemKind::kSglangPlus, SystemKind::kMarconi}) {
    ServingConfig serving = H100();
    serving.max_running = 6;
    serving.budget_bytes = int64_t{2} * 1000 * 1000 * 1000;
    auto single = RunServing(trace, kind, ConfigFor(), serving);
    ASSERT_TRUE(single.ok()) << single.status().message();
    if (kind == SystemKind::kMarconi) {
      EXPECT_GT(single->base.stats.evictions, 0);
    }
    for (const RouterSpec& r : Routers()) {
      SCOPED_TRACE(std::string(SystemName(kind)) + " " + r.name);
      serving.router = r.name;
      auto routed = RunServing(trace, kind, ConfigFor(), serving);
      ASSERT_TRUE(routed.ok()) << routed.status().message();
      ExpectSameRun(*single, *routed);
      for (const ServingRecord& q : routed->requests) EXPECT_EQ(q.replica, 0u);
    }
  }
}

// Round robin: the k-th arrival to replica k mod N (open loop: arrivals in trace order).
TEST(Routing, RoundRobinDistributesEvenly) {
  const Trace trace = SharedPromptSessions(5, 10, 4, 2);  // 40 requests
  ServingConfig serving = H100();
  serving.replicas = 4;
  serving.router = "round-robin";
  auto r = RunServing(trace, SystemKind::kMarconi, ConfigFor(), serving);
  ASSERT_TRUE(r.ok());
  std::map<size_t, int> per_replica;
  for (size_t i = 0; i < r->requests.size(); ++i) {
    EXPECT_EQ(r->requests[i].replica, i % 4);
    ++per_replica[r->requests[i].replica];
  }
  ASSERT_EQ(per_replica.size(), 4u);
  for (const auto& [replica, count] : per_replica) EXPECT_EQ(count, 10) << replica;
  EXPECT_DOUBLE_EQ(SummarizeServing(*r, {}).busiest_replica_share, 0.25);
}

// Session affinity: every request of a session on its first request's replica, and the sessions
// spread over the replicas (new sessions go to the least loaded).
TEST(Routing, SessionAffinityKeepsSessionsTogether) {
  const uint64_t seed = 8;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const Trace trace = SharedPromptSessions(seed, 16, 5, 2);
  for (bool closed : {false, true}) {
    ServingConfig serving = H100();
    serving.replicas = 3;
    serving.router = "session";
    serving.closed_loop = closed;
    auto r = RunServing(trace, SystemKind::kMarconi, ConfigFor(), serving);
    ASSERT_TRUE(r.ok());
    std::map<std::string, size_t> home;
    std::set<size_t> used;
    for (size_t i = 0; i < trace.requests.size(); ++i) {
      const auto [it, first] =
          home.try_emplace(trace.requests[i].session_id, r->requests[i].replica);
      EXPECT_EQ(r->requests[i].replica, it->second) << trace.requests[i].session_id;
      used.insert(r->requests[i].replica);
    }
    EXPECT_EQ(used.size(), 3u);
  }
}

// The cache-aware routers, checked at every decision by brute force over the replicas' pure
// lookups: `state` picks a replica with the longest reusable prefix, `prefix` one with the
// longest cached attention prefix; ties go to the least loaded.
TEST(Routing, CacheAwareRoutersPickTheLongestPrefixByBruteForce) {
  const uint64_t seed = 34;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const Trace trace = SharedPromptSessions(seed, 30, 5, 3);
  for (SystemKind kind : {SystemKind::kMarconi, SystemKind::kVllmPlus, SystemKind::kSglangPlus}) {
    for (const char* router : {"state", "prefix"}) {
      SCOPED_TRACE(std::string(SystemName(kind)) + " " + router);
      const bool state = std::string(router) == "state";
      ServingConfig serving = H100();
      serving.replicas = 3;
      serving.router = router;
      serving.budget_bytes = int64_t{3} * 1000 * 1000 * 1000;
      int decisions = 0, informed = 0, differing = 0;
      serving.on_route = [&](const RouteDecision& d) {
        ++decisions;
        const std::span<const Token> input = trace.requests[d.request].input;
        std::vector<int64_t> score;
        for (const ReplicaView& v : d.replicas) {
          const EngineLookup l = v.cache->Peek(input);
          score.push_back(state ? l.reusable_tokens : l.attention_hit_tokens);
        }
        const int64_t best = *std::max_element(score.begin(), score.end());
        EXPECT_EQ(score[d.chosen], best) << "request " << d.request;
        for (size_t r = 0; r < score.size(); ++r) {
          if (score[r] == best) {
            EXPECT_GE(d.replicas[r].outstanding, d.replicas[d.chosen].outstanding);
          }
        }
        informed += best > 0;
        differing += *std::min_element(score.begin(), score.end()) < best;
      };
      auto r = RunServing(trace, kind, ConfigFor(), serving);
      ASSERT_TRUE(r.ok()) << r.status().message();
      EXPECT_EQ(decisions, static_cast<int>(trace.requests.size()));
      // The check has teeth: most decisions see a hit, and many see replicas that differ.
      EXPECT_GT(informed, decisions / 2);
      EXPECT_GT(differing, decisions / 4);
      std::printf("%s %s: %d decisions, %d with a hit, %d with replicas that differ\n",
                  SystemName(kind), router, decisions, informed, differing);
    }
  }
}

// The load-weighted routers pick a replica of least cost (prefill queued + the request's past its
// overlap + active KV + the request), recomputed here from what the router saw. A prompt served
// once, then a burst of 40 requests extending its exchange: the longest-prefix routers send the
// whole burst to the one replica that has it cached, the load-weighted ones spread it.
TEST(Routing, LoadWeightedRoutersMinimizeTheCostAndDoNotHerd) {
  const uint64_t seed = 41;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const auto tokens = [&](int64_t n) { return testing::RandomTokens(rng, n); };
  const std::vector<Token> prompt = tokens(4000), answer = tokens(20);
  Trace trace;
  trace.source = "burst";
  trace.requests.push_back({"first", 0, 0.0, prompt, answer, 0});
  for (int i = 0; i < 40; ++i) {
    // The first exchange and more: its last decoded token's state is reusable.
    std::vector<Token> input = prompt;
    input.insert(input.end(), answer.begin(), answer.end());
    const std::vector<Token> more = tokens(500);
    input.insert(input.end(), more.begin(), more.end());
    trace.requests.push_back({"s" + std::to_string(i), 0, 10.0 + 0.001 * i, input, tokens(20), 0});
  }
  std::map<std::string, double> busiest;  // by router: the busiest replica's share of requests
  for (const char* router : {"prefix", "state", "prefix-load", "state-load"}) {
    SCOPED_TRACE(router);
    const bool load = std::string(router).ends_with("-load");
    const bool state = std::string(router).starts_with("state");
    ServingConfig serving = H100();
    serving.replicas = 4;
    serving.router = router;
    serving.max_running = 8;
    serving.budget_bytes = int64_t{3} * 1000 * 1000 * 1000;
    int checked = 0;
    serving.on_route = [&](const RouteDecision& d) {
      if (!load) return;
      const std::span<const Token> input = trace.requests[d.request].input;
      const int64_t n = static_cast<int64_t>(input.size());
      std::vector<int64_t> cost;
      for (const ReplicaView& v : d.replicas) {
        const EngineLookup l = v.cache->Peek(input);
        const int64_t overlap = state ? l.reusable_tokens : l.attention_hit_tokens;
        cost.push_back(v.prefill_tokens + n - overlap + v.active_tokens + n);
        EXPECT_GE(v.prefill_tokens, 0);
        EXPECT_GE(v.active_tokens, 0);
        EXPECT_EQ(v.outstanding == 0, v.prefill_tokens == 0 && v.active_tokens == 0);
      }
      EXPECT_EQ(cost[d.chosen], *std::min_element(cost.begin(), cost.end()))
          << "request " << d.request;
      ++checked;
    };
    auto r = RunServing(trace, SystemKind::kMarconi, ConfigFor(), serving);
    ASSERT_TRUE(r.ok()) << r.status().message();
    if (load) {
      EXPECT_EQ(checked, static_cast<int>(trace.requests.size()));
    }
    std::vector<int> per(4, 0);
    for (const ServingRecord& q : r->requests) ++per[q.replica];
    busiest[router] =
        *std::max_element(per.begin(), per.end()) / static_cast<double>(trace.requests.size());
    std::printf("%s: busiest replica %.0f%% of requests\n", router, 100 * busiest[router]);
  }
  EXPECT_GT(busiest["prefix"], 0.9);
  EXPECT_GT(busiest["state"], 0.9);
  EXPECT_LT(busiest["prefix-load"], 0.5);
  EXPECT_LT(busiest["state-load"], 0.5);
}

// Identical runs with several replicas, whatever the tuner's thread count, for every router.
TEST(Routing, ReplicatedRunsAreDeterministic) {
  const Trace trace = SyntheticMixed(30, 4.0, 3);
  for (const RouterSpec& router : Routers()) {
    SCOPED_TRACE(router.name);
    ServingConfig serving = H100();
    serving.replicas = 3;
    serving.router = router.name;
    serving.max_running = 8;
    serving.budget_bytes = int64_t{3} * 1000 * 1000 * 1000;
    SimConfig one = ConfigFor(), four = ConfigFor();
    four.threads = 4;
    auto a = RunServing(trace, SystemKind::kMarconi, one, serving);
    auto b = RunServing(trace, SystemKind::kMarconi, four, serving);
    ASSERT_TRUE(a.ok() && b.ok());
    ExpectSameRun(*a, *b);
    std::set<size_t> used;
    for (const ServingRecord& q : a->requests) used.insert(q.replica);
    EXPECT_GT(used.size(), 1u);
  }
}

// Little's law over the replicas together: the summed occupancy integral is the summed time in
// the system.
TEST(Routing, OccupancyAddsUpOverReplicas) {
  const Trace trace = SharedPromptSessions(2, 20, 4, 2);
  ServingConfig serving = H100();
  serving.replicas = 4;
  serving.router = "least-loaded";
  auto r = RunServing(trace, SystemKind::kMarconi, ConfigFor(), serving);
  ASSERT_TRUE(r.ok());
  double in_system = 0;
  for (const ServingRecord& q : r->requests) in_system += q.e2e_s();
  EXPECT_NEAR(r->occupancy_integral, in_system, 1e-9 * in_system);
}

}  // namespace
}  // namespace marconi::sim::serving
