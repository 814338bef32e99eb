// Token-sequence helpers shared by the engine emulations' tests.
#ifndef MARCONI_TESTS_TOKEN_UTIL_H_
#define MARCONI_TESTS_TOKEN_UTIL_H_

#include <algorithm>
#include <cstdint>
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
// The length of the longest common prefix.
inline int64_t Lcp(const std::vector<Token>& a, const std::vector<Token>& b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<int64_t>(ia - a.begin());
}

}  // namespace marconi::testing

#endif  // MARCONI_TESTS_TOKEN_UTIL_H_
