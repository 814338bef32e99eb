// Token-sequence helpers shared by the tests of the engine emulations and the serving model.
#ifndef MARCONI_TESTS_TOKEN_UTIL_H_
#define MARCONI_TESTS_TOKEN_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "marconi/types.h"

namespace marconi::testing {

// `len` tokens starting at `base` (distinct bases give distinct sequences).
inline std::vector<Token> Seq(Token base, int64_t len) {
  std::vector<Token> v(static_cast<size_t>(len));
  for (int64_t i = 0; i < len; ++i) v[static_cast<size_t>(i)] = base + static_cast<Token>(i);
  return v;
}
inline std::vector<Token> Cat(std::vector<Token> a, const std::vector<Token>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
inline std::vector<Token> Prefix(const std::vector<Token>& a, int64_t len) {
  return {a.begin(), a.begin() + len};
}
// `n` tokens drawn uniformly from a 30,000-token vocabulary.
inline std::vector<Token> RandomTokens(std::mt19937_64& rng, int64_t n) {
  std::vector<Token> v(static_cast<size_t>(n));
  for (Token& t : v) t = static_cast<Token>(rng() % 30000);
  return v;
}
// The length of the longest common prefix.
inline int64_t Lcp(const std::vector<Token>& a, const std::vector<Token>& b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<int64_t>(ia - a.begin());
}

}  // namespace marconi::testing

#endif  // MARCONI_TESTS_TOKEN_UTIL_H_
