// Helpers shared by the tests: cache construction and seeded randomness.
#ifndef MARCONI_TESTS_TEST_UTIL_H_
#define MARCONI_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"

namespace marconi::testing {

// A tiny model so that byte numbers stay readable: 1 attention layer with 1 KV head of dim 1
// (4 bytes of KV per token at 2-byte values) and a paper SSM layer.
inline ModelSpec TinyModel() {
  return ModelSpec::Create("tiny", 8, 2,
                           {AttentionLayer{1, 1, 1}, PaperSsmLayer{2, 4}, MlpLayer{32, false}})
      .value();
}

inline std::unique_ptr<PrefixCache> MakeCache(const ModelSpec& model, int64_t capacity,
                                              const std::string& admission,
                                              const std::string& eviction, double alpha = 0) {
  PrefixCacheConfig config;
  config.capacity_bytes = capacity;
  auto cache = PrefixCache::Create(config, model, MakeAdmissionByName(admission).value(),
                                   MakeEvictionByName(eviction).value());
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  EXPECT_TRUE(alpha == 0 || (*cache)->SetAlpha(alpha).ok());
  return std::move(cache).value();
}

// A seeded generator; the seed is printed so that a failure can be replayed.
inline std::mt19937_64 SeededRng(uint64_t seed) {
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  return std::mt19937_64(seed);
}

inline int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// A random sequence built from a few shared stems, so that sequences branch often.
inline std::vector<Token> RandomSequence(std::mt19937_64& rng,
                                         const std::vector<std::vector<Token>>& stems, int alphabet,
                                         int64_t max_extra) {
  std::vector<Token> s =
      stems[static_cast<size_t>(Uniform(rng, 0, static_cast<int64_t>(stems.size()) - 1))];
  s.resize(static_cast<size_t>(Uniform(rng, 0, static_cast<int64_t>(s.size()))));
  const int64_t extra = Uniform(rng, s.empty() ? 1 : 0, max_extra);
  for (int64_t i = 0; i < extra; ++i)
    s.push_back(static_cast<Token>(Uniform(rng, 0, alphabet - 1)));
  if (s.empty()) s.push_back(0);
  return s;
}

}  // namespace marconi::testing

#endif  // MARCONI_TESTS_TEST_UTIL_H_
