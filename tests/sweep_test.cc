#include "sim/sweep.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "sim/file_io.h"
#include "sim/serving/sweep.h"
#include "sim/synthetic.h"

namespace marconi::sim {
namespace {

SweepSpec SmallSpec(int threads) {
  SweepSpec spec;
  spec.models = {ModelSpec::Preset("paper-7b").value(), ModelSpec::Preset("nemotron-h-8b").value()};
  spec.capacities = {1'000'000'000, 3'000'000'000};
  spec.sessions_per_second = {1, 4};
  spec.systems = ParseSystems("vanilla,sglang+,marconi").value();
  spec.threads = threads;
  return spec;
}

TEST(Sweep, ByteIdenticalWhateverTheThreadCount) {
  const Trace trace = SyntheticMixed(16, 1.0, 5);
  std::vector<std::string> csv, svg;
  for (int threads : {1, 3}) {
    size_t calls = 0, last = 0;
    auto cells = RunSweep(trace, SmallSpec(threads), [&](size_t done, size_t total) {
      ++calls;
      last = done;
      EXPECT_EQ(total, 24u);
    });
    ASSERT_TRUE(cells.ok()) << cells.status().ToString();
    EXPECT_EQ(calls, 24u);
    EXPECT_EQ(last, 24u);
    csv.push_back(SweepCsv(*cells));
    const std::string dir = ::testing::TempDir() + "/sweep" + std::to_string(threads);
    auto files = WriteSweepPlots(*cells, dir);
    ASSERT_TRUE(files.ok()) << files.status().ToString();
    EXPECT_EQ(files->size(), 2u * 2u * 3u);  // (model, sps) x {hit rate, win, CDF}
    std::string all;
    for (const auto& f : *files) all += ReadFile(f).value();
    svg.push_back(all);
  }
  EXPECT_EQ(csv[0], csv[1]);
  EXPECT_EQ(svg[0], svg[1]);
  EXPECT_EQ(std::count(csv[0].begin(), csv[0].end(), '\n'), 1 + 24);
}

// Each arrival rate is a schedule over the one trace (no copy of its tokens): the same replay as
// over a re-timed copy, and a sweep cell equals a replay of that copy.
TEST(Sweep, ArrivalRatesShareTheTraceAndGiveTheRetimedCopysResults) {
  const Trace trace = SyntheticMixed(16, 1.0, 5);
  SimConfig config;
  config.model = ModelSpec::Preset("paper-7b").value();
  config.capacity_bytes = 1'000'000'000;
  for (double sps : {0.5, 4.0}) {
    const Trace copy = Retime(trace, sps);
    const Schedule schedule = RetimeSchedule(trace, sps);
    ASSERT_EQ(schedule.order.size(), copy.requests.size());
    for (size_t k = 0; k < copy.requests.size(); ++k) {
      EXPECT_EQ(trace.requests[schedule.order[k]].input, copy.requests[k].input);
      EXPECT_EQ(schedule.ts[k], copy.requests[k].ts);
    }
    for (SystemKind kind : {SystemKind::kVanilla, SystemKind::kSglangPlus, SystemKind::kMarconi,
                            SystemKind::kOracle}) {
      const SystemResult a = RunSystem(copy, kind, config).value();
      const SystemResult b = RunSystem(trace, schedule, kind, config).value();
      EXPECT_EQ(a.stats.hit_tokens, b.stats.hit_tokens) << SystemName(kind);
      EXPECT_EQ(a.stats.evictions, b.stats.evictions) << SystemName(kind);
      EXPECT_EQ(a.alpha, b.alpha) << SystemName(kind);
      ASSERT_EQ(a.records.size(), b.records.size());
      for (size_t k = 0; k < a.records.size(); ++k) {
        EXPECT_EQ(a.records[k].hit_tokens, b.records[k].hit_tokens);
        EXPECT_EQ(a.records[k].ttft_ms, b.records[k].ttft_ms);
      }
    }
  }
  Schedule bad;
  bad.order = {trace.requests.size()};
  bad.ts = {0};
  EXPECT_EQ(RunSystem(trace, bad, SystemKind::kVanilla, config).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(Sweep, MoreCacheNeverHurtsLruHitRateHere) {
  const Trace trace = SyntheticMixed(16, 1.0, 5);
  SweepSpec spec = SmallSpec(2);
  spec.models.resize(1);
  spec.sessions_per_second = {1};
  spec.capacities = {500'000'000, 2'000'000'000, 8'000'000'000};
  spec.systems = {SystemKind::kSglangPlus};
  auto cells = RunSweep(trace, spec).value();
  ASSERT_EQ(cells.size(), 3u);
  EXPECT_LE(cells[0].summary.token_hit_rate, cells[1].summary.token_hit_rate);
  EXPECT_LE(cells[1].summary.token_hit_rate, cells[2].summary.token_hit_rate);
}

TEST(Sweep, ErrorsAreReported) {
  const Trace trace = SyntheticMixed(2, 1.0, 5);
  SweepSpec spec = SmallSpec(1);
  spec.capacities = {};
  EXPECT_EQ(RunSweep(trace, spec).status().code(), StatusCode::kInvalidArgument);
  auto cells = RunSweep(trace, SmallSpec(1)).value();
  EXPECT_EQ(WriteSweepPlots(cells, "/proc/no/such/dir").status().code(), StatusCode::kIoError);
}

serving::ServingSweepSpec ServingSpec(int threads) {
  serving::ServingSweepSpec spec;
  spec.models = {ModelSpec::Preset("paper-7b").value()};
  spec.budgets = {0, 4'000'000'000};
  spec.sessions_per_second = {0.5, 2, 64};
  spec.systems = ParseSystems("vanilla,marconi").value();
  spec.routers = {"round-robin", "state"};
  spec.serving.device = serving::DevicePreset("H100-80GB").value();
  spec.serving.replicas = 2;
  spec.serving.max_running = 4;  // queues at the higher rates
  spec.serving.token_budget = 1024;
  spec.threads = threads;
  return spec;
}

// sweep --serving: one row per (budget, rate, system, router), byte-identical CSV and plots
// whatever the thread count; load shows in the TTFT (the synthetic trace's seed 5 printed).
TEST(ServingSweep, RowsPlotsAndDeterminism) {
  std::printf("synthetic seed 5\n");
  const Trace trace = SyntheticMixed(24, 1.0, 5);
  std::vector<std::string> csv, svg;
  for (int threads : {1, 3}) {
    size_t calls = 0;
    auto cells = serving::RunServingSweep(trace, ServingSpec(threads), [&](size_t, size_t total) {
      ++calls;
      EXPECT_EQ(total, 24u);
    });
    ASSERT_TRUE(cells.ok()) << cells.status().ToString();
    EXPECT_EQ(calls, 24u);
    csv.push_back(serving::ServingSweepCsv(*cells));
    const std::string dir = ::testing::TempDir() + "/serving_sweep" + std::to_string(threads);
    auto files = serving::WriteServingSweepPlots(*cells, dir);
    ASSERT_TRUE(files.ok()) << files.status().ToString();
    ASSERT_EQ(files->size(), 2u * 2u);  // budgets x {TTFT p95, goodput}
    std::string all;
    for (const std::string& f : *files) all += ReadFile(f).value();
    EXPECT_NE(all.find("marconi/state"), std::string::npos);
    svg.push_back(all);
    // The same (budget, system, router) at a higher rate: no fewer requests, more load.
    const auto ttft = [&](double sps, const std::string& system) {
      for (const auto& c : *cells) {
        if (c.budget_bytes == 0 && c.sessions_per_second == sps && c.summary.system == system &&
            c.summary.router == "round-robin") {
          return c.summary.ttft_ms.p95;
        }
      }
      ADD_FAILURE() << "no cell";
      return 0.0;
    };
    EXPECT_GT(ttft(64, "vanilla"), 1.5 * ttft(0.5, "vanilla"));
  }
  EXPECT_EQ(csv[0], csv[1]);
  EXPECT_EQ(svg[0], svg[1]);
  EXPECT_EQ(csv[0].rfind("model,device,budget_bytes,sessions_per_second,system,router,replicas,"
                         "requests,token_hit_rate,ttft_ms_p50,ttft_ms_p95,queue_ms_p95,",
                         0),
            0u);
  EXPECT_EQ(std::count(csv[0].begin(), csv[0].end(), '\n'), 1 + 24);
  EXPECT_NE(csv[0].find("paper-7b,H100-80GB,4000000000,2,marconi,state,2,"), std::string::npos);
}

TEST(ServingSweep, ErrorsAreReported) {
  const Trace trace = SyntheticMixed(2, 1.0, 5);
  serving::ServingSweepSpec spec = ServingSpec(1);
  spec.routers = {"nearest"};
  EXPECT_EQ(serving::RunServingSweep(trace, spec).status().code(), StatusCode::kInvalidArgument);
  spec = ServingSpec(1);
  spec.sessions_per_second = {-1};
  EXPECT_EQ(serving::RunServingSweep(trace, spec).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace marconi::sim
