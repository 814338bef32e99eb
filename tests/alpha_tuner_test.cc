#include "marconi/alpha_tuner.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace marconi {
namespace {

struct Req {
  std::vector<Token> input, output;
};

// Sessions with long and short contexts competing for a small cache.
std::vector<Req> Workload(uint64_t seed, int n) {
  auto rng = testing::SeededRng(seed);
  std::vector<std::vector<Token>> histories(6);
  for (size_t s = 0; s < histories.size(); ++s) {
    histories[s].assign(static_cast<size_t>(s % 2 == 0 ? 400 : 30), static_cast<Token>(100 + s));
  }
  std::vector<Req> reqs;
  for (int i = 0; i < n; ++i) {
    auto& h = histories[static_cast<size_t>(testing::Uniform(rng, 0, 5))];
    for (int64_t k = testing::Uniform(rng, 5, 40); k > 0; --k) {
      h.push_back(static_cast<Token>(testing::Uniform(rng, 0, 50)));
    }
    Req r{h, {}};
    for (int64_t k = testing::Uniform(rng, 1, 10); k > 0; --k) {
      r.output.push_back(static_cast<Token>(testing::Uniform(rng, 0, 50)));
    }
    h.insert(h.end(), r.output.begin(), r.output.end());
    reqs.push_back(std::move(r));
  }
  return reqs;
}

struct TunedRun {
  std::vector<TuningRound> rounds;
  double final_alpha = 0;
  int64_t before_eviction = 0;
};

TunedRun Serve(const std::vector<Req>& reqs, AlphaTunerConfig config) {
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  const int64_t capacity = 4 * model.StateBytesPerCheckpoint() + 1500 * model.KvBytesPerToken();
  auto cache = testing::MakeCache(model, capacity, "judicious", "flop_aware");
  auto tuner = AlphaTuner::Create(std::move(config)).value();
  double now = 0;
  for (const Req& r : reqs) {
    auto h = cache->BeginRequest(r.input, now);
    EXPECT_TRUE(cache->CompleteRequest(std::move(h).value(), r.input, r.output, now + 0.5).ok());
    if (cache->stats().evictions == 0) {
      EXPECT_EQ(cache->alpha(), 0.0);
    }
    EXPECT_TRUE(tuner->Observe(*cache, r.input, r.output, now, now + 0.5).ok());
    now += 1;
  }
  return {tuner->rounds(), cache->alpha(), tuner->requests_before_first_eviction()};
}

TEST(AlphaTuner, TunesOnceAfterTheWindowAndAdoptsTheBest) {
  const auto reqs = Workload(5, 300);
  AlphaTunerConfig config;
  config.threads = 2;
  config.retune = false;  // the paper's one-shot tuning
  const TunedRun run = Serve(reqs, config);
  ASSERT_GT(run.before_eviction, 0);
  ASSERT_EQ(run.rounds.size(), 1u);
  const TuningRound& r = run.rounds[0];
  EXPECT_EQ(r.window, static_cast<int64_t>(5 * run.before_eviction));
  EXPECT_EQ(r.after_request, run.before_eviction + r.window);
  ASSERT_EQ(r.alphas.size(), 21u);
  // The chosen alpha has the best objective; ties go to the smaller alpha.
  size_t best = 0;
  for (size_t i = 0; i < r.objective.size(); ++i) {
    if (r.objective[i] > r.objective[best]) best = i;
  }
  EXPECT_EQ(r.chosen_alpha, r.alphas[best]);
  EXPECT_EQ(run.final_alpha, r.chosen_alpha);
  for (double o : r.objective) EXPECT_TRUE(o >= 0 && o <= 1);
}

TEST(AlphaTuner, IsDeterministicWhateverTheThreadCount) {
  const auto reqs = Workload(6, 250);
  AlphaTunerConfig one, many;
  one.threads = 1;
  many.threads = 4;
  one.retune = many.retune = true;
  const TunedRun a = Serve(reqs, one), b = Serve(reqs, many);
  ASSERT_EQ(a.rounds.size(), b.rounds.size());
  ASSERT_FALSE(a.rounds.empty());
  for (size_t i = 0; i < a.rounds.size(); ++i) {
    EXPECT_EQ(a.rounds[i].objective, b.rounds[i].objective);
    EXPECT_EQ(a.rounds[i].chosen_alpha, b.rounds[i].chosen_alpha);
  }
  EXPECT_GT(a.rounds.size(), 1u);  // retune: several windows
}

TEST(AlphaTuner, TiesGoToTheSmallestAlpha) {
  // A single alpha-insensitive request stream: every alpha scores the same.
  std::vector<Req> reqs;
  for (int i = 0; i < 60; ++i)
    reqs.push_back({std::vector<Token>(600, static_cast<Token>(i)), {1}});
  AlphaTunerConfig config;
  config.grid = {1.5, 0.5, 1.0};
  config.retune = false;
  const TunedRun run = Serve(reqs, config);
  ASSERT_EQ(run.rounds.size(), 1u);
  EXPECT_EQ(run.rounds[0].alphas, (std::vector<double>{0.5, 1.0, 1.5}));
  EXPECT_EQ(run.rounds[0].objective[0], run.rounds[0].objective[2]);
  EXPECT_EQ(run.rounds[0].chosen_alpha, 0.5);
}

TEST(AlphaTuner, RejectsBadConfigAndPoliciesWithoutAlpha) {
  AlphaTunerConfig empty;
  empty.grid = {};
  EXPECT_FALSE(AlphaTuner::Create(empty).ok());
  AlphaTunerConfig negative;
  negative.grid = {-0.1};
  EXPECT_FALSE(AlphaTuner::Create(negative).ok());
  AlphaTunerConfig zero;
  zero.multiplier = 0;
  EXPECT_FALSE(AlphaTuner::Create(zero).ok());

  const ModelSpec model = testing::TinyModel();
  auto lru = testing::MakeCache(
      model, model.StateBytesPerCheckpoint() + 4 * model.KvBytesPerToken(), "last", "lru");
  auto tuner = AlphaTuner::Create({}).value();
  for (Token t = 0; t < 3; ++t) {
    const std::vector<Token> q(3, t);
    ASSERT_TRUE(lru->Insert(q, std::vector<int64_t>{3}, t).ok());
  }
  ASSERT_GT(lru->stats().evictions, 0);
  const std::vector<Token> q(3, 1);
  EXPECT_EQ(tuner->Observe(*lru, q, {}, 5, 5).code(), StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace marconi
