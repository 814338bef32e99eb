// Helpers shared by the SGLang emulation's tests (engines_sglang_test.cc, its hand-worked cases
// and oracles; engines_sglang_load_test.cc, the request protocol under load).
#ifndef MARCONI_TESTS_ENGINES_SGLANG_UTIL_H_
#define MARCONI_TESTS_ENGINES_SGLANG_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "marconi/prefix_cache.h"
#include "sim/engines/sglang.h"

namespace marconi::sim::sglang_test {

inline constexpr int64_t kUnlimited = PrefixCacheConfig::kUnlimited;
using Tokens = std::vector<Token>;

inline const ModelSpec& Model() {
  static const ModelSpec m = ModelSpec::Preset("paper-7b").value();
  return m;
}

// Fresh tokens: every call returns tokens no earlier call returned.
inline Tokens Fresh(int64_t len) {
  static Token next = 1;
  Tokens t(static_cast<size_t>(len));
  for (Token& x : t) x = next++;
  return t;
}
inline Tokens Cat(const Tokens& a, const Tokens& b) {
  Tokens out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}
inline Tokens Prefix(const Tokens& a, int64_t len) {
  return Tokens(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(len));
}

// C = 64 and T = 256, as in §6; no chunking unless a test sets it.
inline SglangConfig Config(SglangStrategy strategy) {
  SglangConfig c;
  c.strategy = strategy;
  c.chunk_size = 64;
  c.track_interval = 256;
  return c;
}

inline std::unique_ptr<SglangCache> Make(const SglangConfig& c, int64_t capacity = kUnlimited) {
  auto cache = SglangCache::Create(Model(), capacity, c);
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  return std::move(cache).value();
}

struct Req {
  Tokens input, output;
  Tokens Committed() const {  // input + output minus the last sampled token
    Tokens s = input;
    if (output.size() > 1) s.insert(s.end(), output.begin(), output.end() - 1);
    return s;
  }
};

inline EngineLookup Serve(SglangCache& c, const Req& r) { return c.Serve(r.input, r.output, 0); }

// Sessions over a few system prompts: multi-turn continuations (input = the previous turn's
// input + output + new tokens), fresh requests on a system prompt, and partial overlaps that
// diverge inside earlier requests (edge splits, branch points).
inline std::vector<Req> RandomTrace(uint32_t seed, int requests) {
  std::mt19937 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(hi - lo + 1));
  };
  std::vector<Tokens> prompts;
  for (int i = 0; i < 3; ++i) prompts.push_back(Fresh(uniform(40, 500)));
  std::vector<Req> out;
  for (int i = 0; i < requests; ++i) {
    Req r;
    const int64_t kind = out.empty() ? 0 : uniform(0, 3);
    if (kind == 0) {
      r.input = Cat(prompts[static_cast<size_t>(uniform(0, 2))], Fresh(uniform(1, 700)));
    } else if (kind == 1 || kind == 2) {
      const Req& prev = out[static_cast<size_t>(uniform(0, static_cast<int64_t>(out.size()) - 1))];
      r.input = Cat(Cat(prev.input, prev.output), Fresh(uniform(1, 300)));
    } else {
      const Req& prev = out[static_cast<size_t>(uniform(0, static_cast<int64_t>(out.size()) - 1))];
      const Tokens full = Cat(prev.input, prev.output);
      r.input =
          Cat(Prefix(full, uniform(1, static_cast<int64_t>(full.size()))), Fresh(uniform(0, 200)));
    }
    r.output = Fresh(uniform(0, 600));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace marconi::sim::sglang_test

#endif  // MARCONI_TESTS_ENGINES_SGLANG_UTIL_H_
