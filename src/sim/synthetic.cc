#include "sim/synthetic.h"

#include <algorithm>
#include <random>

namespace marconi::sim {
namespace {

std::vector<Token> RandomTokens(std::mt19937_64& rng, int64_t n) {
  std::vector<Token> v(static_cast<size_t>(n));
  for (Token& t : v) t = static_cast<Token>(3 + rng() % 31997);
  return v;
}

int64_t Between(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

}  // namespace

Trace SyntheticDocQa(int documents, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Trace trace;
  trace.source = "synthetic-docqa";
  const std::vector<Token> instruction = RandomTokens(rng, 200);
  for (int d = 0; d < documents; ++d) {
    std::vector<Token> prefix = instruction;
    const auto doc = RandomTokens(rng, Between(rng, 1000, 12000));
    prefix.insert(prefix.end(), doc.begin(), doc.end());
    double ts = 5.0 * d;
    const int64_t questions = Between(rng, 8, 15);
    for (int64_t q = 0; q < questions; ++q) {
      TraceRequest r;
      r.session_id = "doc" + std::to_string(d);
      r.turn_id = q;
      r.ts = ts;
      r.input = prefix;
      const auto question = RandomTokens(rng, Between(rng, 20, 60));
      r.input.insert(r.input.end(), question.begin(), question.end());
      r.output = RandomTokens(rng, Between(rng, 10, 50));
      trace.requests.push_back(std::move(r));
      // Exponential gap of mean 2 s, by inversion (portable across standard libraries).
      ts += -2.0 * std::log(1.0 - static_cast<double>(rng() >> 11) * 0x1.0p-53);
    }
  }
  std::stable_sort(trace.requests.begin(), trace.requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.ts < b.ts; });
  return trace;
}

}  // namespace marconi::sim
