// The C++ side of python/bench_binding.py: the same begin_request + complete_request calls on a
// 32K-token request, timed without Python. Prints nanoseconds per (begin + complete).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
  const int64_t length = argc > 2 ? std::atoll(argv[2]) : 32768;
  using marconi::Token;
  auto cache = marconi::PrefixCache::Create({}, marconi::ModelSpec::Preset("paper-7b").value(),
                                            marconi::MakeJudiciousAdmission(),
                                            marconi::MakeFlopAwareEviction({}).value())
                   .value();
  // The workload of bench_binding.py: one input (token i = i % 32000) served again and again,
  // each time with a distinct 16-token output (so every completion inserts one new leaf).
  std::vector<Token> input(static_cast<size_t>(length));
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<Token>(i % 32000);
  std::vector<std::vector<Token>> outputs(static_cast<size_t>(iterations));
  for (int it = 0; it < iterations; ++it) {
    for (int j = 0; j < 16; ++j) outputs[static_cast<size_t>(it)].push_back(1000000 + it * 16 + j);
  }
  const auto start = std::chrono::steady_clock::now();
  for (int it = 0; it < iterations; ++it) {
    auto req = cache->BeginRequest(input, static_cast<double>(it));
    if (!req.ok()) return 1;
    if (!cache
             ->CompleteRequest(std::move(req).value(), input, outputs[static_cast<size_t>(it)],
                               static_cast<double>(it))
             .ok()) {
      return 1;
    }
  }
  const double ns = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count());
  std::printf("%.0f\n", ns / iterations);
  return 0;
}
