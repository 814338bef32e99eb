// SharedPrefixCache: the thread-safe front. Several threads begin and complete requests while
// others look up; the final content is checked against a brute-force model that does not depend
// on the interleaving. Runs under ThreadSanitizer in CI (scripts/test.sh).
#include "marconi/shared_prefix_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <set>
#include <thread>
#include <vector>

#include "test_util.h"

namespace marconi {
namespace {

using testing::MakeCache;
using testing::RandomSequence;
using testing::SeededRng;
using testing::TinyModel;
using testing::Uniform;

constexpr int64_t kBlock = 32;  // MakeAdmissionByName("block")

std::unique_ptr<SharedPrefixCache> MakeFront(int64_t capacity, const std::string& admission) {
  return SharedPrefixCache::Create(MakeCache(TinyModel(), capacity, admission, "lru")).value();
}

struct Job {
  std::vector<Token> input, output;
  std::vector<Token> Whole() const {
    std::vector<Token> s = input;
    s.insert(s.end(), output.begin(), output.end());
    return s;
  }
};

// Block admission stores a state at every multiple of kBlock of input + output, whatever the
// order of the requests, so the final content of an unbounded cache is order-independent: one
// checkpoint per distinct prefix of length k * kBlock over all requests.
TEST(SharedPrefixCache, ConcurrentRequestsAndLookupsMatchABruteForceModel) {
  auto rng = SeededRng(20261123);
  std::vector<std::vector<Token>> stems;
  for (int i = 0; i < 4; ++i) {
    std::vector<Token> s;
    for (int k = 0; k < 200; ++k) s.push_back(static_cast<Token>(Uniform(rng, 0, 5)));
    stems.push_back(s);
  }
  constexpr int kWriters = 3, kReaders = 2, kPerWriter = 60;
  std::vector<std::vector<Job>> jobs(kWriters);
  for (auto& list : jobs) {
    for (int i = 0; i < kPerWriter; ++i) {
      Job j{RandomSequence(rng, stems, 6, 80), {}};
      for (int64_t k = Uniform(rng, 0, 40); k > 0; --k) {
        j.output.push_back(static_cast<Token>(Uniform(rng, 0, 5)));
      }
      list.push_back(j);
    }
  }
  auto front = MakeFront(PrefixCacheConfig::kUnlimited, "block");
  // done[w] = how many of writer w's jobs have completed (published after CompleteRequest).
  std::vector<std::atomic<int>> done(kWriters);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        const Job& j = jobs[w][i];
        // Each thread's own clock: deliberately out of order across threads.
        const double now = i + 0.25 * w;
        auto r = front->BeginRequest(j.input, now);
        if (!r.ok()) {
          ++failures;
          continue;
        }
        if (i % 5 == 1) {
          // Chunked prefill: the first half's planned states go in first, the pin moves there.
          SharedPrefixCache::Request& req = *r;
          const int64_t half = static_cast<int64_t>(j.input.size()) / 2;
          std::vector<int64_t> chunk;
          for (int64_t p : req.handle().prefill_checkpoints()) {
            if (p <= half) chunk.push_back(p);
          }
          if (!chunk.empty() && !front->InsertChunk(req, j.input, half, chunk, now).ok()) {
            ++failures;
          }
          if (!chunk.empty() && req.handle().resume_tokens() != chunk.back()) ++failures;
        }
        if (i % 7 == 3) {
          // An aborted request, its pin given back from this thread.
          SharedPrefixCache::Request moved = std::move(r).value();
          moved.Release();
        } else if (!front->CompleteRequest(std::move(r).value(), j.input, j.output, now).ok()) {
          ++failures;
        }
        done[w].store(i + 1, std::memory_order_release);
      }
    });
  }
  for (int k = 0; k < kReaders; ++k) {
    threads.emplace_back([&, k] {
      std::mt19937_64 local(static_cast<uint64_t>(k) + 7);
      for (int it = 0; it < 400; ++it) {
        const int w = static_cast<int>(Uniform(local, 0, kWriters - 1));
        const int n = done[w].load(std::memory_order_acquire);
        if (n == 0) continue;
        const int i = static_cast<int>(Uniform(local, 0, n - 1));
        if (i % 7 == 3) continue;
        const std::vector<Token> whole = jobs[w][i].Whole();
        // Content only grows in an unbounded cache: a completed request stays fully resumable.
        const int64_t want = static_cast<int64_t>(whole.size()) / kBlock * kBlock;
        if (front->Lookup(whole).reusable_tokens < want) ++failures;
        (void)front->stats();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);

  std::set<std::vector<Token>> checkpoints;
  for (const auto& list : jobs) {
    for (int i = 0; i < kPerWriter; ++i) {
      // Aborted requests stored nothing of their own.
      const std::vector<Token> whole =
          i % 7 == 3 ? std::vector<Token>() : list[static_cast<size_t>(i)].Whole();
      for (size_t p = kBlock; p <= whole.size(); p += kBlock) {
        checkpoints.emplace(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(p));
      }
    }
  }
  const CacheStats st = front->stats();
  EXPECT_EQ(st.checkpoints, static_cast<int64_t>(checkpoints.size()));
  EXPECT_EQ(st.requests, kWriters * kPerWriter);
  for (const auto& list : jobs) {
    for (int i = 0; i < kPerWriter; ++i) {
      if (i % 7 == 3) continue;
      const std::vector<Token> whole = list[static_cast<size_t>(i)].Whole();
      EXPECT_EQ(front->Lookup(whole).reusable_tokens,
                static_cast<int64_t>(whole.size()) / kBlock * kBlock);
    }
  }
  EXPECT_TRUE(front->Read([](const PrefixCache& c) { return c.CheckInvariants(); }).ok());
}

// A request destroyed on another thread gives its pin back under the front's lock: afterwards
// its resume node can be evicted.
TEST(SharedPrefixCache, ARequestDroppedOnAnotherThreadUnpins) {
  const ModelSpec model = TinyModel();
  // Room for one 40-token sequence with its checkpoint, not for two.
  const int64_t capacity = 60 * model.KvBytesPerToken() + model.StateBytesPerCheckpoint();
  auto front = MakeFront(capacity, "judicious");
  std::vector<Token> a(40, 1), b(40, 2);
  auto first = front->BeginRequest(a, 0).value();
  ASSERT_TRUE(front->CompleteRequest(std::move(first), a, {}, 0).ok());
  auto held = front->BeginRequest(a, 1).value();
  ASSERT_GT(held.handle().lookup().reusable_tokens, 0);
  // While `held` pins a's node, inserting b cannot evict it: b goes instead.
  EXPECT_TRUE(front->Insert(b, std::vector<int64_t>{40}, 2).ok());
  EXPECT_GT(front->Lookup(a).reusable_tokens, 0);
  EXPECT_EQ(front->Lookup(b).reusable_tokens, 0);
  std::thread([r = std::move(held)]() mutable { r = SharedPrefixCache::Request(); }).join();
  // Unpinned now: the next insert may evict a.
  EXPECT_TRUE(front->Insert(b, std::vector<int64_t>{40}, 3).ok());
  EXPECT_EQ(front->Lookup(a).reusable_tokens, 0);
  EXPECT_EQ(front->Lookup(b).reusable_tokens, 40);
  EXPECT_TRUE(front->Read([](const PrefixCache& c) { return c.CheckInvariants(); }).ok());
}

TEST(SharedPrefixCache, TimeIsStampedMonotoneAndBadCallsChangeNothing) {
  auto front = MakeFront(PrefixCacheConfig::kUnlimited, "judicious");
  const std::vector<Token> a(10, 1);
  ASSERT_TRUE(front->Insert(a, std::vector<int64_t>{10}, 5).ok());
  // A late thread's earlier time is accepted (stamped 5), not refused.
  EXPECT_TRUE(front->Insert(a, std::vector<int64_t>{10}, 4).ok());
  EXPECT_EQ(front->Insert(a, std::vector<int64_t>{10}, std::nan("")).code(),
            StatusCode::kInvalidArgument);
  // A refused call does not move the clock: time 100 was never accepted.
  EXPECT_FALSE(front->BeginRequest({}, 100).ok());
  auto r = front->BeginRequest(a, 6);
  ASSERT_TRUE(r.ok());
  auto other = MakeFront(PrefixCacheConfig::kUnlimited, "judicious");
  EXPECT_EQ(other->CompleteRequest(std::move(r).value(), a, {}, 7).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(SharedPrefixCache::Create(nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(front->stats().requests, 1);
}

}  // namespace
}  // namespace marconi
