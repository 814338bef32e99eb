// The serving model (sim/serving/): the no-load limit against the roofline, Little's law, the
// M/D/1 closed form, the memory budget under pressure, determinism, and its refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "sim/replay.h"
#include "sim/serving/device.h"
#include "sim/serving/metrics.h"
#include "sim/serving/scheduler.h"
#include "sim/serving/step_time.h"
#include "sim/synthetic.h"
#include "token_util.h"

namespace marconi::sim::serving {
namespace {

ModelSpec Paper7b() { return ModelSpec::Preset("paper-7b").value(); }

SimConfig ConfigFor(const ModelSpec& model) {
  SimConfig c;
  c.model = model;
  c.threads = 1;
  return c;
}

ServingConfig H100() {
  ServingConfig s;
  s.device = DevicePreset("H100-80GB").value();
  return s;
}

// Sessions of `turns` turns, each turn's input its predecessor's input and output plus new
// tokens; sessions start `session_gap` apart and turns follow `turn_gap` apart.
Trace Sessions(uint64_t seed, int sessions, int turns, int64_t first, int64_t added, int64_t output,
               double session_gap, double turn_gap) {
  std::mt19937_64 rng(seed);
  Trace t;
  t.source = "sessions";
  for (int s = 0; s < sessions; ++s) {
    std::vector<Token> context = testing::RandomTokens(rng, first);
    for (int k = 0; k < turns; ++k) {
      if (k > 0) {
        const std::vector<Token> more = testing::RandomTokens(rng, added);
        context.insert(context.end(), more.begin(), more.end());
      }
      std::vector<Token> out = testing::RandomTokens(rng, output);
      t.requests.push_back(
          {"s" + std::to_string(s), k, s * session_gap + k * turn_gap, context, out, 0});
      context.insert(context.end(), out.begin(), out.end());
    }
  }
  SortByTime(&t);
  return t;
}

TEST(Serving, WeightBytesFollowTheLayerFormulas) {
  const ModelSpec m = Paper7b();
  const double d = static_cast<double>(m.d_model());
  // 4 attention layers (4 D^2: Q, K, V, O with 32 heads of 128), 24 paper SSM (6 D^2), 28 MLP
  // (D x 14336 x 3 gated, or 8 D^2 for the paper's 4D two-matrix MLP).
  double params = 0;
  for (const LayerSpec& l : m.layers()) {
    if (std::holds_alternative<AttentionLayer>(l)) params += 4 * d * d;
    if (std::holds_alternative<PaperSsmLayer>(l)) params += 6 * d * d;
    if (const auto* mlp = std::get_if<MlpLayer>(&l)) {
      params += d * static_cast<double>(mlp->d_ff) * (mlp->gated ? 3 : 2);
    }
  }
  EXPECT_EQ(WeightBytes(m), static_cast<int64_t>(params * 2));
  EXPECT_GT(WeightBytes(m), int64_t{10} * 1000 * 1000 * 1000);  // a 7B model in BF16
  EXPECT_LT(WeightBytes(m), int64_t{16} * 1000 * 1000 * 1000);
}

// The figures docs/serving.md quotes: a 2,048-token chunk alone is compute-bound, 64 decodes at
// 10K tokens of context are memory-bound; each is the larger of its two roofline terms.
TEST(Serving, StepTimeIsTheRooflineOfTheBatch) {
  const ModelSpec m = Paper7b();
  const DeviceSpec d = DevicePreset("H100-80GB").value();
  const StepTimeModel time(m, d);
  const double kv = static_cast<double>(m.KvBytesPerToken());
  const double state = static_cast<double>(m.StateBytesPerCheckpoint());
  const double weights = static_cast<double>(WeightBytes(m));
  StepCost chunk;
  time.Add(0, 2048, &chunk);
  const double chunk_compute = m.PrefillFlops(0, 2048) / (989e12 * 0.6);
  const double chunk_memory = (weights + kv * 2048 + 2 * state) / (3.35e12 * 0.8);
  EXPECT_GT(chunk_compute, chunk_memory);
  EXPECT_NEAR(time.Seconds(chunk), chunk_compute, 1e-12);
  EXPECT_NEAR(time.Seconds(chunk), 0.0456, 0.0005);
  StepCost decodes;
  for (int i = 0; i < 64; ++i) time.Add(10000, 1, &decodes);
  const double decode_compute = 64 * m.PrefillFlops(10000, 1) / (989e12 * 0.6);
  const double decode_memory = (weights + 64 * (kv * 10001 + 2 * state)) / (3.35e12 * 0.8);
  EXPECT_LT(decode_compute, decode_memory);
  EXPECT_NEAR(time.Seconds(decodes), decode_memory, 1e-12);
  EXPECT_NEAR(time.Seconds(decodes), 0.0217, 0.0005);
  EXPECT_EQ(time.Seconds(StepCost{}), 0);
  // Chunked: one step per chunk.
  EXPECT_NEAR(
      time.PrefillSeconds(0, 4096, 2048),
      time.Seconds(chunk) +
          [&] {
            StepCost second;
            time.Add(2048, 2048, &second);
            return time.Seconds(second);
          }(),
      1e-12);
}

TEST(Serving, DevicePresetsAndSloParse) {
  for (const std::string& name : DevicePresetNames()) {
    auto d = DevicePreset(name);
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(ValidateDevice(*d).ok());
  }
  EXPECT_EQ(DevicePreset("H100-80GB")->hbm_bandwidth, 3.35e12);
  EXPECT_EQ(DevicePreset("V100").status().code(), StatusCode::kNotFound);
  auto slo = ParseSlo("ttft=2s,tpot=100ms");
  ASSERT_TRUE(slo.ok());
  EXPECT_DOUBLE_EQ(slo->ttft_s, 2.0);
  EXPECT_DOUBLE_EQ(slo->tpot_s, 0.1);
  EXPECT_DOUBLE_EQ(ParseSlo("tpot=50ms")->tpot_s, 0.05);
  EXPECT_FALSE(ParseSlo("ttft=2").ok());
  EXPECT_FALSE(ParseSlo("ttft=-1s").ok());
  EXPECT_FALSE(ParseSlo("latency=1s").ok());
}

// At a vanishing arrival rate every request is alone: no queueing, and its TTFT is exactly the
// roofline time of its chunked prefill after its hit.
TEST(Serving, NoLoadTtftIsTheRooflinePrefill) {
  const uint64_t seed = 7;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const ModelSpec model = Paper7b();
  const Trace trace = Sessions(seed, 3, 3, 3000, 700, 40, 1000.0, 100.0);
  ServingConfig serving = H100();
  serving.chunk_tokens = 1024;
  const StepTimeModel time(model, serving.device);
  for (SystemKind kind : {SystemKind::kVanilla, SystemKind::kSglangPlus, SystemKind::kMarconi}) {
    auto r = RunServing(trace, kind, ConfigFor(model), serving);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    int64_t hits = 0;
    for (const ServingRecord& q : r->requests) {
      const double expected =
          time.PrefillSeconds(q.hit_tokens, q.input_tokens - q.hit_tokens, serving.chunk_tokens);
      EXPECT_EQ(q.queue_s(), 0) << SystemName(kind) << " request " << q.index;
      EXPECT_NEAR(q.ttft_s(), expected, 1e-9 * expected) << SystemName(kind) << " " << q.index;
      hits += q.hit_tokens;
    }
    EXPECT_EQ(r->preemptions, 0);
    if (kind != SystemKind::kVanilla) {
      EXPECT_GT(hits, 0) << SystemName(kind);
    }
  }
}

// Little's law, L = lambda W, two ways: L from the engine's own event bookkeeping (exact up to
// rounding: 1e-9 relative) and from per-step samples of running + waiting requests, which miss
// arrivals for the rest of the step they arrive in (within 2%).
TEST(Serving, LittlesLawHolds) {
  const uint64_t seed = 11;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const ModelSpec model = Paper7b();
  const Trace trace = Sessions(seed, 60, 4, 2000, 400, 200, 0.5, 3.0);
  ServingConfig serving = H100();
  serving.max_running = 16;
  serving.token_budget = 2048;
  double sampled = 0;
  serving.on_step = [&](const StepSnapshot& s) {
    sampled += static_cast<double>(s.running + s.waiting) * s.seconds;
  };
  auto r = RunServing(trace, SystemKind::kMarconi, ConfigFor(model), serving);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const double horizon = r->last_finish - r->first_arrival;
  const double lambda = static_cast<double>(r->requests.size()) / horizon;
  double w = 0;
  for (const ServingRecord& q : r->requests) w += q.e2e_s();
  w /= static_cast<double>(r->requests.size());
  const double little = lambda * w;
  const double l_events = r->occupancy_integral / horizon;
  const double l_steps = sampled / horizon;
  std::printf("L (events) %.6f, L (steps) %.6f, lambda W %.6f\n", l_events, l_steps, little);
  EXPECT_GT(l_events, 1.0);  // some load, or the law is trivial
  EXPECT_NEAR(l_events, little, 1e-9 * little);
  EXPECT_NEAR(l_steps, little, 0.02 * little);
}

// One running request at a time, deterministic service (same input, one output token, one
// prefill step), Poisson arrivals: an M/D/1 queue, whose mean wait is rho / (2 mu (1 - rho)),
// at three loads. 60,000 requests each; the tolerance (5%) is several standard errors of the
// mean wait at these loads.
TEST(Serving, OneAtATimeMatchesMD1) {
  const ModelSpec model = Paper7b();
  ServingConfig serving = H100();
  serving.max_running = 1;
  const int64_t input = 512;
  const double service =
      StepTimeModel(model, serving.device).PrefillSeconds(0, input, serving.chunk_tokens);
  const std::vector<Token> tokens(static_cast<size_t>(input), 1);
  for (const auto& [rho, seed] : {std::pair{0.3, uint64_t{20261123}}, std::pair{0.6, uint64_t{2}},
                                  std::pair{0.8, uint64_t{3}}}) {
    std::printf("rho %.1f seed %llu\n", rho, static_cast<unsigned long long>(seed));
    std::mt19937_64 rng(seed);
    std::exponential_distribution<double> gap(rho / service);
    Trace trace;
    double t = 0;
    const int n = 60000;
    trace.requests.reserve(n);
    for (int i = 0; i < n; ++i) {
      t += gap(rng);
      trace.requests.push_back({"", 0, t, tokens, {2}, 0});
    }
    auto r = RunServing(trace, SystemKind::kVanilla, ConfigFor(model), serving);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    double wait = 0;
    for (const ServingRecord& q : r->requests) {
      EXPECT_NEAR(q.prefill_s(), service, 1e-12);
      wait += q.queue_s();
    }
    wait /= n;
    const double expected = rho * service / (2 * (1 - rho));
    std::printf("service %.6f s, mean wait %.6f s, M/D/1 %.6f s (%+.2f%%)\n", service, wait,
                expected, 100 * (wait / expected - 1));
    EXPECT_NEAR(wait, expected, 0.05 * expected) << "rho " << rho;
  }
}

// A budget far below the load: the cache shrinks, requests wait and are preempted, and memory
// in use never exceeds the budget at any step.
TEST(Serving, MemoryStaysWithinTheBudgetUnderPressure) {
  const uint64_t seed = 5;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const ModelSpec model = Paper7b();
  const Trace trace = Sessions(seed, 30, 3, 1500, 300, 600, 0.05, 2.0);
  for (SystemKind kind : {SystemKind::kVanilla, SystemKind::kVllmPlus, SystemKind::kSglangPlus,
                          SystemKind::kMarconi, SystemKind::kSparse}) {
    ServingConfig serving = H100();
    serving.budget_bytes = int64_t{1500} * 1000 * 1000;
    serving.max_running = 12;
    serving.token_budget = 1024;
    serving.chunk_tokens = 256;
    int64_t steps = 0, over = 0, over_limits = 0;
    serving.on_step = [&](const StepSnapshot& s) {
      ++steps;
      over += s.memory.total() > s.budget;
      over_limits += s.batch_tokens > serving.token_budget || s.running > serving.max_running;
    };
    auto r = RunServing(trace, kind, ConfigFor(model), serving);
    ASSERT_TRUE(r.ok()) << SystemName(kind) << ": " << r.status().ToString();
    EXPECT_GT(steps, 0);
    EXPECT_EQ(over, 0) << SystemName(kind);
    EXPECT_EQ(over_limits, 0) << SystemName(kind);
    EXPECT_LE(r->peak_bytes, serving.budget_bytes);
    EXPECT_GT(r->preemptions, 0) << SystemName(kind);
    EXPECT_GT(r->recomputed_tokens, 0) << SystemName(kind);
    for (const ServingRecord& q : r->requests) {
      EXPECT_LE(q.arrival, q.admitted);
      EXPECT_LT(q.admitted, q.first_token);
      EXPECT_LE(q.first_token, q.finish);
    }
  }
}

// Identical runs, whatever the number of threads of the alpha tuner's replays (the budget is small
// enough for evictions, hence tuning rounds).
TEST(Serving, ResultsAreDeterministicAndIndependentOfThreads) {
  const ModelSpec model = Paper7b();
  const Trace trace = SyntheticMixed(30, 4.0, 3);
  ServingConfig serving = H100();
  serving.max_running = 8;
  serving.budget_bytes = int64_t{3} * 1000 * 1000 * 1000;
  SimConfig one = ConfigFor(model), four = ConfigFor(model);
  four.threads = 4;
  auto a = RunServing(trace, SystemKind::kMarconi, one, serving);
  auto b = RunServing(trace, SystemKind::kMarconi, four, serving);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->requests.size(), b->requests.size());
  for (size_t i = 0; i < a->requests.size(); ++i) {
    EXPECT_EQ(a->requests[i].first_token, b->requests[i].first_token);
    EXPECT_EQ(a->requests[i].finish, b->requests[i].finish);
    EXPECT_EQ(a->requests[i].hit_tokens, b->requests[i].hit_tokens);
  }
  EXPECT_EQ(a->steps, b->steps);
  EXPECT_GT(a->base.stats.evictions, 0);
  EXPECT_FALSE(a->base.rounds.empty());
  EXPECT_EQ(a->base.stats.evictions, b->base.stats.evictions);
  EXPECT_EQ(a->base.alpha, b->base.alpha);
}

// Closed loop: a session's next turn arrives its trace gap after the previous one finished, so a
// session never has two requests in the system, and under overload its prefix is cached when its
// next turn arrives (open loop: often not yet).
TEST(Serving, ClosedLoopSessionsWaitForTheirAnswers) {
  const uint64_t seed = 13;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const ModelSpec model = Paper7b();
  const Trace trace = Sessions(seed, 40, 5, 6000, 500, 300, 0.05, 1.0);
  ServingConfig serving = H100();
  auto open = RunServing(trace, SystemKind::kMarconi, ConfigFor(model), serving);
  serving.closed_loop = true;
  auto closed = RunServing(trace, SystemKind::kMarconi, ConfigFor(model), serving);
  ASSERT_TRUE(open.ok() && closed.ok());
  std::map<std::string, const ServingRecord*> previous;
  for (size_t i = 0; i < trace.requests.size(); ++i) {
    const TraceRequest& t = trace.requests[i];
    const ServingRecord& q = closed->requests[i];
    EXPECT_EQ(open->requests[i].arrival, t.ts);
    auto it = previous.find(t.session_id);
    if (it == previous.end()) {
      EXPECT_EQ(q.arrival, t.ts);
    } else {
      const double gap = t.ts - trace.requests[it->second->index].ts;
      EXPECT_DOUBLE_EQ(q.arrival, it->second->finish + gap);
      EXPECT_GE(q.arrival, it->second->finish);
    }
    previous[t.session_id] = &q;
  }
  const double open_hit = SummarizeServing(*open, {}).token_hit_rate;
  const double closed_hit = SummarizeServing(*closed, {}).token_hit_rate;
  std::printf("token hit rate: open loop %.4f, closed loop %.4f\n", open_hit, closed_hit);
  EXPECT_GT(closed_hit, open_hit);
}

TEST(Serving, PerRequestCsvHasOneRowPerRequestAndSystem) {
  const ModelSpec model = Paper7b();
  const Trace trace = Sessions(3, 2, 2, 100, 20, 5, 10.0, 1.0);
  auto r = RunServing(trace, SystemKind::kMarconi, ConfigFor(model), H100());
  ASSERT_TRUE(r.ok());
  const std::string csv = ServingPerRequestCsv(trace, {"a", "b"}, {r->requests, r->requests});
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 2 * 4);
  EXPECT_EQ(
      csv.rfind("system,request,session_id,turn_id,input_tokens,output_tokens,hit_tokens,", 0), 0u);
  // The second turn of session s0 hits its first turn's input and output (100 + 5 tokens).
  EXPECT_NE(csv.find("a,1,s0,1,125,5,105,"), std::string::npos) << csv;
}

// Budgets that barely hold the longest request: when a request alone does not fit because of
// its own pinned hit path (block checkpointing keeps a state per block on it), it gives up the
// hit and is served; preempted and displaced requests give back their leases, so nothing else
// pins the cache while nothing runs. Every request is served by every system.
TEST(Serving, TightBudgetsStillServeEveryRequest) {
  const ModelSpec model = Paper7b();
  const Trace trace = Retime(SyntheticMixed(30, 1.0, 1), 5.0);
  for (const int64_t budget : {int64_t{1400} * 1000 * 1000, int64_t{1500} * 1000 * 1000}) {
    for (const bool closed : {false, true}) {
      for (SystemKind kind : {SystemKind::kVanilla, SystemKind::kVllmPlus, SystemKind::kSglangPlus,
                              SystemKind::kMarconi, SystemKind::kSparse}) {
        ServingConfig serving = H100();
        serving.budget_bytes = budget;
        serving.closed_loop = closed;
        serving.max_running = 32;
        serving.chunk_tokens = serving.token_budget = 100000;
        auto r = RunServing(trace, kind, ConfigFor(model), serving);
        ASSERT_TRUE(r.ok()) << SystemName(kind) << " budget " << budget << " closed " << closed
                            << ": " << r.status().ToString();
        EXPECT_LE(r->peak_bytes, budget);
      }
    }
  }
}

// An engine computes at least the last input token (its logits give the first output token):
// a request whose whole input is cached with a state at its end (block checkpointing, an input
// of a whole number of blocks, seen before) still prefills one token.
TEST(Serving, AWholeInputHitStillComputesTheLastToken) {
  const ModelSpec model = Paper7b();
  Trace trace;
  std::vector<Token> input(64);
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<Token>(i + 1);
  trace.requests.push_back({"a", 0, 0.0, input, {100, 101}, 0});
  trace.requests.push_back({"b", 0, 10.0, input, {102}, 0});
  auto r = RunServing(trace, SystemKind::kVllmPlus, ConfigFor(model), H100());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->requests[1].hit_tokens, 32);  // the state at 64 is not a resume point
  EXPECT_GT(r->requests[1].ttft_s(), 0);
}

// A long prefill hands each chunk's captured states to the cache as it runs (InsertChunk): a
// request sharing its prefix, admitted while it is still prefilling, resumes from the chunks
// already handed over. Block checkpointing (vllm+) captures a state every 32 tokens.
TEST(Serving, PrefillChunksReachTheCacheWhileTheRequestRuns) {
  const ModelSpec model = Paper7b();
  std::mt19937_64 rng(3);
  const std::vector<Token> shared = testing::RandomTokens(rng, 4096);
  std::vector<Token> b_input = shared;
  const std::vector<Token> tail = testing::RandomTokens(rng, 100);
  b_input.insert(b_input.end(), tail.begin(), tail.end());
  ServingConfig serving = H100();
  serving.chunk_tokens = 512;
  serving.token_budget = 1024;
  const StepTimeModel time(model, serving.device);
  // B arrives after A's first four chunks (A alone until then: one chunk per step).
  const double b_arrival = time.PrefillSeconds(0, 4 * 512, 512) + 1e-6;
  Trace trace;
  trace.requests.push_back({"a", 0, 0.0, shared, testing::RandomTokens(rng, 4), 0});
  trace.requests.push_back({"b", 0, b_arrival, b_input, testing::RandomTokens(rng, 4), 0});
  auto r = RunServing(trace, SystemKind::kVllmPlus, ConfigFor(model), serving);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ServingRecord &a = r->requests[0], &b = r->requests[1];
  EXPECT_LT(b.admitted, a.first_token);  // B ran while A was still prefilling
  EXPECT_GE(b.hit_tokens, 4 * 512);      // and resumed from what A had handed over
  EXPECT_LT(b.hit_tokens, 4096);         // not from what A had yet to compute
  EXPECT_EQ(b.hit_tokens % 32, 0);       // a block checkpoint
  EXPECT_EQ(a.hit_tokens, 0);
}

// The oracle serves the trace once per alpha of the grid and keeps the best token hit rate.
TEST(Serving, OracleKeepsTheBestAlphaOfItsGrid) {
  const ModelSpec model = Paper7b();
  const Trace trace = SyntheticMixed(30, 4.0, 3);
  ServingConfig serving = H100();
  serving.max_running = 8;
  serving.budget_bytes = int64_t{3} * 1000 * 1000 * 1000;
  SimConfig config = ConfigFor(model);
  config.tuner.grid = {1.0, 0.0, 2.0};  // unsorted on purpose
  auto r = RunServing(trace, SystemKind::kOracle, config, serving);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->base.rounds.size(), 1u);
  const TuningRound& round = r->base.rounds[0];
  EXPECT_EQ(round.alphas, (std::vector<double>{0.0, 1.0, 2.0}));
  ASSERT_EQ(round.objective.size(), 3u);
  const double best = *std::max_element(round.objective.begin(), round.objective.end());
  EXPECT_EQ(SummarizeServing(*r, {}).token_hit_rate, best);
  EXPECT_EQ(r->base.alpha, round.chosen_alpha);
  const size_t chosen =
      static_cast<size_t>(std::find(round.alphas.begin(), round.alphas.end(), round.chosen_alpha) -
                          round.alphas.begin());
  EXPECT_EQ(round.objective[chosen], best);
  for (size_t i = 0; i < chosen; ++i) EXPECT_LT(round.objective[i], best);  // ties: smaller alpha
}

TEST(Serving, RefusesWhatItCannotServe) {
  const ModelSpec model = Paper7b();
  const Trace trace = SyntheticMixed(2, 1.0, 1);
  // An engine that cannot be built with the budget (fewer state slots than one running request
  // holds): an error.
  ServingConfig small = H100();
  small.budget_bytes = model.StateBytesPerCheckpoint();
  const auto sglang = RunServing(trace, SystemKind::kSglang, ConfigFor(model), small);
  EXPECT_EQ(sglang.status().code(), StatusCode::kInvalidArgument) << sglang.status().ToString();
  // Requests that can never run (longer than llama.cpp's slot context; a whole sequence over the
  // budget) are rejected, each answered at its admission, and the run goes on.
  small.budget_bytes = 2 * model.StateBytesPerCheckpoint() + 100 * model.KvBytesPerToken();
  ServingConfig tiny = H100();
  // Room for a checkpoint and 100 tokens of KV: the synthetic requests are longer.
  tiny.budget_bytes = model.StateBytesPerCheckpoint() + 100 * model.KvBytesPerToken();
  for (const auto& [kind, serving] :
       {std::pair{SystemKind::kLlamacpp, small}, std::pair{SystemKind::kMarconi, tiny}}) {
    SCOPED_TRACE(SystemName(kind));
    auto r = RunServing(trace, kind, ConfigFor(model), serving);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->rejected, static_cast<int64_t>(trace.requests.size()));
    for (const ServingRecord& q : r->requests) {
      EXPECT_TRUE(q.rejected);
      EXPECT_EQ(q.hit_tokens, 0);
      EXPECT_EQ(q.ttft_s(), 0);  // answered at its arrival: nothing was queued
    }
    const ServingSummary s = SummarizeServing(*r, Slo{});
    EXPECT_EQ(s.rejected, s.requests);
    EXPECT_EQ(s.slo_attainment, 0);
    EXPECT_EQ(s.goodput_req_s, 0);
    EXPECT_EQ(r->steps, 0);
  }
  ServingConfig bad = H100();
  bad.token_budget = 10;
  bad.max_running = 20;
  EXPECT_EQ(RunServing(trace, SystemKind::kMarconi, ConfigFor(model), bad).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace marconi::sim::serving
