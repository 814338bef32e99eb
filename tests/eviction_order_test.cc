// What eviction may take and in which order, through the cache: an insert never evicts what its
// own request holds while anything else can go; equal timestamps fall to the older access, not to
// node ids; LRU over leaves refreshes a node whose edge a lookup matched only partly.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"
#include "test_util.h"

namespace marconi {
namespace {

using Recency = FlopAwareEvictionConfig::Recency;
using testing::TinyModel;
using testing::Uniform;

struct EvictionSetup {
  std::string name;
  std::function<std::unique_ptr<EvictionPolicy>()> make;
};

std::vector<EvictionSetup> AllEvictions() {
  std::vector<EvictionSetup> out = {{"lru", [] { return MakeLruEviction(); }},
                                    {"gdsf", [] { return MakeGdsfEviction(); }}};
  for (Recency r : {Recency::kInverseRequests, Recency::kLinearTime}) {
    for (double alpha : {0.0, 1.0, 5.0, 50.0}) {
      out.push_back(
          {"flop_aware/" + std::string(RecencyName(r)) + "/" + std::to_string(alpha), [=] {
             return MakeFlopAwareEviction({alpha, r}).value();
           }});
    }
  }
  return out;
}

std::unique_ptr<PrefixCache> Make(int64_t capacity, std::unique_ptr<AdmissionPolicy> admission,
                                  std::unique_ptr<EvictionPolicy> eviction) {
  PrefixCacheConfig config;
  config.capacity_bytes = capacity;
  return PrefixCache::Create(config, TinyModel(), std::move(admission), std::move(eviction))
      .value();
}

std::vector<Token> Range(Token from, int64_t n) {
  std::vector<Token> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(from + static_cast<Token>(i));
  return v;
}

// An old, efficient entry and a new, inefficient one that do not both fit: with a high alpha
// FLOP-aware eviction ranks the new leaf lowest, but the insert that stored it must not evict
// it while the old entry can go.
TEST(EvictionOrder, AnInsertDoesNotEvictWhatItJustStored) {
  const ModelSpec model = TinyModel();
  const std::vector<Token> old_entry = Range(1000, 200);  // deep: many FLOPs per byte
  const std::vector<Token> new_entry = Range(5000, 2);    // shallow: few
  const int64_t one_entry = model.StateBytesPerCheckpoint() + 200 * model.KvBytesPerToken();
  for (const EvictionSetup& e : AllEvictions()) {
    SCOPED_TRACE(e.name);
    auto cache = Make(one_entry, MakeLastTokenAdmission(), e.make());
    const int64_t end_old = 200, end_new = 2;
    ASSERT_TRUE(cache->Insert(old_entry, std::span<const int64_t>(&end_old, 1), 0).ok());
    ASSERT_TRUE(cache->Insert(new_entry, std::span<const int64_t>(&end_new, 1), 1).ok());
    EXPECT_EQ(cache->Lookup(new_entry).reusable_tokens, 2);
    EXPECT_EQ(cache->Lookup(old_entry).reusable_tokens, 0);
    EXPECT_EQ(cache->stats().self_evictions, 0);
    ASSERT_TRUE(cache->CheckInvariants().ok());
  }
}

// Content that cannot fit even alone is still not kept over capacity: it goes last, counted.
TEST(EvictionOrder, ContentThatCannotFitGoesLastAndIsCounted) {
  const ModelSpec model = TinyModel();
  const int64_t capacity = model.StateBytesPerCheckpoint() + 10 * model.KvBytesPerToken();
  for (const EvictionSetup& e : AllEvictions()) {
    SCOPED_TRACE(e.name);
    auto cache = Make(capacity, MakeLastTokenAdmission(), e.make());
    const int64_t small = 5, big = 50;
    ASSERT_TRUE(cache->Insert(Range(0, 5), std::span<const int64_t>(&small, 1), 0).ok());
    ASSERT_TRUE(cache->Insert(Range(100, 50), std::span<const int64_t>(&big, 1), 1).ok());
    EXPECT_LE(cache->stats().bytes(), capacity);
    EXPECT_EQ(cache->stats().checkpoints, 0);
    EXPECT_EQ(cache->stats().self_evictions, 1);
    ASSERT_TRUE(cache->CheckInvariants().ok());
  }
}

// Property over random workloads with frequent evictions: after CompleteRequest, the request's
// last-token checkpoint and the node it resumed from are still cached, unless the insert had to
// evict its own content (self_evictions grew). Fails for a policy that evicts the newest leaf.
TEST(EvictionOrder, CompletedRequestKeepsItsStatesAndResumePoint) {
  const ModelSpec model = TinyModel();
  for (const EvictionSetup& e : AllEvictions()) {
    SCOPED_TRACE(e.name);
    auto rng = testing::SeededRng(4242);
    const int64_t capacity = 5 * model.StateBytesPerCheckpoint() + 120 * model.KvBytesPerToken();
    auto cache = Make(capacity, MakeJudiciousAdmission(), e.make());
    std::vector<std::vector<Token>> stems;
    for (int i = 0; i < 4; ++i) stems.push_back(testing::RandomSequence(rng, {{0}}, 6, 30));
    std::vector<std::vector<Token>> history;
    for (int step = 0; step < 400; ++step) {
      // Half the requests continue an earlier conversation (a hit on its last token).
      std::vector<Token> input = !history.empty() && Uniform(rng, 0, 1) == 0
                                     ? history[static_cast<size_t>(Uniform(
                                           rng, 0, static_cast<int64_t>(history.size()) - 1))]
                                     : testing::RandomSequence(rng, stems, 6, 20);
      for (int64_t i = Uniform(rng, 1, 6); i > 0; --i) {
        input.push_back(static_cast<Token>(Uniform(rng, 0, 5)));
      }
      const std::vector<Token> output = {static_cast<Token>(Uniform(rng, 0, 5)), 9};
      auto h = cache->BeginRequest(input, step / 3);  // repeated timestamps
      ASSERT_TRUE(h.ok());
      const int64_t resumed = h->lookup().reusable_tokens;
      const int64_t self_before = cache->stats().self_evictions;
      ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), input, output, step / 3).ok());
      std::vector<Token> full = input;
      full.insert(full.end(), output.begin(), output.end());
      if (cache->stats().self_evictions == self_before) {
        ASSERT_EQ(cache->Lookup(full).reusable_tokens, static_cast<int64_t>(full.size()))
            << "step " << step << ": the last-token state just stored was evicted";
        ASSERT_GE(cache->Lookup(input).reusable_tokens, resumed)
            << "step " << step << ": the resume point was evicted by the request's own insert";
      }
      ASSERT_TRUE(cache->CheckInvariants().ok());
      ASSERT_LE(cache->stats().bytes(), capacity);
      history.push_back(full);
    }
    EXPECT_GT(cache->stats().evictions, 100);
  }
}

// Every request at the same timestamp, room for two entries: the cache must keep the two most
// recent arrivals. Node ids are recycled by evictions, so ordering ties by id evicts a newer
// entry that took an older one's slot.
TEST(EvictionOrder, EqualTimestampsEvictTheOlderArrival) {
  const ModelSpec model = TinyModel();
  const int64_t capacity = 2 * (model.StateBytesPerCheckpoint() + 8 * model.KvBytesPerToken());
  std::vector<EvictionSetup> setups = {{"lru", [] { return MakeLruEviction(); }}};
  for (Recency r : {Recency::kInverseRequests, Recency::kLinearTime}) {
    setups.push_back({"flop_aware/" + std::string(RecencyName(r)), [=] {
                        return MakeFlopAwareEviction({0.0, r}).value();
                      }});
  }
  for (const EvictionSetup& e : setups) {
    SCOPED_TRACE(e.name);
    auto cache = Make(capacity, MakeLastTokenAdmission(), e.make());
    std::vector<std::vector<Token>> inserted;
    for (int i = 0; i < 12; ++i) {
      inserted.push_back(Range(100 * (i + 1), 8));
      const int64_t end = 8;
      ASSERT_TRUE(cache->Insert(inserted.back(), std::span<const int64_t>(&end, 1), 7.0).ok());
      for (int j = 0; j <= i; ++j) {
        const bool kept = cache->Lookup(inserted[static_cast<size_t>(j)]).reusable_tokens == 8;
        ASSERT_EQ(kept, j >= i - 1) << "after insert " << i << ", entry " << j;
      }
    }
  }
}

// LRU over leaves (SGLang+): a lookup that matches part of an entry's edge refreshes it, as
// SGLang's _match_prefix_helper does, so the other, untouched entry is evicted first.
TEST(EvictionOrder, LruRefreshesAPartlyMatchedEdge) {
  const ModelSpec model = TinyModel();
  const int64_t entry = model.StateBytesPerCheckpoint() + 20 * model.KvBytesPerToken();
  auto cache = Make(2 * entry, MakeLastTokenAdmission(), MakeLruEviction());
  const std::vector<Token> a = Range(0, 20), b = Range(500, 20), c = Range(900, 20);
  const int64_t end = 20;
  ASSERT_TRUE(cache->Insert(a, std::span<const int64_t>(&end, 1), 1).ok());
  ASSERT_TRUE(cache->Insert(b, std::span<const int64_t>(&end, 1), 2).ok());
  // Shares a's first 10 tokens: no state there (a miss), but a's edge was read.
  std::vector<Token> query = Range(0, 10);
  query.push_back(-1);
  {
    auto h = cache->BeginRequest(query, 3);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->lookup().reusable_tokens, 0);
    EXPECT_EQ(h->lookup().matched_tokens, 10);
  }
  ASSERT_TRUE(cache->Insert(c, std::span<const int64_t>(&end, 1), 4).ok());
  EXPECT_EQ(cache->Lookup(a).reusable_tokens, 20);
  EXPECT_EQ(cache->Lookup(b).reusable_tokens, 0);
  EXPECT_EQ(cache->Lookup(c).reusable_tokens, 20);
}

}  // namespace
}  // namespace marconi
