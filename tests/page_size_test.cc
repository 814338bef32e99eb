// PrefixCacheConfig::page_size: states, hits, plans and matches on page boundaries, against a
// brute-force model of the cache's content, for page sizes 1, 16 and 64.
#include <gtest/gtest.h>

#include <set>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"
#include "test_util.h"

namespace marconi {
namespace {

using testing::SeededRng;
using testing::TinyModel;
using testing::Uniform;

struct PagedModel {
  int64_t page = 1;
  std::set<std::vector<Token>> kv, states;
  std::vector<std::vector<Token>> stored;
  void Insert(std::span<const Token> seq, std::span<const int64_t> positions) {
    if (positions.empty()) return;
    for (int64_t i = 1; i <= positions.back(); ++i) kv.insert({seq.begin(), seq.begin() + i});
    for (int64_t p : positions) states.insert({seq.begin(), seq.begin() + p});
    stored.push_back({seq.begin(), seq.begin() + positions.back()});
  }
  LookupResult Lookup(std::span<const Token> q) const {
    LookupResult r;
    for (int64_t i = static_cast<int64_t>(q.size()); i > 0 && r.reusable_tokens == 0; --i) {
      if (states.count({q.begin(), q.begin() + i})) r.reusable_tokens = i;
    }
    int64_t lcp = 0;
    for (const auto& s : stored) {
      int64_t n = 0;
      while (n < static_cast<int64_t>(std::min(s.size(), q.size())) &&
             s[static_cast<size_t>(n)] == q[static_cast<size_t>(n)]) {
        ++n;
      }
      lcp = std::max(lcp, n);
    }
    r.matched_tokens = lcp / page * page;
    return r;
  }
};

// Random aligned positions in (lo, hi]: each page boundary with probability 1/3.
std::vector<int64_t> AlignedSome(std::mt19937_64& rng, int64_t page, int64_t lo, int64_t hi) {
  std::vector<int64_t> p;
  for (int64_t i = (lo / page + 1) * page; i <= hi; i += page) {
    if (Uniform(rng, 0, 2) == 0) p.push_back(i);
  }
  return p;
}

void ExpectAligned(const std::vector<int64_t>& plan, int64_t page, int64_t above, int64_t max,
                   const std::string& where) {
  for (size_t i = 0; i < plan.size(); ++i) {
    ASSERT_EQ(plan[i] % page, 0) << where;
    ASSERT_GT(plan[i], above) << where;
    ASSERT_LE(plan[i], max) << where;
    if (i > 0) {
      ASSERT_GT(plan[i], plan[i - 1]) << where;
    }
  }
}

class PageSize : public ::testing::TestWithParam<int64_t> {};

TEST_P(PageSize, HitsPlansAndContentOnPageBoundaries) {
  const int64_t page = GetParam();
  for (const char* admission : {"judicious", "block"}) {
    auto rng = SeededRng(static_cast<uint64_t>(page) * 31 + (admission[0] == 'b' ? 1 : 0));
    PrefixCacheConfig config;
    config.page_size = page;
    auto adm = std::string(admission) == "block" ? MakeBlockAdmission({24}).value()
                                                 : MakeJudiciousAdmission();
    auto cache =
        PrefixCache::Create(config, TinyModel(), std::move(adm), MakeFlopAwareEviction({}).value())
            .value();
    PagedModel model{page, {}, {}, {}};
    std::vector<std::vector<Token>> stems;
    for (int i = 0; i < 4; ++i)
      stems.push_back(testing::RandomSequence(rng, {{}}, 3, 3 * page + 8));
    double now = 0;
    bool hit_seen = false;
    for (int step = 0; step < 200; ++step) {
      const std::string where = std::string(admission) + " step " + std::to_string(step);
      const auto q = testing::RandomSequence(rng, stems, 3, 2 * page + 5);
      const int64_t n = static_cast<int64_t>(q.size());
      const LookupResult want = model.Lookup(q);
      const LookupResult got = cache->Lookup(q);
      ASSERT_EQ(got.reusable_tokens, want.reusable_tokens) << where;
      ASSERT_EQ(got.matched_tokens, want.matched_tokens) << where;
      ASSERT_EQ(got.branch_point % page, 0) << where;
      hit_seen = hit_seen || got.reusable_tokens > 0;
      const int64_t op = Uniform(rng, 0, 3);
      if (op == 0) {
        auto cps = AlignedSome(rng, page, 0, n);
        if (cps.empty()) continue;
        if (page > 1 && Uniform(rng, 0, 3) == 0) {
          // One unaligned position: refused, nothing changes.
          std::vector<int64_t> bad = cps;
          bad.back() -= 1;
          const int64_t before = cache->stats().inserts;
          const Status s = cache->Insert(q, bad, now += 1);
          ASSERT_EQ(s.code(), StatusCode::kInvalidArgument) << where;
          ASSERT_NE(s.message().find("page_size"), std::string::npos) << s.message();
          ASSERT_EQ(cache->stats().inserts, before);
        }
        ASSERT_TRUE(cache->Insert(q, cps, now += 1).ok()) << where;
        model.Insert(q, cps);
      } else {
        RequestHandle h = cache->BeginRequest(q, now += 1).value();
        const int64_t hit = h.lookup().reusable_tokens;
        ASSERT_EQ(hit, want.reusable_tokens) << where;
        ExpectAligned(h.prefill_checkpoints(), page, hit, n, where);
        if (op == 1 && n - hit > page) {  // a chunk first, at aligned captures
          const int64_t to = Uniform(rng, hit + 1, n);
          const auto cps = AlignedSome(rng, page, hit, to);
          ASSERT_TRUE(cache->InsertChunk(h, q, to, cps, now += 1).ok()) << where;
          model.Insert(q, cps);
          if (page > 1 && to >= hit + 2) {
            const std::vector<int64_t> bad = {h.resume_tokens() + 1};
            if (bad[0] <= to && bad[0] % page != 0) {
              ASSERT_EQ(cache->InsertChunk(h, q, to, bad, now).code(),
                        StatusCode::kInvalidArgument);
            }
          }
        }
        const auto out = testing::RandomSequence(rng, {{}}, 3, page + 3);
        const int64_t total = n + static_cast<int64_t>(out.size());
        const auto decode = cache->PlanDecode(h, static_cast<int64_t>(out.size()));
        ExpectAligned(decode, page, 0, total, where);
        // What the engine captured: the plans, less what lies at or before its resume point.
        std::set<int64_t> all(decode.begin(), decode.end());
        all.insert(h.prefill_checkpoints().begin(), h.prefill_checkpoints().end());
        std::erase_if(all, [&](int64_t p) { return p <= h.resume_tokens(); });
        const std::vector<int64_t> captured(all.begin(), all.end());
        std::vector<Token> seq = q;
        seq.insert(seq.end(), out.begin(), out.end());
        ASSERT_TRUE(cache->CompleteRequest(std::move(h), q, out, now += 1, captured).ok()) << where;
        model.Insert(seq, captured);
      }
      ASSERT_TRUE(cache->CheckInvariants().ok()) << where;
      ASSERT_EQ(cache->stats().checkpoints, static_cast<int64_t>(model.states.size())) << where;
      ASSERT_EQ(cache->stats().cached_tokens, static_cast<int64_t>(model.kv.size())) << where;
      for (const auto& s : model.states) {
        ASSERT_EQ(static_cast<int64_t>(s.size()) % page, 0);
        ASSERT_EQ(cache->Lookup(s).reusable_tokens, static_cast<int64_t>(s.size())) << where;
      }
    }
    EXPECT_TRUE(hit_seen);
  }
}

INSTANTIATE_TEST_SUITE_P(Pages, PageSize, ::testing::Values(1, 16, 64));

TEST(PageSize, PlansAreFlooredAndBadSizesRefused) {
  PrefixCacheConfig config;
  config.page_size = 16;
  auto cache =
      PrefixCache::Create(config, TinyModel(), MakeBlockAdmission({10}).value(), MakeLruEviction())
          .value();
  std::vector<Token> seq(50);
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<Token>(i);
  RequestHandle h = cache->BeginRequest(seq, 0).value();
  // Blocks of 10 (10, 20, 30, 40, 50) floored to pages of 16: 16, 32, 48 (0 and repeats gone).
  EXPECT_EQ(h.prefill_checkpoints(), (std::vector<int64_t>{16, 32, 48}));
  ASSERT_TRUE(cache->CompleteRequest(std::move(h), seq, {}, 1).ok());
  EXPECT_EQ(cache->stats().checkpoints, 3);
  EXPECT_EQ(cache->stats().cached_tokens, 48);  // nothing past the last page boundary
  const LookupResult r = cache->Lookup(std::vector<Token>(seq.begin(), seq.begin() + 40));
  EXPECT_EQ(r.reusable_tokens, 32);
  EXPECT_EQ(r.matched_tokens, 32);  // 40 matched, floored to a page
  for (int64_t bad : {int64_t{0}, int64_t{-4}, PrefixCacheConfig::kMaxPageSize + 1}) {
    config.page_size = bad;
    const auto c =
        PrefixCache::Create(config, TinyModel(), MakeLastTokenAdmission(), MakeLruEviction());
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("page_size"), std::string::npos);
  }
}

}  // namespace
}  // namespace marconi
