// The placement DP against brute force over all subsets, the uniform case, the online histogram
// and the sparse admission policy in a cache.
#include "marconi/sparse_placement.h"

#include <gtest/gtest.h>

#include <cmath>

#include "marconi/policies.h"
#include "test_util.h"

namespace marconi {
namespace {

double BruteForceMin(const std::vector<double>& p, int64_t budget, const RecomputeCost& cost) {
  const int64_t n = static_cast<int64_t>(p.size()) - 1;
  double best = INFINITY;
  for (uint64_t mask = 0; mask < (uint64_t{1} << n); ++mask) {
    if (__builtin_popcountll(mask) > budget) continue;
    std::vector<int64_t> s;
    for (int64_t i = 0; i < n; ++i) {
      if (mask >> i & 1) s.push_back(i + 1);
    }
    best = std::min(best, PlacementCost(p, s, cost));
  }
  return best;
}

TEST(SparsePlacement, MatchesBruteForceOnRandomDistributions) {
  auto rng = testing::SeededRng(31);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t n = testing::Uniform(rng, 1, 12);
    const int64_t budget = testing::Uniform(rng, 0, 5);
    std::vector<double> p(static_cast<size_t>(n + 1));
    for (double& x : p) {
      // Sparse, spiky distributions are where heuristics fail.
      x = testing::Uniform(rng, 0, 2) == 0 ? 0.0
                                           : std::uniform_real_distribution<double>(0, 1)(rng);
    }
    const RecomputeCost cost = trial % 2 == 0 ? RecomputeCost{1, 0} : RecomputeCost{0.3, 0.05};
    const auto got = SolvePlacement(p, budget, cost);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const double want = BruteForceMin(p, budget, cost);
    ASSERT_NEAR(got->expected_cost, want, 1e-9 * std::max(1.0, want)) << "trial " << trial;
    ASSERT_NEAR(PlacementCost(p, got->positions, cost), got->expected_cost,
                1e-9 * std::max(1.0, want));
    ASSERT_LE(static_cast<int64_t>(got->positions.size()), budget);
    for (size_t i = 0; i < got->positions.size(); ++i) {
      ASSERT_GE(got->positions[i], 1);
      ASSERT_LE(got->positions[i], n);
      if (i > 0) {
        ASSERT_GT(got->positions[i], got->positions[i - 1]);
      }
    }
  }
}

TEST(SparsePlacement, BalancedSpacingIsOptimalForUniform) {
  for (auto [n, m] : {std::pair<int64_t, int64_t>{99, 4}, {511, 7}, {63, 1}}) {
    std::vector<double> p(static_cast<size_t>(n + 1), 1.0);
    p[0] = 0;
    const auto best = SolvePlacement(p, m).value();
    const auto balanced = BalancedPlacement(n, m);
    EXPECT_EQ(best.positions, balanced) << "n " << n << " m " << m;
    EXPECT_DOUBLE_EQ(best.expected_cost, PlacementCost(p, balanced));
  }
}

TEST(SparsePlacement, ConcentratedOverlapGetsACheckpointExactlyThere) {
  // Doc-QA: every question shares exactly the document (depth 300 of 512).
  std::vector<double> p(513, 0.0);
  p[300] = 1.0;
  const auto best = SolvePlacement(p, 1).value();
  EXPECT_EQ(best.positions, std::vector<int64_t>{300});
  EXPECT_EQ(best.expected_cost, 0.0);
  // Balanced and block placements pay for the gap.
  EXPECT_GT(PlacementCost(p, BalancedPlacement(512, 1)), 0.0);
}

TEST(SparsePlacement, EdgeCasesAndErrors) {
  const std::vector<double> p = {0.5, 1, 2, 3};
  const auto none = SolvePlacement(p, 0).value();
  EXPECT_TRUE(none.positions.empty());
  EXPECT_DOUBLE_EQ(none.expected_cost, 1 * 1 + 2 * 2 + 3 * 3);
  EXPECT_EQ(SolvePlacement(p, 10)->expected_cost, 0.0);  // a checkpoint at every depth
  EXPECT_EQ(SolvePlacement(std::vector<double>{0, 0, 0}, 2)->expected_cost, 0.0);
  EXPECT_FALSE(SolvePlacement(std::vector<double>{}, 1).ok());
  EXPECT_FALSE(SolvePlacement(std::vector<double>{1, -1}, 1).ok());
  EXPECT_FALSE(SolvePlacement(std::vector<double>{1, NAN}, 1).ok());
  EXPECT_FALSE(SolvePlacement(p, -1).ok());
  EXPECT_FALSE(SolvePlacement(p, 1, RecomputeCost{0, 0}).ok());
  EXPECT_FALSE(SolvePlacement(p, 1, RecomputeCost{-1, 1}).ok());
}

TEST(SparsePlacement, Baselines) {
  EXPECT_EQ(BlockPlacement(10, 3), (std::vector<int64_t>{3, 6, 9}));
  EXPECT_EQ(BalancedPlacement(99, 4), (std::vector<int64_t>{20, 40, 60, 80}));
  EXPECT_EQ(DyadicPlacement(100, 3), (std::vector<int64_t>{16, 32, 64}));
  EXPECT_EQ(DyadicPlacement(100, 0), std::vector<int64_t>{});
  const auto sq = SqrtPlacement(99, 3);  // 100 sqrt(k / 4): 50, 71, 87
  EXPECT_EQ(sq, (std::vector<int64_t>{50, 71, 87}));
  EXPECT_EQ(BalancedPlacement(2, 5), (std::vector<int64_t>{1, 2}));  // more budget than room
}

TEST(OverlapHistogram, DecaysOlderObservations) {
  OverlapHistogram h(8, 64, 0.5);
  h.Observe(0);    // bin 0
  h.Observe(130);  // bin 2
  h.Observe(1e9);  // capped to bin 8
  const auto w = h.Weights();
  EXPECT_DOUBLE_EQ(w[8], 1.0);
  EXPECT_DOUBLE_EQ(w[2], 0.5);
  EXPECT_DOUBLE_EQ(w[0], 0.25);
  EXPECT_EQ(h.observations(), 3);
  OverlapHistogram long_run(4, 1, 0.9);
  for (int i = 0; i < 20000; ++i) long_run.Observe(i % 5);  // rescaling keeps it finite
  for (double x : long_run.Weights()) EXPECT_TRUE(std::isfinite(x) && x > 0);
}

TEST(SparseAdmission, LearnsTheSharedDocumentDepthAndCountsRecompute) {
  // One 1000-token document; 30-token questions about it. Chunk 50: the document ends at bin 20.
  // Balanced placement of one checkpoint over 40 bins is bin 21 (token 1050): past every input,
  // so nothing is placed until the policy has learnt the depth.
  SparseAdmissionConfig config;
  config.chunk_tokens = 50;
  config.max_tokens = 2000;
  config.budget = 1;
  config.min_observations = 5;
  config.resolve_every = 5;
  PrefixCacheConfig cc;
  auto cache = PrefixCache::Create(cc, testing::TinyModel(), MakeSparseAdmission(config).value(),
                                   MakeLruEviction())
                   .value();
  std::vector<Token> doc(1000);
  for (size_t i = 0; i < doc.size(); ++i) doc[i] = static_cast<Token>(i);
  std::vector<int64_t> hits, planned;
  for (Token q = 0; q < 12; ++q) {
    std::vector<Token> input = doc;
    input.insert(input.end(), 30, static_cast<Token>(5000 + q));
    auto h = cache->BeginRequest(input, q);
    ASSERT_TRUE(h.ok());
    hits.push_back(h->lookup().reusable_tokens);
    planned.push_back(h->prefill_checkpoints().empty() ? 0 : h->prefill_checkpoints()[0]);
    ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), input, {}, q).ok());
  }
  // Observations 0, 1000, 1000, 1000, 1000: the 5th re-solves to token 1000 before its own
  // prefill plan, so request 4 captures it and request 5 on resume there.
  EXPECT_EQ(planned, (std::vector<int64_t>{0, 0, 0, 0, 1000, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(hits, (std::vector<int64_t>{0, 0, 0, 0, 0, 1000, 1000, 1000, 1000, 1000, 1000, 1000}));
  const CacheStats& st = cache->stats();
  EXPECT_EQ(st.matched_tokens - st.hit_tokens, 4 * 1000);  // requests 1-4 recomputed the document
  EXPECT_TRUE(cache->CheckInvariants().ok());
  EXPECT_FALSE(MakeSparseAdmission(SparseAdmissionConfig{0, 10, 1, 0.9, 1, 1, true, {}}).ok());
  HeuristicPlacementAdmissionConfig bad;
  bad.chunk_tokens = 0;
  EXPECT_FALSE(MakeHeuristicPlacementAdmission(bad).ok());
}

TEST(SparseAdmission, HeuristicPlacementResumesAtDeepestCheckpointBelowTheMatch) {
  HeuristicPlacementAdmissionConfig block;
  block.kind = HeuristicPlacementAdmissionConfig::Kind::kBlock;
  block.block_tokens = 100;
  block.last_token = false;
  PrefixCacheConfig cc;
  auto cache =
      PrefixCache::Create(cc, testing::TinyModel(), MakeHeuristicPlacementAdmission(block).value(),
                          MakeLruEviction())
          .value();
  std::vector<Token> a(350, 1);
  auto h = cache->BeginRequest(a, 0);
  EXPECT_EQ(h->prefill_checkpoints(), (std::vector<int64_t>{100, 200, 300}));
  ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), a, {}, 0).ok());
  std::vector<Token> b(250, 1);
  b.push_back(2);
  h = cache->BeginRequest(b, 1);
  EXPECT_EQ(h->lookup().matched_tokens, 250);
  EXPECT_EQ(h->lookup().reusable_tokens, 200);
  EXPECT_EQ(cache->stats().matched_tokens - cache->stats().hit_tokens, 50);  // recomputed
}

}  // namespace
}  // namespace marconi

namespace marconi {
namespace {

TEST(SparseAdmission, HeuristicsPlaceOverTheEntrysOwnLength) {
  using Kind = HeuristicPlacementAdmissionConfig::Kind;
  AdmissionContext ctx;
  ctx.input_tokens = 6400;  // 100 chunks of 64
  auto plan = [&](Kind kind, int64_t budget) {
    HeuristicPlacementAdmissionConfig c;
    c.kind = kind;
    c.budget = budget;
    std::vector<int64_t> out;
    MakeHeuristicPlacementAdmission(c).value()->PlanPrefill(ctx, &out);
    return out;
  };
  EXPECT_EQ(plan(Kind::kBalanced, 1), std::vector<int64_t>{51 * 64});
  EXPECT_EQ(plan(Kind::kDyadic, 2), (std::vector<int64_t>{32 * 64, 64 * 64}));
  EXPECT_EQ(plan(Kind::kSqrt, 3).size(), 3u);
  EXPECT_EQ(plan(Kind::kBlock, 0).size(), 6u);  // every 1024 tokens
}

}  // namespace
}  // namespace marconi
