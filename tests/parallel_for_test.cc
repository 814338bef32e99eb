#include "util/parallel_for.h"

#include <gtest/gtest.h>

#include <atomic>

namespace marconi::internal {
namespace {

TEST(ParallelFor, VisitsEveryIndexExactlyOnce) {
  for (size_t threads : {0u, 1u, 2u, 7u}) {
    for (size_t n : {0u, 1u, 5u, 1000u}) {
      std::vector<std::atomic<int>> seen(n);
      ParallelFor(n, threads, [&](size_t i) { seen[i]++; });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i].load(), 1) << "n " << n << " i " << i;
    }
  }
}

}  // namespace
}  // namespace marconi::internal
