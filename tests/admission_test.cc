#include <gtest/gtest.h>

#include "marconi/policies.h"
#include "test_util.h"

namespace marconi {
namespace {

AdmissionContext Ctx(int64_t input, int64_t reusable, int64_t branch) {
  AdmissionContext c;
  c.input_tokens = input;
  c.lookup.reusable_tokens = reusable;
  c.lookup.branch_point = branch;
  return c;
}

TEST(Admission, JudiciousPlansBranchAndLastToken) {
  auto p = MakeJudiciousAdmission();
  std::vector<int64_t> pos;
  p->PlanPrefill(Ctx(100, 0, 40), &pos);
  EXPECT_EQ(pos, std::vector<int64_t>{40});
  p->PlanDecode(Ctx(100, 0, 40), 25, &pos);
  EXPECT_EQ(pos, (std::vector<int64_t>{40, 125}));
  pos.clear();
  p->PlanPrefill(Ctx(100, 60, 0), &pos);  // no branch: nothing during prefill
  EXPECT_TRUE(pos.empty());
  p->PlanDecode(Ctx(100, 60, 0), 0, &pos);  // nothing decoded: the state after the input
  EXPECT_EQ(pos, std::vector<int64_t>{100});
}

TEST(Admission, BlockPlansEveryFullBlock) {
  auto p = MakeBlockAdmission({32}).value();
  std::vector<int64_t> pos;
  p->PlanPrefill(Ctx(100, 0, 50), &pos);
  EXPECT_EQ(pos, (std::vector<int64_t>{32, 64, 96}));
  pos.clear();
  p->PlanPrefill(Ctx(100, 64, 0), &pos);  // resumed at 64: no state to capture before it
  EXPECT_EQ(pos, std::vector<int64_t>{96});
  pos.clear();
  p->PlanDecode(Ctx(100, 0, 0), 70, &pos);  // output tokens 101..170
  EXPECT_EQ(pos, (std::vector<int64_t>{128, 160}));
  pos.clear();
  p->PlanPrefill(Ctx(31, 0, 0), &pos);
  p->PlanDecode(Ctx(31, 0, 0), 0, &pos);
  EXPECT_TRUE(pos.empty());  // shorter than a block: nothing cached
}

TEST(Admission, LastTokenOnlyAdmitsTheEnd) {
  auto p = MakeLastTokenAdmission();
  std::vector<int64_t> pos;
  p->PlanPrefill(Ctx(100, 0, 50), &pos);
  EXPECT_TRUE(pos.empty());
  p->PlanDecode(Ctx(100, 0, 50), 10, &pos);
  EXPECT_EQ(pos, std::vector<int64_t>{110});
}

TEST(Admission, BlockPolicyWithNothingToAdmitLeavesCacheEmpty) {
  PrefixCacheConfig config;
  auto cache = PrefixCache::Create(config, testing::TinyModel(), MakeBlockAdmission({32}).value(),
                                   MakeLruEviction())
                   .value();
  const std::vector<Token> q(10, 1);
  auto h = cache->BeginRequest(q, 0);
  ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), q, {}, 0).ok());
  EXPECT_EQ(cache->stats().cached_tokens, 0);
  EXPECT_EQ(cache->stats().inserts, 0);
}

TEST(Admission, SharedPrefixIsHitFromTheThirdOccurrence) {
  // Purely-input reuse: a system prompt shared by requests with different user messages.
  auto cache = testing::MakeCache(testing::TinyModel(), PrefixCacheConfig::kUnlimited, "judicious",
                                  "flop_aware");
  const std::vector<Token> prompt(50, 3);
  std::vector<int64_t> hits;
  for (Token user = 10; user < 14; ++user) {
    std::vector<Token> q = prompt;
    q.insert(q.end(), 5, user);
    auto h = cache->BeginRequest(q, user);
    hits.push_back(h->lookup().reusable_tokens);
    ASSERT_TRUE(cache->CompleteRequest(std::move(h).value(), q, std::vector<Token>{1}, user).ok());
  }
  EXPECT_EQ(hits, (std::vector<int64_t>{0, 0, 50, 50}));
  EXPECT_EQ(cache->stats().checkpoints, 5);  // 4 last tokens + the branch point
}

}  // namespace
}  // namespace marconi
