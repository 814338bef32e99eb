// The registry of compared systems: every row is reachable by name, runs, reports its effective
// parameters, and --set reaches the cache it builds.
#include "sim/systems.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "sim/replay.h"
#include "sim/synthetic.h"

namespace marconi::sim {
namespace {

SimConfig SmallConfig() {
  SimConfig config;
  config.model = ModelSpec::Preset("nemotron-h-8b").value();
  config.capacity_bytes = 1'000'000'000;
  config.threads = 1;
  return config;
}

TEST(Systems, EveryRowIsNamedOnceAndParsesBack) {
  std::set<std::string> names;
  std::set<SystemKind> kinds;
  for (const SystemSpec& s : Systems()) {
    EXPECT_TRUE(names.insert(std::string(s.name)).second) << s.name;
    EXPECT_TRUE(kinds.insert(s.kind).second) << s.name;
    EXPECT_EQ(SpecOf(s.kind).name, s.name);
    EXPECT_EQ(std::string(SystemName(s.kind)), s.name);
    EXPECT_FALSE(s.help.empty()) << s.name;
    auto parsed = ParseSystems(std::string(s.name));
    ASSERT_TRUE(parsed.ok()) << s.name;
    EXPECT_EQ(*parsed, std::vector<SystemKind>{s.kind});
    EXPECT_NE(SystemNames().find(std::string(s.name)), std::string::npos);
    // No cache means no eviction and no tuning; a tuned system evicts by FLOP-aware utility.
    EXPECT_EQ(s.admission == Admission::kNone, s.eviction == Eviction::kNone) << s.name;
    // An engine emulation is built by its factory and by nothing else.
    EXPECT_EQ(s.engine != nullptr, s.admission == Admission::kEngine) << s.name;
    EXPECT_EQ(s.engine != nullptr, s.eviction == Eviction::kEngine) << s.name;
    // Marconi's eviction in an engine is chosen in hindsight like the oracle.
    if (s.tuning != Tuning::kNone && s.engine == nullptr) {
      EXPECT_EQ(s.eviction, Eviction::kFlopAware) << s.name;
    }
  }
  EXPECT_EQ(ParseSystems("all")->size(), Systems().size());
}

TEST(Systems, TheDefaultsAreVanillaTheEnginesTheBaselinesMarconiAndTheOracle) {
  auto parsed = ParseSystems(DefaultSystemNames());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  std::set<SystemKind> defaults(parsed->begin(), parsed->end());
  for (const SystemSpec& s : Systems()) {
    EXPECT_EQ(defaults.count(s.kind), s.shown_by_default ? 1u : 0u) << s.name;
  }
  for (SystemKind k : {SystemKind::kVanilla, SystemKind::kLlamacpp, SystemKind::kTrtllm,
                       SystemKind::kVllm, SystemKind::kSglang, SystemKind::kVllmPlus,
                       SystemKind::kSglangPlus, SystemKind::kMarconi, SystemKind::kOracle}) {
    EXPECT_EQ(defaults.count(k), 1u) << SystemName(k);
  }
  EXPECT_EQ(defaults.count(SystemKind::kMarconiOneShot), 0u);
}

TEST(Systems, UnknownNamesAreRefusedWithTheList) {
  auto r = ParseSystems("sglang+,lru");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown system 'lru'"), std::string::npos);
  EXPECT_NE(r.status().message().find(SystemNames()), std::string::npos);
  EXPECT_FALSE(ParseSystems("").ok());
  EXPECT_EQ(ParseSystems("marconi,marconi")->size(), 1u);
}

TEST(Systems, EverySystemRunsAndReportsItsParameters) {
  const Trace trace = SyntheticMixed(12, 2.0, 5);
  SimConfig config = SmallConfig();
  for (const SystemSpec& s : Systems()) {
    SCOPED_TRACE(std::string(s.name));
    auto r = RunSystem(trace, s.kind, config);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->system, s.name);
    EXPECT_EQ(r->records.size(), trace.requests.size());
    ASSERT_EQ(r->params.size(), s.params.size());
    for (const SystemParam& p : s.params) {
      EXPECT_EQ(r->params.at(std::string(p.name)), p.default_value);
    }
    if (s.admission == Admission::kNone) {
      EXPECT_EQ(r->stats.hit_tokens, 0);
    }
    // trtllm's defaults configure no snapshot point: TensorRT-LLM then reuses nothing.
    if (s.admission != Admission::kNone && s.kind != SystemKind::kTrtllm) {
      EXPECT_GT(r->stats.hit_tokens, 0);
    }
    if (s.tuning == Tuning::kHindsight) {
      EXPECT_EQ(r->rounds.size(), 1u);
    }
    // The hit-loss metrics: a request never skips more than the KV it matched.
    for (const RequestRecord& rec : r->records) {
      EXPECT_LE(rec.hit_tokens, rec.attention_hit_tokens) << rec.index;
      EXPECT_LE(rec.attention_hit_tokens, rec.input_tokens) << rec.index;
    }
    EXPECT_EQ(s.engine != nullptr, !r->derived.empty());
    if (s.tuning == Tuning::kNone) {
      EXPECT_TRUE(r->rounds.empty());
    }
    EXPECT_EQ(IsTuned(s.kind), s.tuning == Tuning::kOnline || s.tuning == Tuning::kOneShot);
  }
}

TEST(Systems, SetReachesTheCacheAndIsValidated) {
  const Trace trace = SyntheticMixed(12, 2.0, 5);
  SimConfig config = SmallConfig();
  config.capacity_bytes = PrefixCacheConfig::kUnlimited;
  const int64_t by_default = RunSystem(trace, SystemKind::kVllmPlus, config)->stats.hit_tokens;
  ASSERT_TRUE(ParseSet("vllm+.block_size=1024", &config.params).ok());
  auto coarse = RunSystem(trace, SystemKind::kVllmPlus, config).value();
  EXPECT_EQ(coarse.params.at("block_size"), 1024);
  EXPECT_LT(coarse.stats.hit_tokens, by_default);  // coarser blocks: fewer reusable tokens
  for (const RequestRecord& rec : coarse.records) EXPECT_EQ(rec.hit_tokens % 1024, 0);

  SystemOverrides o;
  EXPECT_FALSE(ParseSet("vllm+.block_size", &o).ok());
  EXPECT_FALSE(ParseSet("block_size=3", &o).ok());
  EXPECT_FALSE(ParseSet("nosuch.block_size=3", &o).ok());
  EXPECT_FALSE(ParseSet("vllm+.nosuch=3", &o).ok());
  EXPECT_FALSE(ParseSet("vllm+.block_size=0", &o).ok());
  EXPECT_FALSE(ParseSet("vllm+.block_size=2.5", &o).ok());
  EXPECT_FALSE(ParseSet("vllm+.block_size=nan", &o).ok());
  EXPECT_FALSE(ParseSet("vllm+.block_size=16x", &o).ok());
  EXPECT_FALSE(ParseSet("sglang+.block_size=16", &o).ok());  // sglang+ has no parameters
  EXPECT_TRUE(o.empty());
  EXPECT_EQ(ParseSet("sparse.budget=4", &o).value(), SystemKind::kSparse);
  EXPECT_EQ(Param(SystemKind::kSparse, "budget", o), 4);
  EXPECT_EQ(Param(SystemKind::kSparse, "chunk_tokens", o), 64);
}

// Marconi's eviction in an engine: alpha -1 picks the grid's best in hindsight, never below the
// engine itself (alpha 0 is its LRU order); a fixed alpha runs once.
TEST(Systems, MarconiInAnEngineIsTunedInHindsightOrFixed) {
  const Trace trace = SyntheticMixed(16, 2.0, 9);
  SimConfig config = SmallConfig();
  config.capacity_bytes = 2'000'000'000;  // sglang needs room for 3 state slots of 104 MB
  config.tuner.grid = {0.0, 0.5, 2.0};
  for (auto [variant, engine] : {std::pair{SystemKind::kSglangMarconi, SystemKind::kSglang},
                                 std::pair{SystemKind::kVllmMarconi, SystemKind::kVllm}}) {
    SCOPED_TRACE(SystemName(variant));
    auto plain_run = RunSystem(trace, engine, config);
    ASSERT_TRUE(plain_run.ok()) << plain_run.status().ToString();
    const SystemResult plain = std::move(plain_run).value();
    auto best_run = RunSystem(trace, variant, config);
    ASSERT_TRUE(best_run.ok()) << best_run.status().ToString();
    const SystemResult best = std::move(best_run).value();
    ASSERT_EQ(best.rounds.size(), 1u);
    EXPECT_EQ(best.rounds[0].alphas, config.tuner.grid);
    EXPECT_EQ(best.params.at("alpha"), -1);
    EXPECT_GE(best.stats.hit_tokens, plain.stats.hit_tokens);
    SimConfig zero = config;
    ASSERT_TRUE(ParseSet(std::string(SystemName(variant)) + ".alpha=0", &zero.params).ok());
    const auto at_zero = RunSystem(trace, variant, zero).value();
    EXPECT_TRUE(at_zero.rounds.empty());
    EXPECT_EQ(at_zero.alpha, 0);
    EXPECT_EQ(at_zero.stats.hit_tokens, plain.stats.hit_tokens);
  }
}

}  // namespace
}  // namespace marconi::sim
