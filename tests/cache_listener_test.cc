// CacheListener against a brute-force model of what an engine holds: every eviction it reports
// frees exactly what the cache's accounting drops, so a mirror kept from Insert calls and
// eviction events always equals the cache's content.
#include <gtest/gtest.h>

#include <set>

#include "test_util.h"

namespace marconi {
namespace {

using testing::MakeCache;
using testing::RandomSequence;
using testing::SeededRng;
using testing::Uniform;

// What an engine would hold: the KV of every cached token, named by its prefix (path to it), and
// the state after every checkpointed prefix.
class Mirror : public CacheListener {
 public:
  void Inserted(std::span<const Token> seq, std::span<const int64_t> checkpoints) {
    for (int64_t i = 1; i <= checkpoints.back(); ++i) kv.insert(Prefix(seq, i));
    for (int64_t p : checkpoints) states.insert(Prefix(seq, p));
  }
  void OnEvicted(const EvictionEvent& e) override {
    const int64_t depth = static_cast<int64_t>(e.path.size());
    ASSERT_LE(e.kv_begin, depth);
    ASSERT_EQ(states.erase(Prefix(e.path, depth)), 1u) << "evicted a state never stored";
    for (int64_t i = e.kv_begin + 1; i <= depth; ++i) {
      ASSERT_EQ(kv.erase(Prefix(e.path, i)), 1u) << "evicted KV never stored, token " << i;
    }
    ++events;
  }
  static std::vector<Token> Prefix(std::span<const Token> s, int64_t n) {
    return {s.begin(), s.begin() + n};
  }
  std::set<std::vector<Token>> kv, states;
  int64_t events = 0;
};

class CacheListenerTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CacheListenerTest, MirrorFollowsTheCacheExactly) {
  const ModelSpec model = testing::TinyModel();
  const int64_t kv = model.KvBytesPerToken(), state = model.StateBytesPerCheckpoint();
  auto rng = SeededRng(20261123);
  for (int round = 0; round < 4; ++round) {
    auto cache = MakeCache(model, state * 6 + kv * 120, "judicious", GetParam());
    Mirror mirror;
    cache->SetListener(&mirror);
    std::vector<std::vector<Token>> stems;
    for (int i = 0; i < 4; ++i) stems.push_back(RandomSequence(rng, {{}}, 3, 40));
    for (int step = 0; step < 300; ++step) {
      const auto seq = RandomSequence(rng, stems, 3, 12);
      std::vector<int64_t> cps;
      for (int64_t p = 1; p <= static_cast<int64_t>(seq.size()); ++p) {
        if (Uniform(rng, 0, 5) == 0 || p == static_cast<int64_t>(seq.size())) cps.push_back(p);
      }
      // Insertion first (the mirror learns of it), then the evictions it triggers: the mirror
      // adds before the cache runs, as an engine stores captured states before inserting.
      mirror.Inserted(seq, cps);
      const Status s = cache->Insert(seq, cps, step);
      ASSERT_TRUE(s.ok()) << s.ToString();
      const CacheStats& st = cache->stats();
      ASSERT_EQ(static_cast<int64_t>(mirror.kv.size()), st.cached_tokens) << "step " << step;
      ASSERT_EQ(static_cast<int64_t>(mirror.states.size()), st.checkpoints) << "step " << step;
      ASSERT_EQ(static_cast<int64_t>(mirror.kv.size()) * kv + st.checkpoints * state,
                st.kv_bytes + st.state_bytes);
      for (const auto& p : mirror.states) {
        ASSERT_EQ(cache->Lookup(p).reusable_tokens, static_cast<int64_t>(p.size()));
      }
    }
    EXPECT_GT(mirror.events, 50) << "the budget is meant to force evictions";
    EXPECT_EQ(mirror.events, cache->stats().evicted_checkpoints);
    // A clone starts without the listener: its evictions are not reported.
    auto clone = cache->Clone();
    const int64_t before = mirror.events;
    for (int i = 0; i < 20; ++i) {
      const auto seq = RandomSequence(rng, stems, 3, 30);
      ASSERT_TRUE(
          clone->Insert(seq, std::vector<int64_t>{static_cast<int64_t>(seq.size())}, 1000 + i)
              .ok());
    }
    EXPECT_EQ(mirror.events, before);
    cache->SetListener(nullptr);
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, CacheListenerTest,
                         ::testing::Values("lru", "flop_aware", "gdsf"));

}  // namespace
}  // namespace marconi
