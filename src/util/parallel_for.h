// ParallelFor: runs fn(i) for every i in [0, n) on up to `threads` threads (the caller's included).
// Work is handed out by an atomic counter, so callers that store results by index get output that
// does not depend on scheduling. fn must be safe to call concurrently for different i.
#ifndef MARCONI_UTIL_PARALLEL_FOR_H_
#define MARCONI_UTIL_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <thread>
#include <vector>

namespace marconi::internal {

// threads == 0 means the machine's hardware concurrency.
inline void ParallelFor(size_t n, size_t threads, const std::function<void(size_t)>& fn) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = std::max<size_t>(1, std::min(threads, n));
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) fn(i);
  };
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

}  // namespace marconi::internal

#endif  // MARCONI_UTIL_PARALLEL_FOR_H_
