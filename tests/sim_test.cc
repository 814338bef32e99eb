// The simulator: golden traces with hand-computed hit rates, the oracle property, the policies'
// order, TTFT models, sizes, re-timing, and the reports.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "sim/replay.h"
#include "sim/report.h"
#include "sim/simulate.h"
#include "sim/synthetic.h"
#include "sim/trace_stats.h"
#include "test_util.h"

namespace marconi::sim {
namespace {

std::vector<Token> Range(Token from, Token to) {  // [from, to]
  std::vector<Token> v;
  for (Token t = from; t <= to; ++t) v.push_back(t);
  return v;
}

std::vector<Token> Cat(std::vector<Token> a, const std::vector<Token>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A0 = [1..10] -> [11, 12]; A1 = A0 + out + [13, 14] -> [15]; B0 = [1..5, 50, 51] -> [52];
// C0 = [1..5, 60].
Trace Golden() {
  Trace t;
  t.source = "golden";
  t.requests.push_back({"A", 0, 0.0, Range(1, 10), {11, 12}, 1});
  t.requests.push_back({"A", 1, 1.0, Range(1, 14), {15}, 2});
  t.requests.push_back({"B", 0, 2.0, Cat(Range(1, 5), {50, 51}), {52}, 3});
  t.requests.push_back({"C", 0, 3.0, Cat(Range(1, 5), {60}), {}, 4});
  return t;
}

SimConfig TinyConfig() {
  SimConfig c;
  c.model = marconi::testing::TinyModel();
  return c;
}

std::vector<int64_t> Hits(const SystemResult& r) {
  std::vector<int64_t> h;
  for (const auto& rec : r.records) h.push_back(rec.hit_tokens);
  return h;
}

TEST(Sim, GoldenTraceHandComputedHitRates) {
  const Trace trace = Golden();
  SimConfig config = TinyConfig();
  // SGLang+: A1 resumes after A0's last token (12); B0 discovers the branch at 5 and
  // checkpoints it; C0 (3rd occurrence of [1..5]) hits it.
  auto sglang = RunSystem(trace, SystemKind::kSglangPlus, config).value();
  EXPECT_EQ(Hits(sglang), (std::vector<int64_t>{0, 12, 0, 5}));
  EXPECT_DOUBLE_EQ(Summarize(sglang).token_hit_rate, 17.0 / 37.0);
  EXPECT_DOUBLE_EQ(Summarize(sglang).request_hit_rate, 0.5);
  // vLLM+ with 4-token blocks: states at 4, 8, 12 from A0; B0 and C0 resume at 4.
  config.params["vllm+.block_size"] = 4;
  auto vllm = RunSystem(trace, SystemKind::kVllmPlus, config).value();
  EXPECT_EQ(Hits(vllm), (std::vector<int64_t>{0, 12, 4, 4}));
  // With 32-token blocks nothing of this short trace is ever cached.
  config.params["vllm+.block_size"] = 32;
  EXPECT_EQ(Hits(RunSystem(trace, SystemKind::kVllmPlus, config).value()),
            (std::vector<int64_t>{0, 0, 0, 0}));
  auto vanilla = RunSystem(trace, SystemKind::kVanilla, config).value();
  EXPECT_EQ(Summarize(vanilla).hit_tokens, 0);
  EXPECT_EQ(Summarize(vanilla).input_tokens, 37);
  EXPECT_DOUBLE_EQ(vanilla.records[0].ttft_ms, 17.8 + 0.05296 * 10);
  EXPECT_DOUBLE_EQ(sglang.records[1].ttft_ms, 17.8 + 0.05296 * 2);
}

TEST(Sim, TraceStatsOfTheGoldenTrace) {
  // Longest prefix shared with an earlier input + output: A1 12 (A0 + out = [1..12]),
  // B0 5, C0 5; A0 nothing.
  const TraceStats st = ComputeTraceStats(Golden()).value();
  EXPECT_EQ(st.requests, 4);
  EXPECT_EQ(st.sessions, 3);
  EXPECT_EQ(st.input_tokens, 37);
  EXPECT_EQ(st.output_tokens, 4);
  EXPECT_EQ(st.optimal_hit_tokens, 12 + 5 + 5);
  EXPECT_DOUBLE_EQ(st.optimal_hit_rate, 22.0 / 37.0);
  EXPECT_EQ(st.overlap_depths[0].second, 1);  // A0: no overlap
  EXPECT_EQ(st.overlap_depths[1].second, 3);  // 1-1K
  EXPECT_NE(FormatTraceStats(st, "golden").find("optimal token hit rate 59.46%"),
            std::string::npos);
}

TEST(Sim, BlockSizeOneWithUnboundedCacheReachesTheOracleHitRate) {
  auto rng = marconi::testing::SeededRng(41);
  Trace trace;
  std::vector<std::vector<Token>> seen;  // earlier requests' input + output
  for (int i = 0; i < 60; ++i) {
    TraceRequest r;
    r.session_id = std::to_string(i);
    r.ts = i;
    if (!seen.empty() && marconi::testing::Uniform(rng, 0, 2) > 0) {
      const auto& base = seen[static_cast<size_t>(
          marconi::testing::Uniform(rng, 0, static_cast<int64_t>(seen.size()) - 1))];
      r.input.assign(base.begin(), base.begin() + marconi::testing::Uniform(
                                                      rng, 1, static_cast<int64_t>(base.size())));
    }
    for (int64_t k = marconi::testing::Uniform(rng, 1, 20); k > 0; --k) {
      r.input.push_back(static_cast<Token>(marconi::testing::Uniform(rng, 0, 3)));
    }
    for (int64_t k = marconi::testing::Uniform(rng, 0, 8); k > 0; --k) {
      r.output.push_back(static_cast<Token>(marconi::testing::Uniform(rng, 0, 3)));
    }
    seen.push_back(Cat(r.input, r.output));
    trace.requests.push_back(std::move(r));
  }
  int64_t oracle = 0;
  for (size_t i = 0; i < trace.requests.size(); ++i) {
    int64_t best = 0;
    for (size_t j = 0; j < i; ++j) {
      int64_t l = 0;
      const auto& q = trace.requests[i].input;
      while (l < static_cast<int64_t>(std::min(q.size(), seen[j].size())) &&
             q[static_cast<size_t>(l)] == seen[j][static_cast<size_t>(l)]) {
        ++l;
      }
      best = std::max(best, l);
    }
    oracle += best;
  }
  SimConfig config = TinyConfig();
  config.params["vllm+.block_size"] = 1;
  auto r = RunSystem(trace, SystemKind::kVllmPlus, config).value();
  EXPECT_EQ(r.stats.hit_tokens, oracle);
  EXPECT_GT(oracle, 0);
}

TEST(Sim, PoliciesKeepTheirOrderOnAContendedMixedWorkload) {
  // Long agent contexts compete with chat sessions for a 5 GB cache of the paper's 7B model.
  const Trace trace = SyntheticMixed(80, 1.0, 1);
  SimConfig config;
  config.model = ModelSpec::Preset("paper-7b").value();
  config.capacity_bytes = 5'000'000'000;
  config.threads = 2;
  std::map<std::string, double> hit;
  const std::vector<SystemKind> all = ParseSystems("all").value();
  for (SystemKind k : all) {
    auto r = RunSystem(trace, k, config);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    hit[r->system] = r->stats.token_hit_rate();
    if (k == SystemKind::kOracle) {
      ASSERT_EQ(r->rounds.size(), 1u);
      for (double o : r->rounds[0].objective) EXPECT_LE(o, r->stats.token_hit_rate());
    }
  }
  EXPECT_EQ(hit["vanilla"], 0.0);
  EXPECT_GT(hit["vllm+"], hit["vanilla"]);
  EXPECT_GT(hit["sglang+"], 3 * hit["vllm+"]);  // judicious admission
  EXPECT_GT(hit["marconi"], hit["sglang+"]);    // FLOP-aware eviction
  EXPECT_GE(hit["oracle"], hit["sglang+"]);
  // The paper's one-shot tuning follows the first window only; not far below SGLang+ here.
  EXPECT_GE(hit["marconi-oneshot"], 0.9 * hit["sglang+"]);
}

TEST(Sim, DeterministicAcrossRunsAndThreadCounts) {
  const Trace trace = SyntheticMixed(30, 2.0, 3);
  SimConfig config;
  config.model = ModelSpec::Preset("nemotron-h-8b").value();
  config.capacity_bytes = 2'000'000'000;
  std::vector<Summary> runs;
  for (int threads : {1, 2}) {
    config.threads = threads;
    std::vector<Summary> rows;
    for (SystemKind k : {SystemKind::kMarconi, SystemKind::kOracle}) {
      rows.push_back(Summarize(RunSystem(trace, k, config).value()));
    }
    runs.push_back(rows[0]);
    runs.push_back(rows[1]);
  }
  const ReportContext ctx{"t", "m", 1, "x", 0};
  EXPECT_EQ(SummaryJson({runs[0], runs[1]}, ctx), SummaryJson({runs[2], runs[3]}, ctx));
}

TEST(Sim, TtftModels) {
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  const std::string path = ::testing::TempDir() + "/profile.csv";
  {
    std::ofstream f(path);
    f << "prefill_tokens,ttft_ms\n100,20\n200,30\n200,32\n400,50\n";
  }
  auto fit = TtftModel::FromProfileCsv(path, true).value();
  auto interp = TtftModel::FromProfileCsv(path, false).value();
  EXPECT_NEAR(interp.Ms(model, 0, 150), 25.5, 1e-9);  // between 20 and the mean 31 at 200
  EXPECT_NEAR(interp.Ms(model, 0, 300), 40.5, 1e-9);
  EXPECT_GT(fit.Ms(model, 0, 400), fit.Ms(model, 0, 100));
  {
    std::ofstream f(path);
    f << "prefill_tokens,ttft_ms\n100,20\nfoo,bar\n";
  }
  auto bad = TtftModel::FromProfileCsv(path, true);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("profile.csv:3"), std::string::npos);
  auto roof = TtftModel::Roofline(1e15, 0.5, 0).value();
  EXPECT_DOUBLE_EQ(roof.Ms(model, 0, 1000), model.PrefillFlops(0, 1000) / (0.5e15 / 1000));
  EXPECT_FALSE(TtftModel::Roofline(1e15, 1.5, 0).ok());
}

// A profile whose latency falls with length gave negative TTFTs: refused, naming file and line.
TEST(Sim, TtftProfilesThatFallWithLengthAreRefused) {
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  const std::string path = ::testing::TempDir() + "/falling.csv";
  {
    std::ofstream f(path);
    f << "prefill_tokens,ttft_ms\n1000,50\n2000,40\n4000,20\n";
  }
  auto fit = TtftModel::FromProfileCsv(path, true);
  ASSERT_FALSE(fit.ok());
  EXPECT_EQ(fit.status().code(), StatusCode::kParseError);
  EXPECT_NE(fit.status().message().find("falling.csv: latency falls with length"),
            std::string::npos)
      << fit.status().message();
  auto interp = TtftModel::FromProfileCsv(path, false);
  ASSERT_FALSE(interp.ok());
  EXPECT_NE(interp.status().message().find(
                "falling.csv:3: ttft_ms 40 at 2000 tokens is below 50 at 1000 tokens (line 2)"),
            std::string::npos)
      << interp.status().message();
  {
    // Rising overall (its fitted line is fine) but falling between two lengths, listed unsorted.
    std::ofstream f(path);
    f << "prefill_tokens,ttft_ms\n3000,45\n1000,20\n8000,400\n2000,60\n";
  }
  EXPECT_TRUE(TtftModel::FromProfileCsv(path, true).ok());
  auto bump = TtftModel::FromProfileCsv(path, false);
  ASSERT_FALSE(bump.ok());
  EXPECT_NE(bump.status().message().find("falling.csv:2: ttft_ms 45 at 3000 tokens is below 60 "
                                         "at 2000 tokens (line 5)"),
            std::string::npos)
      << bump.status().message();
  {
    std::ofstream f(path);
    f << "prefill_tokens,ttft_ms\n100,20\n200,-1\n";
  }
  auto negative = TtftModel::FromProfileCsv(path, false);
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("falling.csv:3: negative"), std::string::npos);
}

// A line with a negative intercept (fitted on long prefills) never predicts a negative time.
TEST(Sim, TtftNeverNegative) {
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  const TtftModel line = TtftModel::Linear(-30, 0.05);
  EXPECT_EQ(line.Ms(model, 0, 100), 0);
  EXPECT_NEAR(line.Ms(model, 0, 1000), 20, 1e-9);
  const std::string path = ::testing::TempDir() + "/steep.csv";
  {
    std::ofstream f(path);
    f << "prefill_tokens,ttft_ms\n1000,10\n2000,100\n";
  }
  const TtftModel interp = TtftModel::FromProfileCsv(path, false).value();
  EXPECT_EQ(interp.Ms(model, 0, 10), 0);  // the first segment extrapolated below zero
  for (int64_t n : {0, 1, 500, 900}) {
    EXPECT_GE(TtftModel::FromProfileCsv(path, true).value().Ms(model, 0, n), 0) << n;
  }
}

TEST(Sim, FitLineRecoversALineAndRejectsDegenerateInput) {
  auto rng = marconi::testing::SeededRng(31);
  std::vector<std::pair<double, double>> pts;
  for (int i = 0; i < 50; ++i) {
    const double x = static_cast<double>(marconi::testing::Uniform(rng, 0, 1000));
    pts.push_back({x, 3.5 + 0.25 * x});
  }
  auto line = FitLine(pts);
  ASSERT_TRUE(line.ok());
  EXPECT_NEAR(line->intercept, 3.5, 1e-9);
  EXPECT_NEAR(line->slope, 0.25, 1e-12);
  EXPECT_FALSE(FitLine({{1, 2}}).ok());
  EXPECT_FALSE(FitLine({{1, 2}, {1, 3}, {1, 4}}).ok());
}

TEST(Sim, PaperProfileFitMatchesSystemDoc) {
  const std::string path = "../shared/docs/ttft-jamba-1.5-mini.csv";
  for (const std::string prefix : {"", "../", "../../"}) {
    if (std::filesystem::exists(prefix + path)) {
      auto fit = TtftModel::FromProfileCsv(prefix + path, true).value();
      const ModelSpec model = ModelSpec::Preset("paper-7b").value();
      EXPECT_NEAR(fit.Ms(model, 0, 0), 17.8, 0.05);                            // intercept
      EXPECT_NEAR(fit.Ms(model, 0, 1000) - fit.Ms(model, 0, 0), 52.96, 0.05);  // slope x 1000
      return;
    }
  }
  GTEST_SKIP() << "../shared/docs/ttft-jamba-1.5-mini.csv not found (shared data absent)";
}

TEST(Sim, ParseBytesAndPercentiles) {
  EXPECT_EQ(ParseBytes("40GB").value(), 40'000'000'000);
  EXPECT_EQ(ParseBytes("1.5GiB").value(), 1'610'612'736);
  EXPECT_EQ(ParseBytes("512").value(), 512);
  EXPECT_EQ(ParseBytes("inf").value(), PrefixCacheConfig::kUnlimited);
  for (const char* bad : {"", "GB", "-5GB", "12XB", "1e30GB", "0"}) {
    EXPECT_FALSE(ParseBytes(bad).ok()) << bad;
  }
  EXPECT_EQ(Percentile({}, 0.5), 0);
  EXPECT_EQ(Percentile({3, 1, 2}, 0.5), 2);
  EXPECT_DOUBLE_EQ(Percentile({0, 10}, 0.95), 9.5);
}

TEST(Sim, FormatBytesKeepsTheUnitSystemItWasGiven) {
  EXPECT_EQ(UnitsOf("1GiB"), ByteUnits::kBinary);
  EXPECT_EQ(UnitsOf("1.5MiB"), ByteUnits::kBinary);
  EXPECT_EQ(UnitsOf("5GB"), ByteUnits::kDecimal);
  EXPECT_EQ(UnitsOf("123"), ByteUnits::kDecimal);
  const int64_t gib = ParseBytes("1GiB").value();
  EXPECT_EQ(FormatBytes(gib, ByteUnits::kBinary), "1.00 GiB");
  EXPECT_EQ(FormatBytes(gib), "1.07 GB");
  EXPECT_EQ(FormatBytesExact(gib, UnitsOf("1GiB")), "1.00 GiB (1,073,741,824 B)");
  EXPECT_EQ(FormatBytesExact(ParseBytes("5GB").value()), "5.00 GB (5,000,000,000 B)");
  EXPECT_EQ(FormatBytes(ParseBytes("1.5MiB").value(), ByteUnits::kBinary), "1.50 MiB");
  EXPECT_EQ(FormatBytes(2048, ByteUnits::kBinary), "2.00 KiB");
  EXPECT_EQ(FormatBytes(2048), "2.05 KB");
  EXPECT_EQ(FormatBytes(999), "999 B");
  EXPECT_EQ(FormatBytesExact(999), "999 B");
  EXPECT_EQ(FormatBytes(PrefixCacheConfig::kUnlimited), "unlimited");
  // Every formatted size parses back (without the space) to within its rounding.
  for (int64_t b : {int64_t{1500}, int64_t{3} << 20, int64_t{7'250'000'000}}) {
    for (ByteUnits u : {ByteUnits::kDecimal, ByteUnits::kBinary}) {
      std::string text = FormatBytes(b, u);
      text.erase(text.find(' '), 1);
      EXPECT_NEAR(static_cast<double>(ParseBytes(text).value()), static_cast<double>(b),
                  0.01 * static_cast<double>(b))
          << text;
    }
  }
}

// The peaks of KV and of states are reached at different times; the peak of their sum is what
// the capacity bounds, and the report shows it.
TEST(Sim, ReportsThePeakOfKvAndStatesTogether) {
  const Trace trace = SyntheticMixed(12, 1.0, 3);
  SimConfig config;
  config.model = ModelSpec::Preset("paper-7b").value();
  config.capacity_bytes = ParseBytes("2GiB").value();
  const SystemResult r = RunSystem(trace, SystemKind::kSglangPlus, config).value();
  const Summary s = Summarize(r);
  EXPECT_GT(s.peak_bytes, 0);
  EXPECT_EQ(s.peak_bytes, r.stats.peak_bytes);
  EXPECT_LE(s.peak_bytes, config.capacity_bytes);
  EXPECT_GE(s.peak_bytes, std::max(s.peak_kv_bytes, s.peak_state_bytes));
  EXPECT_LE(s.peak_bytes, s.peak_kv_bytes + s.peak_state_bytes);
  const ReportContext ctx{"mixed", "paper-7b", config.capacity_bytes, "line", 0, UnitsOf("2GiB")};
  const std::string json = SummaryJson({s}, ctx);
  EXPECT_NE(json.find("\"peak_bytes\": " + std::to_string(s.peak_bytes)), std::string::npos)
      << json;
  const std::string table = SummaryTable({s}, ctx);
  EXPECT_NE(table.find("cache 2.00 GiB (2,147,483,648 B)"), std::string::npos) << table;
  EXPECT_NE(table.find("peak KV+SSM"), std::string::npos) << table;
  EXPECT_NE(table.find(FormatBytes(s.peak_bytes, ByteUnits::kBinary)), std::string::npos) << table;
}

TEST(Sim, RetimeKeepsSessionGaps) {
  const Trace t = SyntheticMixed(10, 1.0, 2);
  const Trace fast = Retime(t, 4.0);
  std::map<std::string, std::vector<double>> a, b;
  for (const auto& r : t.requests) a[r.session_id].push_back(r.ts);
  for (const auto& r : fast.requests) b[r.session_id].push_back(r.ts);
  for (const auto& [sid, ts] : a) {
    ASSERT_EQ(ts.size(), b[sid].size());
    for (size_t i = 1; i < ts.size(); ++i) {
      EXPECT_NEAR(ts[i] - ts[i - 1], b[sid][i] - b[sid][i - 1], 1e-9);
    }
  }
  EXPECT_NEAR(b["chat1"][0], 0.25, 1e-12);  // session 1 at 1 / 4 s
}

TEST(Sim, ReportsAreWellFormed) {
  const Trace trace = Golden();
  SimConfig config = TinyConfig();
  std::vector<SystemResult> results;
  std::vector<Summary> rows;
  for (SystemKind k : {SystemKind::kVanilla, SystemKind::kSglangPlus}) {
    results.push_back(RunSystem(trace, k, config).value());
    rows.push_back(Summarize(results.back()));
  }
  const ReportContext ctx{"golden", "tiny", 1000, "line", 0};
  const std::string json = SummaryJson(rows, ctx);
  for (const char* key : {"\"system\": \"sglang+\"", "\"params\"", "\"token_hit_rate\"",
                          "\"ttft_ms_p95\"", "\"peak_state_bytes\"", "\"buckets\"",
                          "\"attention_hit_tokens\"", "\"tokens_lost_no_state\"", "\"derived\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key;
  }
  const std::string csv = PerRequestCsv(trace, results);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "system,request,session_id,turn_id,input_tokens,hit_tokens,attention_hit_tokens,"
            "ttft_ms");
  EXPECT_NE(csv.find("sglang+,1,A,1,14,12,12,"), std::string::npos) << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 2 * 4);
  EXPECT_NE(SummaryTable(rows, ctx).find("sglang+"), std::string::npos);
}

}  // namespace
}  // namespace marconi::sim

namespace marconi::sim {
namespace {

// --leave-last-token: a whole-input hit resumes before the last token for the systems built on
// the cache core, as the engine emulations always do.
TEST(Sim, LeaveLastTokenCapsAWholeInputHit) {
  Trace t;
  t.source = "resend";
  t.requests.push_back({"A", 0, 0.0, Range(1, 10), {11, 12}, 1});
  t.requests.push_back({"A", 1, 1.0, Range(1, 12), {13}, 2});  // A's input and output, resent
  SimConfig config = TinyConfig();
  std::vector<SystemKind> kinds;
  ASSERT_TRUE(ApplySystemsChoice({"sglang+", {}, std::nullopt, false}, &kinds, &config).ok());
  EXPECT_EQ(Hits(RunSystem(t, SystemKind::kSglangPlus, config).value())[1], 12);
  ASSERT_TRUE(ApplySystemsChoice({"sglang+", {}, std::nullopt, true}, &kinds, &config).ok());
  EXPECT_TRUE(config.leave_last_token);
  EXPECT_LT(Hits(RunSystem(t, SystemKind::kSglangPlus, config).value())[1], 12);
}

}  // namespace
}  // namespace marconi::sim
