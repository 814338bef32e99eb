// The simulator end to end. Target (issue 3): on a synthetic agent-like trace of ~600 requests and
// ~10M input tokens, parsing it and replaying all five policies takes under 1 s on one core.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "sim/replay.h"
#include "sim/serving/device.h"
#include "sim/serving/scheduler.h"
#include "sim/synthetic.h"
#include "sim/trace.h"

namespace marconi::sim {
namespace {

// A file of this process's own (two benchmark runs at once must not write each other's trace
// while the other reads it), removed at exit. Never destroyed: the exit handler reads it.
const std::string& AgentTracePath() {
  static const std::string* const path = [] {
    auto* p =
        new std::string((std::filesystem::temp_directory_path() /
                         ("marconi_bench_agent_trace." + std::to_string(::getpid()) + ".jsonl"))
                            .string());
    if (const Status s = WriteTrace(*p, SyntheticAgent(24, 1)); !s.ok()) {
      std::fprintf(stderr, "sim_bench: %s\n", s.ToString().c_str());
      std::abort();
    }
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove(AgentTracePath(), ignored);
    });
    return p;
  }();
  return *path;
}

SimConfig Config() {
  SimConfig c;
  c.model = ModelSpec::Preset("paper-7b").value();
  c.capacity_bytes = 40'000'000'000;  // ~600K tokens of KV: the sessions compete
  c.threads = 1;
  return c;
}

// Reports bytes/s: the JSON parse rate (issue 12's target: >= 500 MB/s).
void BM_ParseAgentTrace(benchmark::State& state) {
  const std::string& path = AgentTracePath();
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(path));
  for (auto _ : state) {
    auto t = ReadTrace(path);
    benchmark::DoNotOptimize(t->requests.size());
    state.counters["requests"] = static_cast<double>(t->requests.size());
    state.counters["input_tokens"] = static_cast<double>(t->input_tokens());
  }
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_ParseAgentTrace)->Unit(benchmark::kMillisecond);

void BM_ReplaySystem(benchmark::State& state) {
  const SystemKind kind = Systems()[static_cast<size_t>(state.range(0))].kind;
  const Trace trace = ReadTrace(AgentTracePath()).value();
  const SimConfig config = Config();
  for (auto _ : state) {
    auto r = RunSystem(trace, kind, config);
    benchmark::DoNotOptimize(r->stats.hit_tokens);
    state.counters["token_hit_rate"] = r->stats.token_hit_rate();
  }
  state.SetLabel(SystemName(kind));
}
BENCHMARK(BM_ReplaySystem)
    ->DenseRange(0, static_cast<int64_t>(Systems().size()) - 1)
    ->Unit(benchmark::kMillisecond);

// One serving run (issue 12) of every system on the same trace, re-timed to 2 sessions/s (the
// sessions overlap, so requests run together and queue), on one H100-80GB with the default
// batching and the device's memory budget.
void BM_ServeSystem(benchmark::State& state) {
  const SystemKind kind = Systems()[static_cast<size_t>(state.range(0))].kind;
  const Trace trace = Retime(ReadTrace(AgentTracePath()).value(), 2.0);
  const SimConfig config = Config();
  serving::ServingConfig serving;
  serving.device = serving::DevicePreset("H100-80GB").value();
  for (auto _ : state) {
    auto r = serving::RunServing(trace, kind, config, serving);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(r->steps);
    state.counters["steps"] = static_cast<double>(r->steps);
  }
  state.SetLabel(SystemName(kind));
}
BENCHMARK(BM_ServeSystem)
    ->DenseRange(0, static_cast<int64_t>(Systems().size()) - 1)
    ->Unit(benchmark::kMillisecond);

// Everything the target counts: parse, then the five systems of `marconi sim`'s default
// one after another.
void BM_ParseAndReplayAllFive(benchmark::State& state) {
  const std::string& path = AgentTracePath();
  const SimConfig config = Config();
  const std::vector<SystemKind> systems =
      ParseSystems("vanilla,vllm+,sglang+,marconi,oracle").value();
  for (auto _ : state) {
    const Trace trace = ReadTrace(path).value();
    for (SystemKind k : systems) {
      auto r = RunSystem(trace, k, config);
      benchmark::DoNotOptimize(r->stats.hit_tokens);
    }
  }
}
BENCHMARK(BM_ParseAndReplayAllFive)->Unit(benchmark::kMillisecond)->Iterations(3);

}  // namespace
}  // namespace marconi::sim
