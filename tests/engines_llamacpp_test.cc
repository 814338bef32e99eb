// The llama.cpp emulation (llamacpp): the hand-worked cases 17-21 of docs/engine-sources.md §6
// with their hits derived from the rules, a brute-force oracle over one slot's history, the
// prompt cache's oldest-first eviction and entry-size limit, slot choice, derived sizes, --set
// and bad parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <random>
#include <vector>

#include "marconi/prefix_cache.h"
#include "sim/engines/llamacpp.h"
#include "sim/replay.h"
#include "sim/synthetic.h"
#include "sim/systems.h"
#include "token_util.h"

namespace marconi::sim {
namespace {

using testing::Cat;
using testing::Lcp;
using testing::Prefix;
using testing::Seq;

constexpr int64_t kInf = PrefixCacheConfig::kUnlimited;

const ModelSpec& Model() {
  static const ModelSpec model = ModelSpec::Preset("nemotron-h-8b").value();
  return model;
}

// Small enough that a 1 MiB prompt cache holds a few entries of ~1000 tokens.
const ModelSpec& SmallModel() {
  static const ModelSpec model =
      ModelSpec::Create("small", 64, 2, {AttentionLayer{1, 1, 64}, Mamba2Layer{2, 32, 16, 1, 4}})
          .value();
  return model;
}

SystemOverrides Set(std::initializer_list<std::string> items) {
  SystemOverrides o;
  for (const std::string& item : items) EXPECT_TRUE(ParseSet("llamacpp." + item, &o).ok()) << item;
  return o;
}

Result<std::unique_ptr<EngineCache>> Make(const SystemOverrides& overrides, int64_t capacity,
                                          const ModelSpec& model = Model()) {
  EngineContext context;
  context.model = &model;
  context.capacity_bytes = capacity;
  context.param = [&overrides](std::string_view name) {
    return Param(SystemKind::kLlamacpp, name, overrides);
  };
  return MakeLlamacpp(context);
}

std::unique_ptr<LlamacppCache> MakeCache(const SystemOverrides& overrides, int64_t capacity = kInf,
                                         const ModelSpec& model = Model()) {
  auto made = Make(overrides, capacity, model);
  EXPECT_TRUE(made.ok()) << made.status().ToString();
  return std::unique_ptr<LlamacppCache>(static_cast<LlamacppCache*>(made->release()));
}

std::vector<int64_t> Positions(const LlamacppCache::Slot& slot) {
  std::vector<int64_t> out;
  for (const auto& c : slot.checkpoints) out.push_back(c.n_tokens);
  return out;
}

// The checkpoints a prompt of P tokens resumed at s0 takes with n_batch >= 4 + n_ubatch (the
// defaults) and no message spans: the batch loop stops at b1 = P - (4 + n_ubatch) and
// b2 = P - 4, and the state at the start of a batch ending within n_ubatch of P is kept when the
// memory is not empty.
std::vector<int64_t> ExpectedCheckpoints(int64_t prompt, int64_t s0, int64_t n_ubatch = 512) {
  const int64_t b1 = prompt - (4 + n_ubatch), b2 = prompt - 4;
  std::vector<int64_t> out;
  if (s0 < b1) {
    out = {b1, b2};
  } else if (s0 < b2) {
    if (s0 > 0) out.push_back(s0);
    out.push_back(b2);
  } else if (s0 > 0) {
    out.push_back(s0);
  }
  return out;
}

// Cases 17-20 (one slot, prompt cache off).
TEST(EnginesLlamacpp, Cases17To20OneSlot) {
  const auto a_in = Seq(1, 3000), a_out = Seq(50000, 100);
  // 17: batches [0,2048) [2048,2484) [2484,2996) [2996,3000): checkpoints at 2484 and 2996; the
  // slot holds 3099 tokens (the last sampled token is never decoded).
  auto cache = MakeCache(Set({"cache_ram_mib=0"}));
  EXPECT_EQ(cache->Serve(a_in, a_out, 0).reusable_tokens, 0);
  EXPECT_EQ(Positions(cache->slots()[0]), ExpectedCheckpoints(3000, 0));
  EXPECT_EQ(Positions(cache->slots()[0]), std::vector<int64_t>({2484, 2996}));
  EXPECT_EQ(cache->slots()[0].tokens.size(), 3099u);

  // 18: B = A.input + A.output + 200: the slot is a proper prefix, the live state is used.
  const auto b_in = Cat(Cat(a_in, a_out), Seq(90000, 200));
  const EngineLookup b = cache->Serve(b_in, {}, 1);
  EXPECT_EQ(b.reusable_tokens, 3099);
  auto want = std::vector<int64_t>({2484, 2996});
  for (int64_t c : ExpectedCheckpoints(3300, 3099)) want.push_back(c);
  EXPECT_EQ(Positions(cache->slots()[0]), want);
  EXPECT_EQ(want, std::vector<int64_t>({2484, 2996, 3099, 3296}));

  // 19: C shares 2900 with the slot (n=3200): the newest checkpoint <= 2900 is 2484; those past
  // it are erased before C's own are taken.
  const auto c_in = Cat(Prefix(b_in, 2900), Seq(120000, 300));
  const EngineLookup c = cache->Serve(c_in, {}, 2);
  EXPECT_EQ(c.attention_hit_tokens, 2900);
  EXPECT_EQ(c.reusable_tokens, 2484);
  want = {2484};
  for (int64_t p : ExpectedCheckpoints(3200, 2484)) want.push_back(p);
  EXPECT_EQ(Positions(cache->slots()[0]), want);

  // 20: after 17, an identical resend of A's input: L = n = 3000, threshold 2999: checkpoint 2996.
  auto fresh = MakeCache(Set({"cache_ram_mib=0"}));
  fresh->Serve(a_in, a_out, 0);
  const EngineLookup resend = fresh->Serve(a_in, a_out, 1);
  EXPECT_EQ(resend.attention_hit_tokens, 2999);
  EXPECT_EQ(resend.reusable_tokens, 2996);

  // A slot holding exactly the new input (one output token, never decoded): L = n, so the live
  // state (at n) is past the threshold n - 1 and the newest checkpoint below n serves.
  auto exact = MakeCache(Set({"cache_ram_mib=0"}));
  exact->Serve(a_in, Seq(7, 1), 0);
  ASSERT_EQ(exact->slots()[0].tokens, a_in);
  EXPECT_EQ(exact->Serve(a_in, {}, 1).reusable_tokens, ExpectedCheckpoints(3000, 0).back());
}

// Case 21: with the prompt cache, an unrelated request saves the slot as an entry and runs with
// hit 0; the continuation of A then loads the entry back (f_keep 1 >= 0.25, beating the slot)
// and erases it from the cache: hit 3099.
TEST(EnginesLlamacpp, Case21PromptCacheSavesAndLoads) {
  auto cache = MakeCache({});
  const auto a_in = Seq(1, 3000), a_out = Seq(50000, 100);
  cache->Serve(a_in, a_out, 0);
  EXPECT_TRUE(cache->prompt_cache().empty());  // nothing to save yet
  const auto d = Seq(200000, 800);
  EXPECT_EQ(cache->Serve(d, Seq(60000, 10), 1).reusable_tokens, 0);
  ASSERT_EQ(cache->prompt_cache().size(), 1u);
  EXPECT_EQ(cache->prompt_cache()[0].tokens.size(), 3099u);
  EXPECT_EQ(cache->prompt_cache()[0].checkpoints.size(), 2u);
  const int64_t entry = 3099 * Model().KvBytesPerToken() + 3 * Model().StateBytesPerCheckpoint();
  EXPECT_EQ(cache->prompt_cache()[0].bytes, entry);
  const auto e = Cat(Cat(a_in, a_out), Seq(90000, 50));
  const EngineLookup got = cache->Serve(e, {}, 2);
  EXPECT_EQ(got.reusable_tokens, 3099);
  // A's entry left the cache; D's content was saved in its place.
  ASSERT_EQ(cache->prompt_cache().size(), 1u);
  EXPECT_EQ(cache->prompt_cache()[0].tokens.size(), 809u);
  // Without the prompt cache, D's request discards A (the LCP is 0) and E gets nothing.
  auto off = MakeCache(Set({"cache_ram_mib=0"}));
  off->Serve(a_in, a_out, 0);
  off->Serve(d, Seq(60000, 10), 1);
  EXPECT_EQ(off->Serve(e, {}, 2).reusable_tokens, 0);
}

// Oracle: one slot, prompt cache off, unbounded context. The slot after request j holds
// input_j + output_j[:-1]; its checkpoints are those taken since they were last cut. A request's
// hit: the slot's length if the slot is a proper prefix of the input, else the deepest checkpoint
// c with c <= L and c - 1 < L - [L == n] (L the LCP), else 0; then checkpoints c - 1 > hit go,
// and the request's own (ExpectedCheckpoints) are added under the 32-entry rule.
TEST(EnginesLlamacpp, BruteForceOracleOneSlot) {
  const uint64_t seed = 11235813;
  std::cout << "[ seed     ] " << seed << "\n";
  std::mt19937_64 rng(seed);
  auto uniform = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto fresh = [&](int64_t len) {
    std::vector<Token> v(static_cast<size_t>(len));
    for (Token& t : v) t = static_cast<Token>(uniform(0, 1 << 30));
    return v;
  };
  for (int64_t cap : {32, 3}) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " ctx_checkpoints " + std::to_string(cap));
    auto cache = MakeCache(Set(
        {"cache_ram_mib=0", "ctx_checkpoints=" + std::to_string(cap), "checkpoint_min_step=600"}));
    std::vector<std::vector<Token>> history;
    std::vector<Token> slot;
    struct Ck {
      int64_t at, task;
    };
    std::vector<Ck> cks;
    int64_t hits = 0;
    for (int64_t task = 1; task <= 400; ++task) {
      std::vector<Token> x;
      const int64_t kind = uniform(0, 9);
      if (kind < 5 && !slot.empty()) {  // continue the slot's conversation
        x = Cat(Prefix(slot, uniform(std::max<int64_t>(1, static_cast<int64_t>(slot.size()) - 600),
                                     static_cast<int64_t>(slot.size()))),
                fresh(uniform(0, 1500)));
      } else if (kind < 7 && !history.empty()) {  // resend or edit an older prompt
        const auto& h =
            history[static_cast<size_t>(uniform(0, static_cast<int64_t>(history.size()) - 1))];
        x = Cat(Prefix(h, uniform(1, static_cast<int64_t>(h.size()))), fresh(uniform(0, 50)));
      } else {
        x = fresh(uniform(1, 3000));
      }
      if (x.empty()) x = fresh(1);
      const auto out = fresh(uniform(0, 40));
      const int64_t n = static_cast<int64_t>(x.size());
      const int64_t held = static_cast<int64_t>(slot.size());
      const int64_t l = Lcp(slot, x);
      int64_t want = 0;
      if (l > 0 && held == l && l < n) {
        want = held;
      } else if (l > 0) {
        for (const Ck& c : cks) {
          if (c.at <= l && c.at - 1 < l - (l == n ? 1 : 0)) want = std::max(want, c.at);
        }
      }
      const EngineLookup got = cache->Serve(x, out, static_cast<double>(task));
      ASSERT_EQ(got.reusable_tokens, want) << "task " << task;
      ASSERT_EQ(got.attention_hit_tokens, std::min(l, n - 1)) << "task " << task;
      hits += want > 0 ? 1 : 0;
      std::erase_if(cks, [&](const Ck& c) { return c.at - 1 > want; });
      for (int64_t at : ExpectedCheckpoints(n, want)) {
        if (!cks.empty() && cks.back().at == at) continue;
        if (static_cast<int64_t>(cks.size()) + 1 >= cap) {
          std::vector<Ck> kept;
          for (const Ck& c : cks) {
            if (kept.empty() || c.task == task || c.at >= kept.back().at + 600) kept.push_back(c);
          }
          cks = kept;
        }
        while (static_cast<int64_t>(cks.size()) >= cap) cks.erase(cks.begin());
        cks.push_back({at, task});
      }
      std::vector<int64_t> got_cks = Positions(cache->slots()[0]), want_cks;
      for (const Ck& c : cks) want_cks.push_back(c.at);
      ASSERT_EQ(got_cks, want_cks) << "task " << task;
      slot = x;
      slot.insert(slot.end(), out.begin(), out.end() - (out.empty() ? 0 : 1));
      ASSERT_EQ(cache->slots()[0].tokens, slot) << "task " << task;
      history.push_back(x);
    }
    EXPECT_GT(hits, 50);
  }
}

// The prompt cache drops its oldest entries first to fit a new one, and never stores an entry
// larger than the whole cache (that content is then lost).
TEST(EnginesLlamacpp, PromptCacheEvictsOldestAndRefusesOversizedEntries) {
  const ModelSpec& m = SmallModel();
  auto cache = MakeCache(Set({"cache_ram_mib=1"}), kInf, m);
  const int64_t limit = int64_t{1} << 20;
  // Unrelated requests of 1000 tokens (+1 decoded): each one saves the previous slot.
  const int64_t entry = 1000 * m.KvBytesPerToken() + 3 * m.StateBytesPerCheckpoint();
  const int64_t fit = limit / entry;
  ASSERT_GE(fit, 2);
  ASSERT_LE(fit, 8);
  std::vector<std::vector<Token>> prompts;
  for (int i = 0; i < fit + 3; ++i) {
    prompts.push_back(Seq(1'000'000 * (i + 1), 999));
    cache->Serve(prompts.back(), Seq(7, 2), i);
    EXPECT_LE(cache->prompt_cache_bytes(), limit);
    for (const auto& e : cache->prompt_cache()) EXPECT_EQ(e.bytes, entry);
  }
  // Held: the last `fit` saved, i.e. prompts [2, fit + 2) in age order; 0 and 1 were dropped.
  ASSERT_EQ(static_cast<int64_t>(cache->prompt_cache().size()), fit);
  for (int64_t i = 0; i < fit; ++i) {
    EXPECT_EQ(cache->prompt_cache()[static_cast<size_t>(i)].tokens[0],
              prompts[static_cast<size_t>(i + 2)][0]);
  }
  EXPECT_EQ(cache->stats().evictions, 2);
  EXPECT_EQ(cache->Serve(Cat(prompts[0], Seq(5, 10)), {}, 100).reusable_tokens, 0);
  // The newest entry survives the save of request 100's slot and is loaded back.
  EXPECT_EQ(cache->Serve(Cat(Cat(prompts.back(), Seq(7, 1)), Seq(5, 10)), {}, 101).reusable_tokens,
            1000);

  // An oversized slot (more than 1 MiB) is not saved: its content is gone after a switch.
  auto big = MakeCache(Set({"cache_ram_mib=1"}), kInf, m);
  const auto huge = Seq(5'000'000, limit / m.KvBytesPerToken() + 10);
  big->Serve(huge, Seq(7, 2), 0);
  big->Serve(Seq(9'000'000, 100), Seq(7, 2), 1);
  EXPECT_TRUE(big->prompt_cache().empty());
  EXPECT_EQ(big->Serve(Cat(huge, Seq(3, 5)), {}, 2).reusable_tokens, 0);
}

// With two slots: a resend of X while its slot holds X + Z (f_keep < 0.5) saves the slot, finds
// no entry keeping more than the slot does, clears it and recomputes X; when X's slot later
// switches, X is not saved again, as the entry X + Z already holds it as a prefix.
TEST(EnginesLlamacpp, PromptCacheSkipsAContainedSlot) {
  auto cache = MakeCache(Set({"parallel=2"}));
  const auto x = Seq(1, 1000), z = Seq(500'000, 1500), out = Seq(9, 3);
  cache->Serve(x, out, 0);                         // slot 1 (both empty: the last one)
  cache->Serve(Seq(2'000'000, 300), out, 1);       // slot 0
  const auto xz = Cat(Cat(x, Prefix(out, 2)), z);  // continues slot 1 (live state)
  EXPECT_EQ(cache->Serve(xz, out, 2).reusable_tokens, 1002);
  EXPECT_TRUE(cache->prompt_cache().empty());
  EXPECT_EQ(cache->Serve(x, out, 3).reusable_tokens, 0);  // saved, not loaded, cleared
  ASSERT_EQ(cache->prompt_cache().size(), 1u);
  EXPECT_EQ(cache->prompt_cache()[0].tokens.size(), xz.size() + 2);
  cache->Serve(Seq(3'000'000, 300), out, 4);  // the LRU slot 0: saves its content
  ASSERT_EQ(cache->prompt_cache().size(), 2u);
  cache->Serve(Seq(4'000'000, 300), out, 5);  // slot 1, holding X + 2: contained in X + Z
  EXPECT_EQ(cache->prompt_cache().size(), 2u);
}

// Slot choice: with two slots, two alternating conversations each keep their slot (similarity
// above 0.10), and an unrelated prompt takes the least recently used one.
TEST(EnginesLlamacpp, SlotsFollowPromptSimilarity) {
  auto cache = MakeCache(Set({"parallel=2", "cache_ram_mib=0"}));
  auto a = Seq(1, 1000), b = Seq(1'000'000, 1000);
  cache->Serve(a, Seq(10, 5), 0);
  const size_t slot_a = cache->last_slot();
  cache->Serve(b, Seq(10, 5), 1);
  EXPECT_NE(cache->last_slot(), slot_a);
  for (int turn = 0; turn < 3; ++turn) {
    a = Cat(Cat(a, Seq(10, 5)), Seq(20'000 + 1000 * turn, 100));
    const int64_t want_a = static_cast<int64_t>(a.size()) - 101;
    EXPECT_EQ(cache->Serve(a, Seq(10, 5), 2 + 2 * turn).reusable_tokens, want_a);
    EXPECT_EQ(cache->last_slot(), slot_a);
    b = Cat(Cat(b, Seq(10, 5)), Seq(90'000 + 1000 * turn, 100));
    EXPECT_EQ(cache->Serve(b, Seq(10, 5), 3 + 2 * turn).reusable_tokens,
              static_cast<int64_t>(b.size()) - 101);
  }
  cache->Serve(Seq(5'000'000, 50), {}, 10);  // unrelated: the LRU slot, A's
  EXPECT_EQ(cache->last_slot(), slot_a);
}

// --capacity is the slots' memory: n_ctx = (capacity / parallel - state) / KV per token; a prompt
// that does not fit a slot's context is refused, and decoding stops at the context.
TEST(EnginesLlamacpp, CapacityIsTheSlotsContext) {
  const int64_t kv = Model().KvBytesPerToken(), st = Model().StateBytesPerCheckpoint();
  const int64_t capacity = 2 * (st + 5000 * kv) + 7;
  auto made = Make(Set({"parallel=2"}), capacity);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  const auto derived = (*made)->DerivedSizes();
  EXPECT_EQ(derived.at("slots"), 2);
  EXPECT_EQ(derived.at("n_ctx"), 5000);
  EXPECT_EQ(derived.at("checkpoint_bytes"), st);
  EXPECT_EQ(derived.at("cache_ram_bytes"), 8192.0 * 1024 * 1024);
  EXPECT_EQ(MakeCache(Set({"cache_ram_mib=-1"}))->DerivedSizes().at("cache_ram_bytes"), -1);
  auto* cache = static_cast<LlamacppCache*>(made->get());
  EXPECT_EQ(cache->Serve(Seq(1, 5000), Seq(9, 3), 0).reusable_tokens, 0);
  EXPECT_EQ(cache->rejected(), 1);
  cache->Serve(Seq(1, 4990), Seq(100'000, 50), 1);
  EXPECT_EQ(cache->slots()[cache->last_slot()].tokens.size(), 5000u);
  EXPECT_LE(cache->stats().peak_kv_bytes, 2 * 5000 * kv);
  EXPECT_LE(cache->stats().peak_bytes, capacity);  // host RAM (checkpoints, prompt cache) is apart
}

TEST(EnginesLlamacpp, SetReachesTheEmulation) {
  const Trace trace = SyntheticMixed(12, 2.0, 5);
  SimConfig config;
  config.model = Model();
  config.capacity_bytes = 4'000'000'000;
  config.threads = 1;
  auto base = RunSystem(trace, SystemKind::kLlamacpp, config);
  ASSERT_TRUE(base.ok()) << base.status().ToString();
  EXPECT_GT(base->stats.hit_tokens, 0);
  EXPECT_EQ(base->derived.at("slots"), 1);
  ASSERT_TRUE(ParseSet("llamacpp.ctx_checkpoints=0", &config.params).ok());
  ASSERT_TRUE(ParseSet("llamacpp.parallel=4", &config.params).ok());
  auto changed = RunSystem(trace, SystemKind::kLlamacpp, config);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->derived.at("slots"), 4);
  EXPECT_EQ(changed->params.at("ctx_checkpoints"), 0);
  EXPECT_EQ(changed->stats.checkpoints_admitted, 0);
  EXPECT_GT(base->stats.checkpoints_admitted, 0);
}

TEST(EnginesLlamacpp, BadParametersAreRefused) {
  SystemOverrides o;
  EXPECT_FALSE(ParseSet("llamacpp.parallel=0", &o).ok());
  EXPECT_FALSE(ParseSet("llamacpp.cache_ram_mib=-2", &o).ok());
  EXPECT_FALSE(ParseSet("llamacpp.slot_prompt_similarity=1.5", &o).ok());
  auto tiny = Make({}, 1000);
  ASSERT_FALSE(tiny.ok());
  EXPECT_EQ(tiny.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tiny.status().message().find("context"), std::string::npos);
  EngineContext context;
  context.model = &Model();
  context.capacity_bytes = kInf;
  context.param = [](std::string_view name) {
    return name == "slot_prompt_similarity" ? -1.0 : Param(SystemKind::kLlamacpp, name, {});
  };
  EXPECT_EQ(MakeLlamacpp(context).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace marconi::sim
