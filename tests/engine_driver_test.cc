// The engine driver: requests served through the PrefixCache give exactly the output of a full
// recompute, and the bytes it holds are exactly what the cache accounts for, evictions included.
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/driver.h"
#include "engine_test_util.h"
#include "marconi/policies.h"
#include "test_util.h"

namespace marconi::engine {
namespace {

const Kernels kExact{ScanKernel::kSequential, MatmulKernel::kReference};

// A cache as the driver needs it: the last input token is always left to compute.
std::unique_ptr<PrefixCache> EngineCache(const ModelSpec& spec, int64_t capacity,
                                         std::unique_ptr<AdmissionPolicy> admission,
                                         std::unique_ptr<EvictionPolicy> eviction,
                                         int64_t page_size = 1) {
  PrefixCacheConfig config;
  config.capacity_bytes = capacity;
  config.leave_last_token = true;
  config.page_size = page_size;
  return PrefixCache::Create(config, spec, std::move(admission), std::move(eviction)).value();
}

// Full recompute of a request: prefill everything from scratch, then greedy decoding.
ServedRequest Recompute(const HybridModel& m, std::span<const Token> input, int64_t n_out,
                        Kernels k) {
  SequenceState s = m.NewSequence();
  ServedRequest r;
  r.first_logits = m.Prefill(s, input, k).value();
  std::vector<float> last = r.first_logits;
  for (int64_t i = 0; i < n_out; ++i) {
    const Token t = static_cast<Token>(std::max_element(last.begin(), last.end()) - last.begin());
    r.output.push_back(t);
    const Token one[] = {t};
    last = m.Prefill(s, one, {ScanKernel::kSequential, k.matmul}).value();
  }
  return r;
}

// A random mix of requests sharing system prompts and of multi-turn conversations (each turn is
// the previous turn's input and output plus a new message), so that hits, branch points and
// evictions all occur.
class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(testing::SeededRng(seed)) {
    for (uint64_t i = 0; i < 3; ++i) systems_.push_back(Prompt(100 + i, 20 + 7 * i));
    conversations_.resize(3);
  }
  // The next input; `Answered` must be told the output when it is a conversation turn.
  std::vector<Token> Next() {
    turn_ = static_cast<int>(testing::Uniform(rng_, 0, 5));
    const auto msg = Prompt(rng_(), static_cast<size_t>(testing::Uniform(rng_, 3, 9)));
    if (turn_ < 3) {
      std::vector<Token> in = systems_[static_cast<size_t>(turn_)];
      in.insert(in.end(), msg.begin(), msg.end());
      return in;
    }
    auto& conv = conversations_[static_cast<size_t>(turn_ - 3)];
    if (conv.size() > 90) conv.clear();  // a new conversation
    conv.insert(conv.end(), msg.begin(), msg.end());
    return conv;
  }
  void Answered(const std::vector<Token>& output) {
    if (turn_ < 3) return;
    auto& conv = conversations_[static_cast<size_t>(turn_ - 3)];
    conv.insert(conv.end(), output.begin(), output.end());
  }

 private:
  std::mt19937_64 rng_;
  std::vector<std::vector<Token>> systems_, conversations_;
  int turn_ = 0;
};

struct Setup {
  const char* admission;
  const char* eviction;
};

class EngineDriverTest : public ::testing::TestWithParam<Setup> {};

// Serves a random workload; with `chunk` > 0 the driver prefills in chunks of that many tokens,
// handing each chunk's states to the cache (InsertChunk) as it goes. Sets `inserts` to the cache's.
void ServeWorkload(const Setup& setup, int64_t chunk, int64_t* inserts = nullptr,
                   int64_t page_size = 1) {
  const HybridModel m = Model();
  const ModelSpec spec = SpecOf(m);
  EXPECT_EQ(spec.StateBytesPerCheckpoint(), m.CheckpointBytes());
  EXPECT_EQ(spec.KvBytesPerToken(), m.KvBytesPerToken());
  // Room for a few states and a couple of hundred tokens: evictions are frequent.
  auto cache = EngineCache(spec, 5 * m.CheckpointBytes() + 200 * m.KvBytesPerToken(),
                           MakeAdmissionByName(setup.admission).value(),
                           MakeEvictionByName(setup.eviction).value(), page_size);
  Driver driver(m, cache.get(), kExact);
  driver.set_prefill_chunk(chunk);
  Workload w(7);
  int64_t reused = 0;
  for (int r = 0; r < 40; ++r) {
    const std::vector<Token> input = w.Next();
    auto served = driver.Serve(input, 3, r);
    ASSERT_TRUE(served.ok()) << served.status().ToString();
    const ServedRequest want = Recompute(m, input, 3, kExact);
    EXPECT_EQ(served->first_logits, want.first_logits) << "request " << r;
    EXPECT_EQ(served->output, want.output) << "request " << r;
    w.Answered(served->output);
    reused += served->reused_tokens;
    const CacheStats& st = cache->stats();
    ASSERT_EQ(driver.stored_kv_tokens(), st.cached_tokens) << "request " << r;
    ASSERT_EQ(driver.stored_states(), st.checkpoints) << "request " << r;
    ASSERT_EQ(driver.stored_bytes(), st.kv_bytes + st.state_bytes) << "request " << r;
    ASSERT_TRUE(cache->CheckInvariants().ok());
  }
  EXPECT_GT(reused, 200 / page_size) << "the workload is meant to hit";
  EXPECT_EQ(reused % page_size, 0);
  // What the cache counted as reused is what the driver reused.
  EXPECT_EQ(reused, cache->stats().hit_tokens);
  EXPECT_GT(cache->stats().evicted_checkpoints, 5) << "the budget is meant to evict";
  if (inserts != nullptr) *inserts = cache->stats().inserts;
}

TEST_P(EngineDriverTest, HitsEqualRecomputeAndStoredBytesEqualTheCachesAccounting) {
  ServeWorkload(GetParam(), 0);
}

TEST_P(EngineDriverTest, ChunkedPrefillIsExactAndAccountedToo) {
  int64_t whole = 0, chunked = 0;
  ServeWorkload(GetParam(), 0, &whole);
  ServeWorkload(GetParam(), 8, &chunked);
  // Chunks' states handed over before their request completed are inserts of their own.
  EXPECT_GE(chunked, whole);
}

INSTANTIATE_TEST_SUITE_P(Policies, EngineDriverTest,
                         ::testing::Values(Setup{"judicious", "flop_aware"},
                                           Setup{"judicious", "lru"}, Setup{"block", "lru"},
                                           Setup{"sparse", "gdsf"}),
                         [](const auto& param_info) {
                           return std::string(param_info.param.admission) + "_" +
                                  param_info.param.eviction;
                         });

// With pages, states and hits sit on page boundaries; the driver captures a decode plan floored
// into the input while prefilling. Still exact, still accounted for.
TEST_P(EngineDriverTest, PagedCacheIsExactAndAccountedToo) {
  ServeWorkload(GetParam(), 8, nullptr, 8);
}

// A chunked prefill hands each chunk's planned states to the cache as it goes: a later request
// resumes from them, bit for bit equal to a recompute.
TEST(EngineDriver, ChunkedPrefillHandsOverEachChunksStates) {
  const HybridModel m = Model();
  auto cache = EngineCache(SpecOf(m), PrefixCacheConfig::kUnlimited,
                           MakeBlockAdmission({16}).value(), MakeLruEviction());
  Driver driver(m, cache.get(), kExact);
  driver.set_prefill_chunk(8);
  const std::vector<Token> input = Prompt(21, 50);
  auto first = driver.Serve(input, 2, 0);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->first_logits, Recompute(m, input, 2, kExact).first_logits);
  EXPECT_EQ(cache->stats().inserts, 3);  // chunks ending at 16, 32 and 48; no decode state
  EXPECT_EQ(driver.stored_states(), 3);
  EXPECT_EQ(driver.stored_bytes(), cache->stats().kv_bytes + cache->stats().state_bytes);
  std::vector<Token> longer(input.begin(), input.begin() + 48);
  longer.push_back(3);
  auto second = driver.Serve(longer, 2, 1);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->reused_tokens, 48);
  EXPECT_EQ(second->first_logits, Recompute(m, longer, 2, kExact).first_logits);
}

TEST(EngineDriver, BlasAndChunkedScanHitsAgreeWithRecomputeToRounding) {
  const HybridModel m = Model();
  auto cache = EngineCache(SpecOf(m), PrefixCacheConfig::kUnlimited, MakeJudiciousAdmission(),
                           MakeFlopAwareEviction({}).value());
  const Kernels fast{ScanKernel::kChunked, MatmulKernel::kBlas};
  Driver driver(m, cache.get(), fast);
  Workload w(8);
  int64_t reused = 0;
  for (int r = 0; r < 20; ++r) {
    const std::vector<Token> input = w.Next();
    const ServedRequest want = Recompute(m, input, 3, fast);
    // Teacher forcing keeps the sequences equal even if a near-tie flipped a greedy token.
    auto served = driver.ServeForced(input, want.output, r);
    ASSERT_TRUE(served.ok()) << served.status().ToString();
    EXPECT_LT(MaxRelDiff(want.first_logits, served->first_logits), 1e-4f) << "request " << r;
    reused += served->reused_tokens;
    w.Answered(want.output);
  }
  EXPECT_GT(reused, 100);
}

// A prompt cached whole, with a state at its end (the branch point of two earlier requests): the
// driver resumes before its last token, computes that token for the first logits, and the cache
// counts exactly that (before, the cache counted a whole-input hit the driver then recomputed).
TEST(EngineDriver, AWholeInputHitLeavesTheLastTokenAndIsCountedSo) {
  const HybridModel m = Model();
  auto cache = EngineCache(SpecOf(m), PrefixCacheConfig::kUnlimited, MakeJudiciousAdmission(),
                           MakeLruEviction());
  Driver driver(m, cache.get(), kExact);
  const std::vector<Token> system = Prompt(11, 40);
  for (Token tail : {Token{7}, Token{8}, Token{9}}) {  // the third captures the branch at 40
    std::vector<Token> input = system;
    input.push_back(tail);
    ASSERT_TRUE(driver.Serve(input, 2, 0).ok());
  }
  ASSERT_EQ(cache->Lookup(system).whole_input_cached, true);
  auto served = driver.Serve(system, 2, 1);
  ASSERT_TRUE(served.ok()) << served.status().ToString();
  EXPECT_LT(served->reused_tokens, static_cast<int64_t>(system.size()));
  EXPECT_GE(served->computed_tokens, 1);
  EXPECT_EQ(served->first_logits, Recompute(m, system, 2, kExact).first_logits);
  EXPECT_EQ(cache->stats().last_token_recomputes, 1);
  int64_t reused_by_cache = cache->stats().hit_tokens;
  EXPECT_GE(reused_by_cache, served->reused_tokens);
}

TEST(EngineDriver, RefusesACacheThatWouldCountTheLastToken) {
  const HybridModel m = Model();
  auto cache =
      PrefixCache::Create({}, SpecOf(m), MakeJudiciousAdmission(), MakeLruEviction()).value();
  Driver driver(m, cache.get(), kExact);
  auto served = driver.Serve(Prompt(3, 10), 2, 0);
  EXPECT_EQ(served.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(cache->stats().requests, 0);
}

TEST(EngineDriver, WithoutACacheEveryRequestIsAFullRecompute) {
  const HybridModel m = Model();
  Driver driver(m, nullptr, kExact);
  const auto input = Prompt(3, 30);
  for (int r = 0; r < 2; ++r) {
    auto served = driver.Serve(input, 2, r);
    ASSERT_TRUE(served.ok());
    EXPECT_EQ(served->reused_tokens, 0);
    EXPECT_EQ(served->first_logits, Recompute(m, input, 2, kExact).first_logits);
  }
  EXPECT_EQ(driver.stored_bytes(), 0);
}

TEST(EngineDriver, BadInputChangesNothingAndASharedCacheIsDetected) {
  const HybridModel m = Model();
  auto cache = EngineCache(SpecOf(m), PrefixCacheConfig::kUnlimited, MakeJudiciousAdmission(),
                           MakeLruEviction());
  auto a = std::make_unique<Driver>(m, cache.get(), kExact);
  std::vector<Token> bad = Prompt(4, 10);
  bad[6] = 256;  // vocabulary is 256
  auto r = a->Serve(bad, 2, 0);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("input token 256 at index 6"), std::string::npos);
  EXPECT_EQ(cache->stats().requests, 0);
  const Token bad_out[] = {1, -3};
  EXPECT_FALSE(a->ServeForced(Prompt(4, 10), bad_out, 0).ok());
  EXPECT_FALSE(a->Serve({}, 2, 0).ok());
  EXPECT_FALSE(a->Serve(Prompt(4, 10), -1, 0).ok());
  EXPECT_EQ(cache->stats().requests, 0);
  const auto input = Prompt(5, 20);
  auto first = a->Serve(input, 2, 1);
  ASSERT_TRUE(first.ok());
  // Another driver on the same cache does not hold what the cache says is there.
  a.reset();
  Driver b(m, cache.get(), kExact);
  std::vector<Token> longer = input;  // the next turn: resumes after the first one's output
  longer.insert(longer.end(), first->output.begin(), first->output.end());
  longer.push_back(7);
  auto again = b.Serve(longer, 2, 2);
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition) << again.status().ToString();
}

}  // namespace
}  // namespace marconi::engine
