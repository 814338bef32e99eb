// The engine emulations under load (sim/serving/served_engine.cc and EngineCache's request
// protocol): at a vanishing arrival rate a serving run finds, request by request, what the
// unloaded replay finds at the same capacity; under pressure the engine's own memory stays
// within the budget, every request is served, and runs are deterministic.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>

#include "sim/replay.h"
#include "sim/serving/device.h"
#include "sim/serving/scheduler.h"
#include "sim/systems.h"
#include "token_util.h"

namespace marconi::sim::serving {
namespace {

// Sessions of `turns` turns (each turn's input is its predecessor's input and output plus new
// tokens) sharing one of two system prompts; sessions start `session_gap` apart, turns follow
// `turn_gap` apart.
Trace Sessions(uint64_t seed, int sessions, int turns, int64_t added, int64_t output,
               double session_gap, double turn_gap) {
  std::mt19937_64 rng(seed);
  const std::vector<std::vector<Token>> prompts = {testing::RandomTokens(rng, 700),
                                                   testing::RandomTokens(rng, 300)};
  Trace t;
  t.source = "sessions";
  for (int s = 0; s < sessions; ++s) {
    std::vector<Token> context = prompts[static_cast<size_t>(s) % prompts.size()];
    for (int k = 0; k < turns; ++k) {
      const std::vector<Token> more =
          testing::RandomTokens(rng, added + static_cast<int64_t>(rng() % 64));
      context.insert(context.end(), more.begin(), more.end());
      std::vector<Token> out =
          testing::RandomTokens(rng, output + static_cast<int64_t>(rng() % 40));
      t.requests.push_back(
          {"s" + std::to_string(s), k, s * session_gap + k * turn_gap, context, out, 0});
      context.insert(context.end(), out.begin(), out.end());
    }
  }
  SortByTime(&t);
  return t;
}

SimConfig ConfigFor(std::string_view model) {
  SimConfig c;
  c.model = ModelSpec::Preset(model).value();
  c.threads = 1;
  // TensorRT-LLM's defaults reuse nothing: give it a snapshot rule so that it has hits to match.
  c.params["trtllm.snapshot_interval"] = 128;
  return c;
}

std::vector<SystemKind> EngineRows() {
  std::vector<SystemKind> out;
  for (const SystemSpec& spec : Systems()) {
    if (spec.engine != nullptr) out.push_back(spec.kind);
  }
  return out;
}

// Requests far apart (each alone in the engine) and prefills in one chunk each (inputs shorter
// than every engine's own chunk): the serving run's lookups are the replay's, request by
// request, at an ample capacity and at one small enough to evict.
TEST(ServingEngines, AtVanishingLoadEachRequestFindsWhatTheReplayFinds) {
  const uint64_t seed = 21;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const Trace trace = Sessions(seed, 8, 3, 250, 60, 1000.0, 100.0);
  for (const char* model : {"nemotron-h-8b", "paper-7b"}) {
    const SimConfig base = ConfigFor(model);
    const int64_t kv = base.model.KvBytesPerToken();
    for (int64_t budget : {int64_t{40} * 1000 * 1000 * 1000,
                           3000 * kv + int64_t{12} * 4 * base.model.StateBytesPerCheckpoint()}) {
      ServingConfig serving;
      serving.device = DevicePreset("H100-80GB").value();
      serving.budget_bytes = budget;
      serving.chunk_tokens = 1 << 16;
      serving.token_budget = 1 << 16;
      SimConfig replay = base;
      replay.capacity_bytes = budget;
      for (SystemKind kind : EngineRows()) {
        SCOPED_TRACE(std::string(model) + " " + SystemName(kind) + " budget " +
                     std::to_string(budget));
        auto unloaded = RunSystem(trace, kind, replay);
        auto served = RunServing(trace, kind, base, serving);
        if (!unloaded.ok()) {
          // An engine that cannot be built at this capacity refuses both ways alike.
          EXPECT_EQ(served.status().code(), unloaded.status().code());
          std::printf("%s %s at %lld bytes: not built (%s)\n", model, SystemName(kind),
                      static_cast<long long>(budget), unloaded.status().message().c_str());
          continue;
        }
        ASSERT_TRUE(served.ok()) << served.status().ToString();
        ASSERT_EQ(served->requests.size(), unloaded->records.size());
        int64_t hits = 0;
        for (size_t i = 0; i < served->requests.size(); ++i) {
          const ServingRecord& q = served->requests[i];
          // A request the engine can never hold: the replay serves it uncached, a serving run
          // rejects it (docs/serving.md). Neither changes the engine's content.
          if (q.rejected) continue;
          EXPECT_EQ(q.hit_tokens, unloaded->records[i].hit_tokens) << "request " << i;
          EXPECT_EQ(q.attention_hit_tokens, unloaded->records[i].attention_hit_tokens)
              << "request " << i;
          EXPECT_EQ(q.preemptions, 0);
          hits += q.hit_tokens;
        }
        // The replay counts a refused request's lookup; the serving model rejects it unseen.
        if (served->rejected == 0) {
          EXPECT_EQ(served->base.stats.hit_tokens, unloaded->stats.hit_tokens);
        }
        EXPECT_EQ(served->base.stats.evictions, unloaded->stats.evictions);
        EXPECT_EQ(served->base.derived, unloaded->derived);
        if (kind != SystemKind::kLlamacpp) {
          EXPECT_GT(hits, 0);  // the comparison is not vacuous
        }
        std::printf("%s %s at %lld bytes: %lld hit tokens, %lld evictions, %lld rejected\n", model,
                    SystemName(kind), static_cast<long long>(budget), static_cast<long long>(hits),
                    static_cast<long long>(unloaded->stats.evictions),
                    static_cast<long long>(served->rejected));
      }
    }
  }
}

// Many requests at once in a small budget: the engine's memory (its running requests' KV and
// slots and its cached content, in its own units) never exceeds the budget, the step limits
// hold, every request is served in order of its life's events, and a second run is identical.
// At 2 GB requests run together (llama.cpp's one slot aside; SGLang's state slots bound it); at
// 700 MB decodes outgrow the memory and preempt.
TEST(ServingEngines, UnderPressureMemoryStaysWithinTheBudgetAndRunsRepeat) {
  const uint64_t seed = 8;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const Trace trace = Sessions(seed, 24, 3, 400, 300, 0.02, 0.5);
  const SimConfig config = ConfigFor("nemotron-h-8b");
  int64_t preemptions = 0;
  for (int64_t megabytes : {2000, 700}) {
    for (SystemKind kind : EngineRows()) {
      SCOPED_TRACE(std::string(SystemName(kind)) + " " + std::to_string(megabytes) + " MB");
      ServingConfig serving;
      serving.device = DevicePreset("H100-80GB").value();
      serving.budget_bytes = megabytes * 1000 * 1000;
      serving.max_running = 16;
      serving.token_budget = 1024;
      serving.chunk_tokens = 256;
      int64_t steps = 0, over = 0, over_limits = 0, most_running = 0;
      serving.on_step = [&](const StepSnapshot& s) {
        ++steps;
        over += s.memory.total() > s.budget;
        over_limits += s.batch_tokens > serving.token_budget || s.running > serving.max_running;
        most_running = std::max(most_running, s.running);
      };
      auto r = RunServing(trace, kind, config, serving);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_GT(steps, 0);
      EXPECT_EQ(over, 0);
      EXPECT_EQ(over_limits, 0);
      EXPECT_LE(r->peak_bytes, serving.budget_bytes);
      if (kind == SystemKind::kLlamacpp) {
        EXPECT_EQ(most_running, 1);  // its one slot
      } else if (megabytes == 2000) {
        EXPECT_GT(most_running, 1);  // requests did run together
      }
      preemptions += r->preemptions;
      std::printf("%s at %lld MB: at most %lld running, %lld preemptions, peak %lld bytes\n",
                  SystemName(kind), static_cast<long long>(megabytes),
                  static_cast<long long>(most_running), static_cast<long long>(r->preemptions),
                  static_cast<long long>(r->peak_bytes));
      int64_t served = 0;
      for (const ServingRecord& q : r->requests) {
        served += q.finish > 0;
        EXPECT_LE(q.arrival, q.admitted);
        EXPECT_LT(q.admitted, q.first_token);
        EXPECT_LE(q.first_token, q.finish);
        EXPECT_LE(q.hit_tokens, q.attention_hit_tokens);
        EXPECT_LT(q.hit_tokens, q.input_tokens);
      }
      EXPECT_EQ(served, static_cast<int64_t>(trace.requests.size()));
      serving.on_step = nullptr;
      auto again = RunServing(trace, kind, config, serving);
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(again->steps, r->steps);
      EXPECT_EQ(again->preemptions, r->preemptions);
      for (size_t i = 0; i < r->requests.size(); ++i) {
        EXPECT_EQ(again->requests[i].finish, r->requests[i].finish);
        EXPECT_EQ(again->requests[i].hit_tokens, r->requests[i].hit_tokens);
      }
    }
  }
  EXPECT_GT(preemptions, 0);  // the small budget did preempt
}

}  // namespace
}  // namespace marconi::sim::serving
