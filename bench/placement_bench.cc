// The sparse placement DP. Target (issue 5): N = 32768 token positions as 512 bins of 64 with
// M = 32 well under a millisecond.
#include <benchmark/benchmark.h>

#include <random>

#include "marconi/sparse_placement.h"

namespace marconi {
namespace {

void BM_SolvePlacement(benchmark::State& state) {
  const int64_t n = state.range(0), m = state.range(1);
  std::mt19937_64 rng(1);
  std::vector<double> p(static_cast<size_t>(n + 1));
  for (double& x : p) x = std::uniform_real_distribution<double>(0, 1)(rng);
  const RecomputeCost cost{state.range(2) ? 1.0 : 1.0, state.range(2) ? 1e-3 : 0.0};
  for (auto _ : state) {
    auto placement = SolvePlacement(p, m, cost);
    benchmark::DoNotOptimize(placement->expected_cost);
  }
}
// {positions, budget, quadratic term}
BENCHMARK(BM_SolvePlacement)
    ->Args({512, 32, 0})
    ->Args({512, 32, 1})
    ->Args({32768, 32, 0})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace marconi
