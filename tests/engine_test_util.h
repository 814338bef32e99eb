// Helpers shared by the reference-model tests: a small model, seeded prompts, a tolerance.
#ifndef MARCONI_TESTS_ENGINE_TEST_UTIL_H_
#define MARCONI_TESTS_ENGINE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/hybrid_model.h"

namespace marconi::engine {

inline HybridModel Model(const std::string& pattern = "MAMMAM") {
  HybridConfig c;
  c.pattern = pattern;
  c.chunk_size = 8;
  auto m = HybridModel::Create(c);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

inline std::vector<Token> Prompt(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::vector<Token> t(n);
  for (Token& x : t) x = static_cast<Token>(rng() % 256);
  return t;
}

// Largest |a - b| relative to the largest |a|.
inline float MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0, scale = 1e-6f;
  for (float v : a) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / scale);
  return worst;
}

}  // namespace marconi::engine

#endif  // MARCONI_TESTS_ENGINE_TEST_UTIL_H_
