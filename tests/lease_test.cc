// Leases: counted by their cache, which refuses to be destroyed while one is held.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "marconi/prefix_cache.h"
#include "test_util.h"

namespace marconi {
namespace {

using testing::MakeCache;
using testing::TinyModel;

const std::vector<Token> kA = {1, 2, 3};
const std::vector<Token> kB = {1, 2, 3, 4, 5};

std::unique_ptr<PrefixCache> CacheHoldingA() {
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", "lru");
  EXPECT_TRUE(cache->Insert(kA, std::vector<int64_t>{3}, 0).ok());
  return cache;
}

TEST(LeaseDeathTest, DestroyingTheCacheWhileALeaseIsHeldAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto cache = CacheHoldingA();
        RequestHandle one = cache->BeginRequest(kA, 1).value();
        RequestHandle two = cache->BeginRequest(kB, 2).value();
        cache.reset();  // both leases outlive the cache
      },
      "PrefixCache destroyed while 2 of its Leases are held");
}

TEST(LeaseDeathTest, AReleasedLeaseNoLongerCounts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto cache = CacheHoldingA();
        RequestHandle one = cache->BeginRequest(kA, 1).value();
        RequestHandle two = cache->BeginRequest(kB, 2).value();
        one.lease.Release();
        one.lease.Release();  // idempotent: counted once
        cache.reset();
      },
      "PrefixCache destroyed while 1 of its Leases are held");
}

// Moves hand a lease over without counting it twice; every way of ending one (Release,
// destruction, being assigned over, CompleteRequest) uncounts it once: the cache then dies quietly.
TEST(Lease, MovedAndReleasedLeasesLetTheCacheGo) {
  auto cache = CacheHoldingA();
  {
    std::vector<RequestHandle> handles;
    for (int i = 0; i < 4; ++i) handles.push_back(cache->BeginRequest(kB, i + 1).value());
    ASSERT_TRUE(handles[0].lease.held());
    Lease moved = std::move(handles[0].lease);
    EXPECT_FALSE(handles[0].lease.held());
    EXPECT_TRUE(moved.held());
    moved = std::move(handles[1].lease);  // releases the first, takes the second
    handles[2].lease.Release();
    ASSERT_TRUE(cache->CompleteRequest(std::move(handles[3]), kB, {}, 5).ok());
    // A clone has no request in flight: it goes while the original's leases are held.
    cache->Clone().reset();
  }
  EXPECT_TRUE(cache->CheckInvariants().ok());
  cache.reset();  // would abort if a lease were still counted
  SUCCEED();
}

}  // namespace
}  // namespace marconi
