// The request protocol beyond BeginRequest/CompleteRequest: chunked prefill (InsertChunk) against
// a brute-force model of the cache's content, its errors, and the pin it moves.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "marconi/prefix_cache.h"
#include "test_util.h"

namespace marconi {
namespace {

using testing::MakeCache;
using testing::RandomSequence;
using testing::SeededRng;
using testing::TinyModel;
using testing::Uniform;

// What an unbounded cache holds after a series of inserts: the KV of every prefix up to each
// insert's last checkpoint, and a state after every checkpointed prefix.
struct Model {
  std::set<std::vector<Token>> kv, states;
  void Insert(std::span<const Token> seq, std::span<const int64_t> positions) {
    if (positions.empty()) return;
    for (int64_t i = 1; i <= positions.back(); ++i) kv.insert({seq.begin(), seq.begin() + i});
    for (int64_t p : positions) states.insert({seq.begin(), seq.begin() + p});
  }
  int64_t Reusable(std::span<const Token> q) const {
    for (int64_t i = static_cast<int64_t>(q.size()); i > 0; --i) {
      if (states.count({q.begin(), q.begin() + i})) return i;
    }
    return 0;
  }
};

// Strictly increasing positions in (lo, hi], each kept with probability 1/3.
std::vector<int64_t> Some(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  std::vector<int64_t> p;
  for (int64_t i = lo + 1; i <= hi; ++i) {
    if (Uniform(rng, 0, 2) == 0) p.push_back(i);
  }
  return p;
}

void ExpectSameContent(const PrefixCache& cache, const Model& model, const std::string& where) {
  const Status inv = cache.CheckInvariants();
  ASSERT_TRUE(inv.ok()) << where << ": " << inv.ToString();
  ASSERT_EQ(cache.stats().checkpoints, static_cast<int64_t>(model.states.size())) << where;
  ASSERT_EQ(cache.stats().cached_tokens, static_cast<int64_t>(model.kv.size())) << where;
  // Same count, and every state of the model is in the cache: the same set.
  for (const auto& s : model.states) {
    ASSERT_EQ(cache.Lookup(s).reusable_tokens, static_cast<int64_t>(s.size())) << where;
  }
}

// A request in flight in the randomised tests: its handle, its input and how much of it the
// engine has prefilled so far.
struct Flight {
  RequestHandle handle;
  std::vector<Token> input;
  int64_t computed = 0;
};

class ChunkedPrefill : public ::testing::TestWithParam<const char*> {};

// Random requests, several in flight, each prefilled in random chunks with random captures, then
// completed with random captures; standalone inserts between them. At unbounded capacity the
// cache's content is exactly what the model expects, and the statistics count each request once.
TEST_P(ChunkedPrefill, ContentMatchesBruteForce) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    auto rng = SeededRng(seed * 7919);
    auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "judicious", GetParam());
    Model model;
    std::vector<std::vector<Token>> stems;
    for (int i = 0; i < 4; ++i) stems.push_back(RandomSequence(rng, {{}}, 3, 40));
    std::vector<Flight> flying;
    int64_t requests = 0, inserts = 0;
    double now = 0;
    for (int step = 0; step < 400; ++step) {
      const std::string where = "seed " + std::to_string(seed) + " step " + std::to_string(step);
      const int64_t op = Uniform(rng, 0, 9);
      if (op == 0) {  // a standalone insert
        const auto seq = RandomSequence(rng, stems, 3, 10);
        auto cps = Some(rng, 0, static_cast<int64_t>(seq.size()));
        if (cps.empty()) cps.push_back(static_cast<int64_t>(seq.size()));
        ASSERT_TRUE(cache->Insert(seq, cps, now += 1).ok()) << where;
        model.Insert(seq, cps);
        ++inserts;
      } else if (flying.size() < 3 && (op <= 3 || flying.empty())) {
        const auto q = RandomSequence(rng, stems, 3, 20);
        auto h = cache->BeginRequest(q, now += 1);
        ASSERT_TRUE(h.ok()) << where;
        ASSERT_EQ(h->lookup().reusable_tokens, model.Reusable(q)) << where;
        ASSERT_EQ(h->resume_tokens(), h->lookup().reusable_tokens) << where;
        ++requests;
        const int64_t computed = h->resume_tokens();
        flying.push_back({std::move(h).value(), q, computed});
      } else {
        const size_t i =
            static_cast<size_t>(Uniform(rng, 0, static_cast<int64_t>(flying.size()) - 1));
        Flight& f = flying[i];
        const int64_t n = static_cast<int64_t>(f.input.size());
        if (f.computed < n && Uniform(rng, 0, 2) != 0) {  // the next chunk
          const int64_t to = Uniform(rng, f.computed + 1, n);
          // Captures in (resume, to]: the planned ones there, and others at random.
          std::set<int64_t> pick;
          for (int64_t p : f.handle.prefill_checkpoints()) {
            if (p > f.handle.resume_tokens() && p <= to && Uniform(rng, 0, 3) != 0) pick.insert(p);
          }
          for (int64_t p : Some(rng, f.handle.resume_tokens(), to)) pick.insert(p);
          const std::vector<int64_t> cps(pick.begin(), pick.end());
          const int64_t resume_before = f.handle.resume_tokens();
          ASSERT_TRUE(cache->InsertChunk(f.handle, f.input, to, cps, now += 1).ok()) << where;
          model.Insert(f.input, cps);
          if (!cps.empty()) {
            ++inserts;
            ASSERT_TRUE(f.handle.holds_lease()) << where;
            ASSERT_EQ(f.handle.resume_tokens(), cps.back()) << where;
          } else {
            ASSERT_EQ(f.handle.resume_tokens(), resume_before) << where;
          }
          f.computed = to;
        } else {  // completion with random captures over input + output
          const auto out = RandomSequence(rng, stems, 3, 6);
          std::vector<Token> seq = f.input;
          seq.insert(seq.end(), out.begin(), out.end());
          const auto cps = Some(rng, 0, static_cast<int64_t>(seq.size()));
          ASSERT_TRUE(cache->CompleteRequest(std::move(f.handle), f.input, out, now += 1, cps).ok())
              << where;
          model.Insert(seq, cps);
          inserts += cps.empty() ? 0 : 1;
          flying.erase(flying.begin() + static_cast<long>(i));
        }
      }
      ExpectSameContent(*cache, model, where);
      ASSERT_EQ(cache->stats().requests, requests) << where;
      ASSERT_EQ(cache->stats().inserts, inserts) << where;
      ASSERT_EQ(cache->stats().evictions, 0) << where;
    }
    flying.clear();  // releases the pins before the cache goes
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, ChunkedPrefill, ::testing::Values("lru", "flop_aware", "gdsf"));

std::vector<Token> Distinct(Token first, int64_t n) {
  std::vector<Token> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(first + static_cast<Token>(i));
  return v;
}

TEST(InsertChunk, BadInputIsRejectedAndChangesNothing) {
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "judicious", "flop_aware");
  const auto input = Distinct(1, 20);
  ASSERT_TRUE(cache->Insert(input, std::vector<int64_t>{5}, 0).ok());
  RequestHandle h = cache->BeginRequest(input, 1).value();
  ASSERT_EQ(h.resume_tokens(), 5);
  const CacheStats before = cache->stats();
  const auto shorter = Distinct(1, 19);
  struct Bad {
    std::span<const Token> input;
    int64_t computed;
    std::vector<int64_t> captured;
    double now;
    const char* expect;
  };
  const Bad bad[] = {
      {shorter, 10, {10}, 2, "BeginRequest's had 20"},
      {{}, 10, {10}, 2, "BeginRequest's had 20"},
      {input, 5, {}, 2, "computed_tokens 5"},  // not past the resume point
      {input, 21, {21}, 2, "computed_tokens 21"},
      {input, -1, {}, 2, "computed_tokens -1"},
      {input, 10, {5, 8}, 2, "checkpoint position 5"},    // at the resume point
      {input, 10, {8, 11}, 2, "checkpoint position 11"},  // past what was computed
      {input, 10, {8, 8}, 2, "checkpoint position 8"},
      {input, 10, {9, 7}, 2, "checkpoint position 7"},
      {input, 10, {10}, NAN, "not finite"},
      {input, 10, {10}, 0.5, "earlier"},
  };
  for (const Bad& b : bad) {
    const Status s = cache->InsertChunk(h, b.input, b.computed, b.captured, b.now);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << b.expect;
    EXPECT_NE(s.message().find(b.expect), std::string::npos) << s.message();
    EXPECT_EQ(h.resume_tokens(), 5);
    EXPECT_TRUE(h.holds_lease());
  }
  EXPECT_EQ(cache->stats().inserts, before.inserts);
  EXPECT_EQ(cache->stats().checkpoints, before.checkpoints);
  EXPECT_EQ(cache->stats().cached_tokens, before.cached_tokens);
  EXPECT_TRUE(cache->CheckInvariants().ok());
  // A handle of another cache is refused, not applied to this one's nodes.
  auto other = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "judicious", "flop_aware");
  EXPECT_EQ(other->InsertChunk(h, input, 10, std::vector<int64_t>{10}, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(h.holds_lease());
  RequestHandle none;  // belongs to no request
  EXPECT_EQ(cache->InsertChunk(none, input, 10, std::vector<int64_t>{10}, 2).code(),
            StatusCode::kInvalidArgument);
  // CompleteRequest refuses another input length too.
  EXPECT_EQ(cache->CompleteRequest(std::move(h), shorter, {}, 2, std::vector<int64_t>{19}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->stats().inserts, before.inserts);
}

TEST(CompleteRequest, AHandleOfAnotherCacheIsRefused) {
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", "lru");
  auto other = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", "lru");
  const auto input = Distinct(1, 8);
  ASSERT_TRUE(cache->Insert(input, std::vector<int64_t>{4}, 0).ok());
  RequestHandle h = cache->BeginRequest(input, 1).value();
  ASSERT_TRUE(h.holds_lease());
  EXPECT_EQ(other->CompleteRequest(std::move(h), input, {}, 2).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(other->stats().inserts, 0);
  EXPECT_TRUE(cache->CheckInvariants().ok());  // the pin went with the handle
  EXPECT_EQ(cache->eviction_policy().size(), 1);
}

// Statistics: BeginRequest counts the request and its hit once; chunks and the completion count
// as inserts only.
TEST(InsertChunk, CountsInsertsNotRequests) {
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", "lru");
  const auto input = Distinct(1, 30);
  RequestHandle h = cache->BeginRequest(input, 0).value();
  ASSERT_TRUE(cache->InsertChunk(h, input, 10, std::vector<int64_t>{4, 10}, 1).ok());
  ASSERT_TRUE(cache->InsertChunk(h, input, 25, std::vector<int64_t>{20}, 2).ok());
  EXPECT_EQ(h.resume_tokens(), 20);
  EXPECT_EQ(h.lookup().reusable_tokens, 0);  // the lookup stays what BeginRequest found
  ASSERT_TRUE(cache->CompleteRequest(std::move(h), input, std::vector<Token>{7}, 3).ok());
  const CacheStats& st = cache->stats();
  EXPECT_EQ(st.requests, 1);
  EXPECT_EQ(st.hit_requests, 0);
  EXPECT_EQ(st.hit_tokens, 0);
  EXPECT_EQ(st.inserts, 3);
  EXPECT_EQ(st.checkpoints, 4);  // 4, 10, 20 and the last token (31)
  EXPECT_EQ(cache->Lookup(Distinct(1, 20)).reusable_tokens, 20);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

// Under capacity pressure the request's current chunk state is pinned (never evicted), the
// earlier one is released (and goes), and a chunk's own states survive its own insert.
TEST(InsertChunk, PinnedChunkSurvivesWhileTheEarlierOneCanGo) {
  const ModelSpec model = TinyModel();
  const int64_t capacity = model.StateBytesPerCheckpoint() * 4 + model.KvBytesPerToken() * 100;
  auto cache = MakeCache(model, capacity, "last", "flop_aware");
  const auto input = Distinct(1000, 60);
  const std::vector<Token> first(input.begin(), input.begin() + 20);
  const std::vector<Token> second(input.begin(), input.begin() + 40);
  RequestHandle h = cache->BeginRequest(input, 0).value();
  double now = 1;
  // Fill the cache with other requests' content, so every insert evicts.
  Token next = 1;
  auto pressure = [&](int count) {
    for (int i = 0; i < count; ++i) {
      const auto other = Distinct(next, 10);
      next += 10;
      ASSERT_TRUE(cache->Insert(other, std::vector<int64_t>{10}, now += 1).ok());
      if (h.resume_tokens() == 20) {
        ASSERT_EQ(cache->Lookup(first).reusable_tokens, 20) << "the pinned chunk state went";
      }
      ASSERT_LE(cache->stats().bytes(), capacity);
    }
  };
  pressure(8);
  ASSERT_TRUE(cache->InsertChunk(h, input, 25, std::vector<int64_t>{20}, now += 1).ok());
  EXPECT_EQ(cache->Lookup(first).reusable_tokens, 20);  // survived its own insert's evictions
  pressure(8);
  EXPECT_EQ(cache->Lookup(first).reusable_tokens, 20);  // pinned
  ASSERT_TRUE(cache->InsertChunk(h, input, 40, std::vector<int64_t>{30, 40}, now += 1).ok());
  EXPECT_EQ(cache->Lookup(second).reusable_tokens, 40);
  EXPECT_EQ(h.resume_tokens(), 40);
  bool earlier_evicted = false;
  for (int round = 0; round < 12; ++round) {
    pressure(1);
    ASSERT_EQ(cache->Lookup(second).reusable_tokens, 40) << "the pinned chunk state was evicted";
    earlier_evicted = earlier_evicted || cache->Lookup(first).reusable_tokens < 20;
    ASSERT_TRUE(cache->CheckInvariants().ok());
  }
  EXPECT_TRUE(earlier_evicted) << "the released chunk state should have become evictable";
  ASSERT_TRUE(
      cache->CompleteRequest(std::move(h), input, {}, now += 1, std::vector<int64_t>{60}).ok());
  EXPECT_EQ(cache->Lookup(input).reusable_tokens, 60);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

// An engine that names each state it stores by a fresh slot id (the payload) and frees exactly
// what the cache tells it: evicted states and offered states not adopted.
class SlotEngine : public CacheListener {
 public:
  // Stores a state after each of seq[0, p) for p in `positions`: fresh slots, live at once.
  std::vector<uint64_t> Store(std::span<const Token> seq, std::span<const int64_t> positions) {
    std::vector<uint64_t> ids;
    for (int64_t p : positions) {
      ids.push_back(next_);
      live[next_++] = {seq.begin(), seq.begin() + p};
    }
    return ids;
  }
  // Takes back slots of a call the cache rejected.
  void Drop(std::span<const uint64_t> ids) {
    for (uint64_t id : ids) live.erase(id);
  }
  void OnEvicted(const EvictionEvent& e) override {
    const auto it = live.find(e.payload);
    ASSERT_NE(it, live.end()) << "evicted payload " << e.payload << " is not live";
    ASSERT_EQ(it->second, std::vector<Token>(e.path.begin(), e.path.end()));
    live.erase(it);
    ++evicted;
  }
  void OnNotAdopted(const NotAdoptedEvent& e) override {
    const std::vector<Token> path(e.path.begin(), e.path.end());
    ASSERT_NE(e.payload, e.kept);
    ASSERT_EQ(live.count(e.kept), 1u) << "the kept payload must be live";
    ASSERT_EQ(live[e.kept], path);
    ASSERT_EQ(live.count(e.payload), 1u);
    ASSERT_EQ(live[e.payload], path);
    live.erase(e.payload);
    ++not_adopted;
  }
  std::map<uint64_t, std::vector<Token>> live;
  int64_t evicted = 0, not_adopted = 0;

 private:
  uint64_t next_ = 0;  // 0 is a valid slot id
};

// The engine's live slots equal the cache's states, with their payloads, after every call of a
// random workload under capacity pressure (inserts, chunked prefills, completions, re-admissions).
TEST_P(ChunkedPrefill, LivePayloadsEqualTheCachedStates) {
  const ModelSpec model = TinyModel();
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    auto rng = SeededRng(seed * 104729);
    auto cache = MakeCache(
        model,
        model.StateBytesPerCheckpoint() * Uniform(rng, 3, 10) + model.KvBytesPerToken() * 150,
        "judicious", GetParam());
    SlotEngine engine;
    cache->SetListener(&engine);
    std::vector<std::vector<Token>> stems;
    for (int i = 0; i < 4; ++i) stems.push_back(RandomSequence(rng, {{}}, 3, 40));
    std::vector<Flight> flying;
    double now = 0;
    for (int step = 0; step < 400; ++step) {
      const std::string where = "seed " + std::to_string(seed) + " step " + std::to_string(step);
      const int64_t op = Uniform(rng, 0, 9);
      if (op == 0) {
        const auto seq = RandomSequence(rng, stems, 3, 10);
        auto cps = Some(rng, 0, static_cast<int64_t>(seq.size()));
        if (cps.empty()) cps.push_back(static_cast<int64_t>(seq.size()));
        const auto ids = engine.Store(seq, cps);
        const Status s = cache->Insert(seq, cps, now += 1, ids);
        ASSERT_TRUE(s.ok() || s.code() == StatusCode::kResourceExhausted) << s.ToString();
      } else if (flying.size() < 3 && (op <= 3 || flying.empty())) {
        const auto q = RandomSequence(rng, stems, 3, 20);
        auto h = cache->BeginRequest(q, now += 1);
        ASSERT_TRUE(h.ok()) << where;
        if (h->holds_lease()) {
          const uint64_t id = h->lookup().resume_payload;
          ASSERT_EQ(h->resume_payload(), id);
          ASSERT_EQ(engine.live.count(id), 1u) << where;
          ASSERT_EQ(static_cast<int64_t>(engine.live[id].size()), h->resume_tokens()) << where;
        }
        const int64_t computed = h->resume_tokens();
        flying.push_back({std::move(h).value(), q, computed});
      } else {
        const size_t i =
            static_cast<size_t>(Uniform(rng, 0, static_cast<int64_t>(flying.size()) - 1));
        Flight& f = flying[i];
        const int64_t n = static_cast<int64_t>(f.input.size());
        if (f.computed < n && Uniform(rng, 0, 2) != 0) {
          const int64_t to = Uniform(rng, f.computed + 1, n);
          const auto cps = Some(rng, f.handle.resume_tokens(), to);
          const auto ids = engine.Store(f.input, cps);
          const Status s = cache->InsertChunk(f.handle, f.input, to, cps, now += 1, ids);
          ASSERT_TRUE(s.ok() || s.code() == StatusCode::kResourceExhausted) << s.ToString();
          if (!cps.empty()) {
            const uint64_t id = f.handle.resume_payload();
            ASSERT_EQ(engine.live.count(id), 1u) << where;
            ASSERT_EQ(static_cast<int64_t>(engine.live[id].size()), cps.back()) << where;
          }
          f.computed = to;
        } else {
          const auto out = RandomSequence(rng, stems, 3, 6);
          std::vector<Token> seq = f.input;
          seq.insert(seq.end(), out.begin(), out.end());
          // Random captures, re-offering states the cache may hold already (not adopted).
          const auto cps = Some(rng, 0, static_cast<int64_t>(seq.size()));
          const auto ids = engine.Store(seq, cps);
          const Status s =
              cache->CompleteRequest(std::move(f.handle), f.input, out, now += 1, cps, ids);
          ASSERT_TRUE(s.ok() || s.code() == StatusCode::kResourceExhausted) << s.ToString();
          flying.erase(flying.begin() + static_cast<long>(i));
        }
      }
      ASSERT_TRUE(cache->CheckInvariants().ok()) << where;
      // Brute force: every live slot is a cached state with that payload, and there are as many.
      ASSERT_EQ(static_cast<int64_t>(engine.live.size()), cache->stats().checkpoints) << where;
      for (const auto& [id, path] : engine.live) {
        const LookupResult r = cache->Lookup(path);
        ASSERT_EQ(r.reusable_tokens, static_cast<int64_t>(path.size())) << where;
        ASSERT_EQ(r.resume_payload, id) << where;
      }
    }
    EXPECT_GT(engine.evicted, 20) << "the budget is meant to force evictions";
    EXPECT_GT(engine.not_adopted, 5) << "the workload is meant to re-offer states";
    flying.clear();
  }
}

TEST(Payloads, ReadmissionKeepsTheStoredPayload) {
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", "lru");
  SlotEngine engine;
  cache->SetListener(&engine);
  const auto seq = Distinct(1, 10);
  const std::vector<int64_t> cps = {4, 10};
  auto ids = engine.Store(seq, cps);  // slots 0 and 1
  ASSERT_TRUE(cache->Insert(seq, cps, 0, ids).ok());
  EXPECT_EQ(cache->Lookup(seq).resume_payload, 1u);
  EXPECT_EQ(cache->Lookup(Distinct(1, 6)).resume_payload, 0u);
  // The same payloads again: a refresh, nothing reported.
  ASSERT_TRUE(cache->Insert(seq, cps, 1, ids).ok());
  EXPECT_EQ(engine.not_adopted, 0);
  // New slots for the same states: not adopted, the old ones stay.
  ids = engine.Store(seq, cps);  // slots 2 and 3
  ASSERT_TRUE(cache->Insert(seq, cps, 2, ids).ok());
  EXPECT_EQ(engine.not_adopted, 2);
  EXPECT_EQ(cache->Lookup(seq).resume_payload, 1u);
  EXPECT_EQ(engine.live.size(), 2u);
  // Without payloads: a refresh, nothing to hand back.
  ASSERT_TRUE(cache->Insert(seq, cps, 3).ok());
  EXPECT_EQ(engine.not_adopted, 2);
  // A chunk re-offering a cached state: the handle resumes from the kept slot.
  RequestHandle h = cache->BeginRequest(Distinct(1, 20), 4).value();
  EXPECT_EQ(h.resume_payload(), 1u);
  const std::vector<int64_t> more = {15};
  ids = engine.Store(Distinct(1, 20), more);  // slot 4
  ASSERT_TRUE(cache->InsertChunk(h, Distinct(1, 20), 15, more, 5, ids).ok());
  EXPECT_EQ(h.resume_payload(), 4u);
  // Payload count must match the positions; nothing changes otherwise.
  const std::vector<uint64_t> one = {9};
  EXPECT_EQ(cache->Insert(seq, cps, 6, one).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->InsertChunk(h, Distinct(1, 20), 18, std::vector<int64_t>{16, 18}, 6, one).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(h.resume_payload(), 4u);
  EXPECT_EQ(h.resume_tokens(), 15);
  EXPECT_EQ(cache->stats().checkpoints, 3);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

}  // namespace
}  // namespace marconi
