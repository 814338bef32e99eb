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
        one.Release();
        one.Release();  // idempotent: counted once
        cache.reset();
      },
      "PrefixCache destroyed while 1 of its Leases are held");
}

// Moves hand a handle's lease over without counting it twice; every way of ending one (Release,
// destruction, being assigned over, CompleteRequest) uncounts it once: the cache then dies quietly.
TEST(Lease, MovedAndReleasedLeasesLetTheCacheGo) {
  auto cache = CacheHoldingA();
  {
    std::vector<RequestHandle> handles;
    for (int i = 0; i < 4; ++i) handles.push_back(cache->BeginRequest(kB, i + 1).value());
    ASSERT_TRUE(handles[0].holds_lease());
    RequestHandle moved = std::move(handles[0]);
    EXPECT_FALSE(handles[0].holds_lease());  // NOLINT(bugprone-use-after-move): moved-from state
    EXPECT_TRUE(moved.holds_lease());
    EXPECT_EQ(moved.lease().node(), moved.lookup().resume_node);
    moved = std::move(handles[1]);  // releases the first, takes the second
    handles[2].Release();
    EXPECT_FALSE(handles[2].holds_lease());
    ASSERT_TRUE(cache->CompleteRequest(std::move(handles[3]), kB, {}, 5).ok());
    // A clone has no request in flight: it goes while the original's leases are held.
    cache->Clone().reset();
  }
  EXPECT_TRUE(cache->CheckInvariants().ok());
  cache.reset();  // would abort if a lease were still counted
  SUCCEED();
}

// A released handle is a request abandoned: completing it inserts as for a miss, without a pin.
TEST(Lease, CompletingAReleasedHandleStillInserts) {
  auto cache = CacheHoldingA();
  RequestHandle h = cache->BeginRequest(kB, 1).value();
  h.Release();
  EXPECT_EQ(h.lookup().reusable_tokens, 3);  // what the lookup found stays readable
  ASSERT_TRUE(cache->CompleteRequest(std::move(h), kB, {}, 2).ok());
  EXPECT_EQ(cache->Lookup(kB).reusable_tokens, 5);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

}  // namespace
}  // namespace marconi
