// Benchmarks of the cache core. Targets (issue 2): lookup + insert of a 32K-token request in a
// tree of 100K nodes under 100 us; an eviction decision under 10 us amortised at 100K candidates.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"

namespace marconi {
namespace {

ModelSpec BenchModel() { return ModelSpec::Preset("paper-7b").value(); }

// A policy by name, plus "flop_aware_linear": FLOP-aware eviction with recency linear in time.
std::unique_ptr<EvictionPolicy> MakeBenchEviction(const std::string& name) {
  if (name == "flop_aware_linear") {
    return MakeFlopAwareEviction({0.0, FlopAwareEvictionConfig::Recency::kLinearTime}).value();
  }
  return MakeEvictionByName(name).value();
}

// A failed call would leave the benchmark timing something else than it claims: stop instead.
void Check(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "cache_bench: %s\n", s.ToString().c_str());
    std::abort();
  }
}

std::vector<Token> Random(std::mt19937_64& rng, size_t n) {
  std::vector<Token> v(n);
  for (Token& t : v) t = static_cast<Token>(rng() % 32000);
  return v;
}

// A cache holding `leaves` short conversations under 2000 shared 16-token stems (each stem a
// branch point with a state): about leaves + 2000 nodes, nearly all eviction candidates. Its
// capacity is exactly what they take, so that every further insert evicts.
std::unique_ptr<PrefixCache> FilledCache(const std::string& eviction, int leaves, size_t len,
                                         double* now) {
  std::mt19937_64 rng(7);
  std::vector<std::vector<Token>> stems;
  for (int i = 0; i < 2000; ++i) stems.push_back(Random(rng, 16));
  std::vector<std::vector<Token>> sequences;
  for (int i = 0; i < leaves; ++i) {
    std::vector<Token> seq = stems[static_cast<size_t>(i) % stems.size()];
    const auto tail = Random(rng, len);
    seq.insert(seq.end(), tail.begin(), tail.end());
    sequences.push_back(std::move(seq));
  }
  auto fill = [&](PrefixCache& cache) {
    for (size_t i = 0; i < sequences.size(); ++i) {
      const int64_t positions[] = {16, static_cast<int64_t>(sequences[i].size())};
      Check(cache.Insert(sequences[i], std::span<const int64_t>(positions, 2), *now += 1));
    }
  };
  const ModelSpec model = BenchModel();
  auto unbounded =
      PrefixCache::Create({}, model, MakeLastTokenAdmission(), MakeBenchEviction(eviction)).value();
  fill(*unbounded);
  PrefixCacheConfig config;
  config.capacity_bytes = unbounded->stats().bytes();
  auto cache =
      PrefixCache::Create(config, model, MakeLastTokenAdmission(), MakeBenchEviction(eviction))
          .value();
  fill(*cache);
  return cache;
}

// One conversation turn of 32K tokens: lookup (31K-token hit on the previous turn), then insert
// of the new turn (a new 1K-token leaf, from a pool of 4096), evicting to stay within capacity.
// The timing includes copying the 32K-token input, as a caller would.
void BM_LookupInsert32K(benchmark::State& state, const std::string& eviction) {
  double now = 0;
  auto cache = FilledCache(eviction, 98000, 8, &now);
  std::mt19937_64 rng(11);
  std::vector<Token> history = Random(rng, 31 * 1024);
  const int64_t end0 = static_cast<int64_t>(history.size());
  Check(cache->Insert(history, std::span<const int64_t>(&end0, 1), now += 1));
  const auto suffixes = [&] {
    std::vector<std::vector<Token>> s;
    for (int i = 0; i < 4096; ++i) s.push_back(Random(rng, 1024));
    return s;
  }();
  size_t i = 0;
  for (auto _ : state) {
    std::vector<Token> input = history;
    const auto& s = suffixes[i++ % suffixes.size()];
    input.insert(input.end(), s.begin(), s.end() - 64);
    const std::span<const Token> output(s.data() + s.size() - 64, 64);
    auto h = cache->BeginRequest(input, now += 1);
    Check(h.status());
    benchmark::DoNotOptimize(h->lookup().reusable_tokens);
    Check(cache->CompleteRequest(std::move(h).value(), input, output, now));
  }
  state.counters["nodes"] = static_cast<double>(cache->stats().nodes);
  state.counters["candidates"] = static_cast<double>(cache->eviction_policy().size());
  state.counters["evictions/iter"] =
      static_cast<double>(cache->stats().evictions) / static_cast<double>(state.iterations());
}
BENCHMARK_CAPTURE(BM_LookupInsert32K, flop_aware, std::string("flop_aware"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_LookupInsert32K, lru, std::string("lru"))->Unit(benchmark::kMicrosecond);

// The policy alone: choose a victim among 100K candidates, remove it, add a fresh candidate
// (what a steady-state cache does per eviction).
void BM_EvictionDecision100K(benchmark::State& state, const std::string& name) {
  auto policy = MakeBenchEviction(name);
  // alpha 1 where the policy has one; LRU and GDSF have none (kUnimplemented).
  if (Status s = policy->SetAlpha(1.0); s.code() != StatusCode::kUnimplemented) Check(s);
  std::mt19937_64 rng(3);
  double now = 0;
  int64_t clock = 0;
  auto candidate = [&](NodeId id) {
    // Every candidate from a request of its own: the worst case for the request-recency index.
    EvictionCandidate c;
    c.node = id;
    c.last_access = now += 1;
    c.access_seq = ++clock;
    c.access_clock = clock;
    c.flops_saved = static_cast<double>(rng() % 100000 + 1) * 1e9;
    c.bytes_freed = static_cast<int64_t>(rng() % 1000 + 1) * 100000;
    return c;
  };
  for (NodeId id = 0; id < 100000; ++id) policy->Upsert(candidate(id));
  for (auto _ : state) {
    const NodeId victim = policy->Victim(clock);
    policy->OnEvicted(candidate(victim));
    policy->Erase(victim);
    policy->Upsert(candidate(victim));
  }
  state.counters["candidates"] = static_cast<double>(policy->size());
}
BENCHMARK_CAPTURE(BM_EvictionDecision100K, flop_aware, std::string("flop_aware"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_EvictionDecision100K, flop_aware_linear, std::string("flop_aware_linear"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_EvictionDecision100K, lru, std::string("lru"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_EvictionDecision100K, gdsf, std::string("gdsf"))
    ->Unit(benchmark::kMicrosecond);

// Through the cache: a full cache of ~100K candidate nodes; each insert of a short new sequence
// evicts about one node.
void BM_CacheEvictingInsert100K(benchmark::State& state, const std::string& eviction) {
  double now = 0;
  auto cache = FilledCache(eviction, 98000, 8, &now);
  std::mt19937_64 rng(5);
  const int64_t evictions_before = cache->stats().evictions;
  for (auto _ : state) {
    const auto seq = Random(rng, 24);
    const int64_t end = 24;
    Check(cache->Insert(seq, std::span<const int64_t>(&end, 1), now += 1));
  }
  state.counters["candidates"] = static_cast<double>(cache->eviction_policy().size());
  state.counters["evictions/iter"] =
      static_cast<double>(cache->stats().evictions - evictions_before) /
      static_cast<double>(state.iterations());
}
BENCHMARK_CAPTURE(BM_CacheEvictingInsert100K, flop_aware, std::string("flop_aware"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CacheEvictingInsert100K, flop_aware_linear, std::string("flop_aware_linear"))
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CacheEvictingInsert100K, lru, std::string("lru"))
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace marconi
