// PrefixCache against a brute-force model, the paper's worked example, statistics and errors.
#include "marconi/prefix_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "test_util.h"

namespace marconi {
namespace {

using testing::MakeCache;
using testing::TinyModel;
using testing::Uniform;

// Brute force: every checkpointed prefix and every stored sequence, kept as plain vectors.
struct NaiveCache {
  std::set<std::vector<Token>> checkpointed;
  std::vector<std::vector<Token>> stored;  // sequence up to its last checkpoint

  static int64_t Lcp(const std::vector<Token>& a, std::span<const Token> b) {
    int64_t n = 0;
    while (n < static_cast<int64_t>(a.size()) && n < static_cast<int64_t>(b.size()) &&
           a[static_cast<size_t>(n)] == b[static_cast<size_t>(n)]) {
      ++n;
    }
    return n;
  }
  void Insert(const std::vector<Token>& seq, const std::vector<int64_t>& positions) {
    for (int64_t p : positions) checkpointed.insert({seq.begin(), seq.begin() + p});
    stored.push_back({seq.begin(), seq.begin() + positions.back()});
  }
  LookupResult Lookup(std::span<const Token> q) const {
    LookupResult r;
    for (const auto& s : stored) r.matched_tokens = std::max(r.matched_tokens, Lcp(s, q));
    for (const auto& c : checkpointed) {
      if (Lcp(c, q) == static_cast<int64_t>(c.size())) {
        r.reusable_tokens = std::max(r.reusable_tokens, static_cast<int64_t>(c.size()));
      }
    }
    const int64_t m = r.matched_tokens;
    const bool continues = std::any_of(stored.begin(), stored.end(), [&](const auto& s) {
      return static_cast<int64_t>(s.size()) > m && Lcp(s, q) == m;
    });
    const bool node_has_state = checkpointed.count({q.begin(), q.begin() + m}) > 0;
    if (m > 0 && m < static_cast<int64_t>(q.size()) && continues && !node_has_state) {
      r.branch_point = m;
    }
    return r;
  }
};

std::vector<std::vector<Token>> Stems(std::mt19937_64& rng, int count, int64_t len, int alphabet) {
  std::vector<std::vector<Token>> stems;
  for (int i = 0; i < count; ++i) {
    std::vector<Token> s;
    for (int64_t j = 0; j < len; ++j)
      s.push_back(static_cast<Token>(Uniform(rng, 0, alphabet - 1)));
    stems.push_back(s);
  }
  return stems;
}

std::vector<int64_t> RandomPositions(std::mt19937_64& rng, int64_t len) {
  std::vector<int64_t> p;
  for (int64_t i = 1; i <= len; ++i) {
    if (Uniform(rng, 0, 5) == 0) p.push_back(i);
  }
  if (p.empty() || p.back() != len) {
    if (Uniform(rng, 0, 1) == 0 || p.empty()) p.push_back(len);
  }
  return p;
}

class UnboundedCacheVsBruteForce : public ::testing::TestWithParam<std::string> {};

TEST_P(UnboundedCacheVsBruteForce, LookupsMatchNaiveModel) {
  for (uint64_t seed = 1; seed <= 6; ++seed) {
    auto rng = testing::SeededRng(seed);
    auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", GetParam());
    NaiveCache naive;
    const int alphabet = seed % 2 == 0 ? 2 : 5;
    const auto stems = Stems(rng, 4, 30, alphabet);
    double now = 0;
    for (int step = 0; step < 300; ++step) {
      const auto q = testing::RandomSequence(rng, stems, alphabet, 12);
      const LookupResult got = cache->Lookup(q);
      const LookupResult want = naive.Lookup(q);
      ASSERT_EQ(got.reusable_tokens, want.reusable_tokens) << "step " << step;
      ASSERT_EQ(got.matched_tokens, want.matched_tokens) << "step " << step;
      ASSERT_EQ(got.branch_point, want.branch_point) << "step " << step;
      ASSERT_EQ(got.resume_node == kNoNode, want.reusable_tokens == 0);
      if (Uniform(rng, 0, 1) == 0) {
        const auto positions = RandomPositions(rng, static_cast<int64_t>(q.size()));
        ASSERT_TRUE(cache->Insert(q, positions, now += 1).ok());
        naive.Insert(q, positions);
      } else {
        auto h = cache->BeginRequest(q, now += 1);
        ASSERT_TRUE(h.ok());
        ASSERT_TRUE(cache->CheckInvariants().ok()) << cache->CheckInvariants().ToString();
        const auto out = testing::RandomSequence(rng, stems, alphabet, 4);
        ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), q, out, now += 1).ok());
        std::vector<Token> seq = q;
        seq.insert(seq.end(), out.begin(), out.end());
        naive.Insert(seq, {static_cast<int64_t>(seq.size())});
      }
      const Status inv = cache->CheckInvariants();
      ASSERT_TRUE(inv.ok()) << "step " << step << ": " << inv.ToString();
      ASSERT_EQ(cache->stats().checkpoints, static_cast<int64_t>(naive.checkpointed.size()));
      ASSERT_EQ(cache->stats().evictions, 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, UnboundedCacheVsBruteForce,
                         ::testing::Values("lru", "flop_aware", "gdsf"));

class BoundedCache : public ::testing::TestWithParam<std::string> {};

TEST_P(BoundedCache, NeverOverCapacityNeverFalseHitPinnedSurvive) {
  const ModelSpec model = TinyModel();
  const int64_t unit = model.StateBytesPerCheckpoint();
  for (uint64_t seed = 11; seed <= 14; ++seed) {
    auto rng = testing::SeededRng(seed);
    const int64_t capacity = unit * Uniform(rng, 2, 12) + model.KvBytesPerToken() * 200;
    auto cache =
        MakeCache(model, capacity, "judicious", GetParam(), GetParam() == "flop_aware" ? 1.0 : 0.0);
    NaiveCache ever;  // everything ever admitted: a lookup may only resume from these
    const auto stems = Stems(rng, 5, 40, 3);
    struct InFlight {
      RequestHandle handle;
      std::vector<Token> input;
      std::vector<Token> resume_prefix;
    };
    std::vector<InFlight> flying;
    double now = 0;
    for (int step = 0; step < 400; ++step) {
      if (!flying.empty() && (Uniform(rng, 0, 2) == 0 || flying.size() > 3)) {
        const size_t i =
            static_cast<size_t>(Uniform(rng, 0, static_cast<int64_t>(flying.size()) - 1));
        InFlight f = std::move(flying[i]);
        flying.erase(flying.begin() + static_cast<long>(i));
        // The pinned resume point must still be there, whatever was evicted meanwhile.
        if (!f.resume_prefix.empty()) {
          ASSERT_GE(cache->Lookup(f.resume_prefix).reusable_tokens,
                    static_cast<int64_t>(f.resume_prefix.size()));
        }
        const auto out = testing::RandomSequence(rng, stems, 3, 5);
        std::vector<int64_t> positions = f.handle.prefill_checkpoints();
        positions.push_back(static_cast<int64_t>(f.input.size() + out.size()));
        const Status s = cache->CompleteRequest(std::move(f.handle), f.input, out, now += 1);
        ASSERT_TRUE(s.ok() || s.code() == StatusCode::kResourceExhausted) << s.ToString();
        std::vector<Token> seq = f.input;
        seq.insert(seq.end(), out.begin(), out.end());
        ever.Insert(seq, positions);
      } else {
        const auto q = testing::RandomSequence(rng, stems, 3, 15);
        auto h = cache->BeginRequest(q, now += 1);
        ASSERT_TRUE(h.ok());
        const int64_t hit = h->lookup().reusable_tokens;
        ASSERT_LE(hit, ever.Lookup(q).reusable_tokens) << "false hit at step " << step;
        flying.push_back({std::move(h).value(), q, {q.begin(), q.begin() + hit}});
      }
      const Status inv = cache->CheckInvariants();
      ASSERT_TRUE(inv.ok()) << "step " << step << ": " << inv.ToString();
      const CacheStats& st = cache->stats();
      if (st.over_capacity_inserts == 0) {
        ASSERT_LE(st.bytes(), capacity) << "step " << step;
      }
    }
    EXPECT_GT(cache->stats().evictions, 0) << "the test must exercise eviction";
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, BoundedCache, ::testing::Values("lru", "flop_aware", "gdsf"));

TEST(PrefixCache, PaperWorkedExampleCheckpointsTheBranchPoint) {
  // "NYC is a busy city" was served; "NYC is very huge" arrives.
  enum : Token { NYC = 1, is, a, busy, city, very, huge, cold };
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "judicious", "flop_aware");
  const std::vector<Token> first = {NYC, is, a, busy, city};
  auto h1 = cache->BeginRequest(first, 1);
  ASSERT_TRUE(h1.ok());
  EXPECT_TRUE(h1->prefill_checkpoints().empty());
  ASSERT_TRUE(cache->CompleteRequest(std::move(h1).value(), first, {}, 2).ok());

  const std::vector<Token> second = {NYC, is, very, huge};
  auto h2 = cache->BeginRequest(second, 3);
  ASSERT_TRUE(h2.ok());
  EXPECT_EQ(h2->lookup().reusable_tokens, 0);  // the 2nd occurrence only discovers the prefix
  EXPECT_EQ(h2->lookup().matched_tokens, 2);
  EXPECT_EQ(h2->lookup().branch_point, 2);
  EXPECT_EQ(h2->prefill_checkpoints(), std::vector<int64_t>{2});  // state after "NYC is"
  ASSERT_TRUE(cache->CompleteRequest(std::move(h2).value(), second, {}, 4).ok());
  EXPECT_EQ(cache->stats().checkpoints, 3);

  const std::vector<Token> third = {NYC, is, cold};
  auto h3 = cache->BeginRequest(third, 5);
  ASSERT_TRUE(h3.ok());
  EXPECT_EQ(h3->lookup().reusable_tokens, 2);  // hit from the 3rd occurrence on
  EXPECT_TRUE(h3->prefill_checkpoints().empty());
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

// With leave_last_token a state at the input's very end is not a resume point: the lookup stops
// at the state before it, says the whole input was cached, and BeginRequest counts it.
TEST(PrefixCache, LeaveLastTokenResumesBeforeTheEndAndCountsIt) {
  const ModelSpec model = TinyModel();
  std::vector<Token> seq;
  for (Token t = 1; t <= 12; ++t) seq.push_back(t);
  const int64_t at[] = {5, 10, 12};
  for (bool leave : {false, true}) {
    PrefixCacheConfig config;
    config.leave_last_token = leave;
    auto cache =
        PrefixCache::Create(config, model, MakeJudiciousAdmission(), MakeLruEviction()).value();
    ASSERT_TRUE(cache->Insert(seq, at, 0).ok());
    const std::span<const Token> first10(seq.data(), 10);
    const LookupResult r = cache->Lookup(first10);
    EXPECT_EQ(r.reusable_tokens, leave ? 5 : 10);
    EXPECT_EQ(r.whole_input_cached, leave);
    EXPECT_EQ(r.matched_tokens, 10);
    EXPECT_EQ(cache->Lookup(seq).reusable_tokens, leave ? 10 : 12);
    // Not the whole input (one token more than cached): nothing is left out.
    std::vector<Token> longer = seq;
    longer.push_back(99);
    EXPECT_EQ(cache->Lookup(longer).reusable_tokens, 12);
    EXPECT_FALSE(cache->Lookup(longer).whole_input_cached);
    auto h = cache->BeginRequest(first10, 1);
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(cache->stats().last_token_recomputes, leave ? 1 : 0);
    EXPECT_EQ(cache->stats().hit_tokens, leave ? 5 : 10);
  }
}

// PlanDecode is what CompleteRequest adds to the prefill plan; completing with exactly the states
// held (a subset) stores those and nothing else; bad positions are refused.
TEST(PrefixCache, CompleteWithTheStatesActuallyCaptured) {
  const ModelSpec model = TinyModel();
  std::vector<Token> base(30);
  for (size_t i = 0; i < base.size(); ++i) base[i] = static_cast<Token>(i);
  std::vector<Token> a = base, b = base;
  a.push_back(100);
  b.push_back(200);
  const std::vector<Token> out = {7, 8, 9};
  auto planned = MakeCache(model, PrefixCacheConfig::kUnlimited, "judicious", "lru");
  auto told = MakeCache(model, PrefixCacheConfig::kUnlimited, "judicious", "lru");
  for (PrefixCache* c : {planned.get(), told.get()}) {
    auto h = c->BeginRequest(a, 0);
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(c->CompleteRequest(std::move(h).value(), a, out, 0).ok());
  }
  // b branches from a at 30: the prefill plan has 30, the decode plan the last token.
  auto hp = planned->BeginRequest(b, 1).value();
  auto ht = told->BeginRequest(b, 1).value();
  EXPECT_EQ(ht.prefill_checkpoints(), std::vector<int64_t>{30});
  const std::vector<int64_t> decode = told->PlanDecode(ht, 3);
  EXPECT_EQ(decode, std::vector<int64_t>{34});
  EXPECT_EQ(planned->PlanDecode(hp, 3), decode);
  ASSERT_TRUE(planned->CompleteRequest(std::move(hp), b, out, 1).ok());
  // The engine could capture only the decode state: the branch point is not stored.
  ASSERT_TRUE(told->CompleteRequest(std::move(ht), b, out, 1, decode).ok());
  EXPECT_EQ(planned->stats().checkpoints, told->stats().checkpoints + 1);
  EXPECT_EQ(planned->Lookup(base).reusable_tokens, 30);
  EXPECT_EQ(told->Lookup(base).reusable_tokens, 0);
  std::vector<Token> b_out = b;
  b_out.insert(b_out.end(), out.begin(), out.end());
  EXPECT_EQ(told->Lookup(b_out).reusable_tokens, 34);
  ASSERT_TRUE(told->CheckInvariants().ok());

  const CacheStats before = told->stats();
  auto h = told->BeginRequest(b, 2).value();
  const int64_t bad[] = {35};  // past input + output
  EXPECT_EQ(told->CompleteRequest(std::move(h), b, out, 2, bad).code(),
            StatusCode::kInvalidArgument);
  auto h2 = told->BeginRequest(b, 3).value();
  EXPECT_TRUE(told->CompleteRequest(std::move(h2), b, out, 3, {}).ok());  // holds nothing
  EXPECT_EQ(told->stats().checkpoints, before.checkpoints);
  EXPECT_EQ(told->stats().inserts, before.inserts);
  ASSERT_TRUE(told->CheckInvariants().ok());
}

TEST(PrefixCache, PartialEdgeMatchIsNeverAHit) {
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", "lru");
  const std::vector<Token> seq = {1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> pos = {2, 6};
  ASSERT_TRUE(cache->Insert(seq, pos, 1).ok());
  // Diverges inside the edge [3..6]: resumes at 2, never at a deeper, unmatched point, and does
  // not "continue" the walk with the unmatched rest (the prototype's false-hit trap).
  const std::vector<Token> q = {1, 2, 3, 9, 5, 6};
  const LookupResult r = cache->Lookup(q);
  EXPECT_EQ(r.reusable_tokens, 2);
  EXPECT_EQ(r.matched_tokens, 3);
  EXPECT_EQ(cache->Lookup(std::vector<Token>{1, 2, 3, 4, 5}).reusable_tokens, 2);
  EXPECT_EQ(cache->Lookup(std::vector<Token>{1, 2, 3, 4, 5, 6, 7}).reusable_tokens, 6);
}

TEST(PrefixCache, StatisticsFollowTheirFormulas) {
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  auto cache = MakeCache(model, PrefixCacheConfig::kUnlimited, "judicious", "flop_aware");
  std::vector<Token> turn1(1000);
  for (size_t i = 0; i < turn1.size(); ++i) turn1[i] = static_cast<Token>(i);
  std::vector<Token> out1(200, 7);
  auto h = cache->BeginRequest(turn1, 0);
  ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), turn1, out1, 1).ok());
  std::vector<Token> turn2 = turn1;
  turn2.insert(turn2.end(), out1.begin(), out1.end());
  turn2.insert(turn2.end(), 300, 9);
  h = cache->BeginRequest(turn2, 2);
  ASSERT_EQ(h->lookup().reusable_tokens, 1200);
  const CacheStats& st = cache->stats();
  EXPECT_EQ(st.requests, 2);
  EXPECT_EQ(st.hit_requests, 1);
  EXPECT_EQ(st.input_tokens, 1000 + 1500);
  EXPECT_EQ(st.hit_tokens, 1200);
  EXPECT_DOUBLE_EQ(st.token_hit_rate(), 1200.0 / 2500.0);
  EXPECT_DOUBLE_EQ(st.request_hit_rate(), 0.5);
  EXPECT_DOUBLE_EQ(st.flops_saved, model.FlopsSaved(1200, 1500));
  EXPECT_DOUBLE_EQ(st.flops_without_cache,
                   model.PrefillFlops(0, 1000) + model.PrefillFlops(0, 1500));
  EXPECT_EQ(st.cached_tokens, 1200);
  EXPECT_EQ(st.kv_bytes, 1200 * model.KvBytesPerToken());
  EXPECT_EQ(st.state_bytes, model.StateBytesPerCheckpoint());
  EXPECT_EQ(st.checkpoints_admitted, 1);
}

TEST(PrefixCache, BlockCheckpointsReproduceThePapersMemoryFigure) {
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  PrefixCacheConfig config;
  auto cache =
      PrefixCache::Create(config, model, MakeBlockAdmission({16}).value(), MakeLruEviction())
          .value();
  std::vector<Token> seq(10000);
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<Token>(i % 1000);
  auto h = cache->BeginRequest(seq, 0);
  EXPECT_EQ(h->prefill_checkpoints().size(), 625u);
  ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), seq, {}, 1).ok());
  EXPECT_EQ(cache->stats().checkpoints, 625);
  EXPECT_NEAR(static_cast<double>(cache->stats().bytes()) / 1e9, 17.4, 0.05);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

TEST(PrefixCache, CloneIsIndependentAndDropsPins) {
  auto cache = MakeCache(TinyModel(), PrefixCacheConfig::kUnlimited, "last", "flop_aware");
  const std::vector<Token> a = {1, 2, 3};
  ASSERT_TRUE(cache->Insert(a, std::vector<int64_t>{3}, 0).ok());
  auto h = cache->BeginRequest(a, 1);  // pins the node
  ASSERT_TRUE(h->holds_lease());
  EXPECT_EQ(cache->eviction_policy().size(), 0);  // pinned: not a candidate
  auto copy = cache->Clone();
  EXPECT_TRUE(copy->CheckInvariants().ok()) << copy->CheckInvariants().ToString();
  EXPECT_EQ(copy->eviction_policy().size(), 1);  // no request in flight in the copy
  ASSERT_TRUE(copy->Insert(std::vector<Token>{5, 6}, std::vector<int64_t>{2}, 2).ok());
  EXPECT_EQ(copy->stats().checkpoints, 2);
  EXPECT_EQ(cache->stats().checkpoints, 1);
  h->Release();
  EXPECT_EQ(cache->eviction_policy().size(), 1);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

TEST(PrefixCache, BadInputIsRejectedAndChangesNothing) {
  const ModelSpec model = TinyModel();
  auto cache = MakeCache(model, PrefixCacheConfig::kUnlimited, "judicious", "lru");
  const std::vector<Token> seq = {1, 2, 3};
  EXPECT_EQ(cache->BeginRequest({}, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->Insert({}, std::vector<int64_t>{1}, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->Insert(seq, {}, 0).code(), StatusCode::kInvalidArgument);
  for (std::vector<int64_t> bad : {std::vector<int64_t>{0}, {4}, {2, 2}, {3, 1}, {-1, 3}}) {
    const Status s = cache->Insert(seq, bad, 0);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("checkpoint position"), std::string::npos) << s.message();
  }
  EXPECT_EQ(cache->Insert(seq, std::vector<int64_t>{3}, NAN).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(cache->Insert(seq, std::vector<int64_t>{3}, 10).ok());
  const Status back = cache->Insert(seq, std::vector<int64_t>{3}, 9);
  EXPECT_EQ(back.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(back.message().find("earlier"), std::string::npos);
  EXPECT_EQ(cache->stats().inserts, 1);
  EXPECT_EQ(cache->stats().checkpoints, 1);
  EXPECT_TRUE(cache->CheckInvariants().ok());

  PrefixCacheConfig tiny;
  tiny.capacity_bytes = model.StateBytesPerCheckpoint();  // no room for a token of KV
  const auto too_small =
      PrefixCache::Create(tiny, model, MakeLastTokenAdmission(), MakeLruEviction());
  ASSERT_FALSE(too_small.ok());
  EXPECT_NE(too_small.status().message().find("cannot hold one checkpoint"), std::string::npos);
  tiny.capacity_bytes = -5;
  EXPECT_FALSE(PrefixCache::Create(tiny, model, MakeLastTokenAdmission(), MakeLruEviction()).ok());
  EXPECT_FALSE(PrefixCache::Create({}, model, nullptr, MakeLruEviction()).ok());
  EXPECT_EQ(MakeFlopAwareEviction({-1.0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeBlockAdmission({0}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeEvictionByName("fifo").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(cache->SetAlpha(0.5).code(), StatusCode::kUnimplemented);  // LRU has no alpha
}

TEST(PrefixCache, EverythingPinnedReportsOverCapacity) {
  const ModelSpec model = TinyModel();
  const int64_t capacity = model.StateBytesPerCheckpoint() + 10 * model.KvBytesPerToken();
  auto cache = MakeCache(model, capacity, "last", "flop_aware");
  const std::vector<Token> a = {1, 2, 3};
  ASSERT_TRUE(cache->Insert(a, std::vector<int64_t>{3}, 0).ok());
  auto h = cache->BeginRequest(a, 1);  // pin it
  const std::vector<Token> b = {7, 8};
  // b needs room: a is pinned, so b itself is evicted; the cache fits and a survives.
  ASSERT_TRUE(cache->Insert(b, std::vector<int64_t>{2}, 2).ok());
  EXPECT_EQ(cache->Lookup(a).reusable_tokens, 3);
  EXPECT_EQ(cache->Lookup(b).reusable_tokens, 0);
  EXPECT_LE(cache->stats().bytes(), capacity);
  // A checkpoint on a's own path that cannot be evicted while a is pinned and has 2 children.
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

TEST(PrefixCache, SetCapacityEvictsUnpinnedUntilItHolds) {
  const ModelSpec model = TinyModel();
  const int64_t per_entry = model.StateBytesPerCheckpoint() + 3 * model.KvBytesPerToken();
  auto cache = MakeCache(model, PrefixCacheConfig::kUnlimited, "last", "lru");
  const std::vector<Token> a = {1, 2, 3}, b = {4, 5, 6}, c = {7, 8, 9};
  ASSERT_TRUE(cache->Insert(a, std::vector<int64_t>{3}, 0).ok());
  ASSERT_TRUE(cache->Insert(b, std::vector<int64_t>{3}, 1).ok());
  ASSERT_TRUE(cache->Insert(c, std::vector<int64_t>{3}, 2).ok());
  ASSERT_EQ(cache->stats().bytes(), 3 * per_entry);
  EXPECT_EQ(cache->SetCapacity(-1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cache->stats().bytes(), 3 * per_entry);  // a rejected call changes nothing
  // Room for two entries: the least recently used (a) goes, nothing else.
  ASSERT_TRUE(cache->SetCapacity(2 * per_entry).ok());
  EXPECT_EQ(cache->config().capacity_bytes, 2 * per_entry);
  EXPECT_EQ(cache->stats().bytes(), 2 * per_entry);
  EXPECT_EQ(cache->stats().evictions, 1);
  EXPECT_EQ(cache->Lookup(a).reusable_tokens, 0);
  EXPECT_EQ(cache->Lookup(b).reusable_tokens, 3);
  EXPECT_TRUE(cache->CheckInvariants().ok());
  // Growing evicts nothing.
  ASSERT_TRUE(cache->SetCapacity(10 * per_entry).ok());
  EXPECT_EQ(cache->stats().evictions, 1);
  // Pinned content alone over the capacity: everything else goes, the pinned entry stays.
  auto h = cache->BeginRequest(b, 3);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->lookup().reusable_tokens, 3);
  EXPECT_EQ(cache->SetCapacity(0).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(cache->stats().bytes(), per_entry);
  EXPECT_EQ(cache->Lookup(b).reusable_tokens, 3);
  EXPECT_EQ(cache->Lookup(c).reusable_tokens, 0);
  EXPECT_TRUE(cache->CheckInvariants().ok());
  // Released, it goes at the next call.
  h->Release();
  ASSERT_TRUE(cache->SetCapacity(0).ok());
  EXPECT_EQ(cache->stats().bytes(), 0);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

}  // namespace
}  // namespace marconi
