// The llama.cpp emulation (llamacpp): the hand-worked cases 17-21 of docs/engine-sources.md §6
// with their hits derived from the rules, a brute-force oracle over one slot's history, the
// prompt cache's oldest-first eviction and entry-size limit, slot choice, derived sizes, --set
// and bad parameters; under load (the request protocol): slots held by running requests, kNoRoom
// while every slot is busy, Peek, chunked prefill, and a randomised interleaving.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <map>
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

// ---- Under load: the request protocol ----

// Unsigned arithmetic: it wraps (a signed product would overflow, undefined behaviour).
int64_t Hash(const std::vector<Token>& v) {
  uint64_t h = v.size();
  for (Token t : v) h = h * 1'000'003 + static_cast<uint64_t>(t);
  return static_cast<int64_t>(h);
}

// Everything the cache holds and counts (but the refusal counter): two equal fingerprints mean
// the same slots, the same prompt cache, the same statistics and the same memory.
std::vector<int64_t> Fingerprint(const LlamacppCache& c) {
  const CacheStats& s = c.stats();
  const MemoryUse m = c.Memory();
  std::vector<int64_t> f = {s.cached_tokens,
                            s.checkpoints,
                            s.nodes,
                            s.kv_bytes,
                            s.state_bytes,
                            s.peak_kv_bytes,
                            s.peak_state_bytes,
                            s.peak_bytes,
                            s.inserts,
                            s.checkpoints_admitted,
                            s.evictions,
                            s.evicted_checkpoints,
                            s.evicted_tokens,
                            c.prompt_cache_bytes(),
                            m.running_kv,
                            m.running_state,
                            m.cached_kv,
                            m.cached_state};
  for (const auto& slot : c.slots()) {
    f.insert(f.end(), {Hash(slot.tokens), slot.last_used, slot.busy ? 1 : 0});
    for (const auto& ck : slot.checkpoints) f.insert(f.end(), {ck.n_tokens, ck.task});
    f.push_back(-7);
  }
  for (const auto& e : c.prompt_cache()) {
    f.insert(f.end(), {Hash(e.tokens), e.bytes});
    for (const auto& ck : e.checkpoints) f.insert(f.end(), {ck.n_tokens, ck.task});
    f.push_back(-9);
  }
  return f;
}

// Drives many requests through one cache at random (fixed seed): admissions with random
// reservations, prefill and decode in random chunks, finishes and aborts in random order (an
// aborted request comes back to recompute its sequence), conversations that continue, unrelated
// prompts and prompts too long for a slot. After every call it checks the invariants; with
// `peek` it also calls Peek before every admission and at random, which must change nothing.
// Returns the fingerprint after every call and every lookup, for the twin test.
class LoadDriver {
 public:
  LoadDriver(LlamacppCache* cache, int64_t capacity, uint64_t seed, bool peek)
      : cache_(cache), capacity_(capacity), rng_(seed), peek_rng_(seed + 1), peek_(peek) {}

  std::vector<int64_t> Run(int steps) {
    for (int step = 0; step < steps && !::testing::Test::HasFatalFailure(); ++step) {
      SCOPED_TRACE("step " + std::to_string(step));
      // Peek draws from its own generator, so that a twin without Peek runs the same calls.
      if (peek_ && Uniform(peek_rng_, 0, 3) == 0) (void)cache_->Peek(NewInput(peek_rng_));
      const int64_t op = Uniform(0, 9);
      if (op < 3 || flights_.empty()) {
        Admit();
      } else if (op < 9) {
        Advance(Pick());
      } else {
        Abort(Pick());
      }
    }
    while (!flights_.empty() && !::testing::Test::HasFatalFailure())
      Advance(flights_.begin()->first);
    return trace_;
  }

  int64_t admitted = 0, no_room = 0, too_large = 0, hits = 0, aborts = 0, finished = 0;

 private:
  struct Flight {
    std::vector<Token> input, output;
    int64_t hit = 0, pos = 0, reserved = 0, prefill_end = 0;
    size_t slot = 0;
    int64_t end() const {
      const int64_t n = static_cast<int64_t>(input.size());
      return n + std::max<int64_t>(static_cast<int64_t>(output.size()), 1) - 1;
    }
  };

  static int64_t Uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  }
  int64_t Uniform(int64_t lo, int64_t hi) { return Uniform(rng_, lo, hi); }
  static std::vector<Token> Fresh(std::mt19937_64& rng, int64_t len) {
    std::vector<Token> v(static_cast<size_t>(len));
    for (Token& t : v) t = static_cast<Token>(Uniform(rng, 0, 1 << 30));
    return v;
  }
  std::vector<Token> Fresh(int64_t len) { return Fresh(rng_, len); }
  std::vector<Token> NewInput() { return NewInput(rng_); }
  std::vector<Token> NewInput(std::mt19937_64& rng) {
    const int64_t kind = Uniform(rng, 0, 9);
    if (kind < 6 && !sessions_.empty()) {  // continue a conversation (maybe cut back a little)
      const auto& h = sessions_[static_cast<size_t>(Uniform(rng, 0, Size(sessions_) - 1))];
      return Cat(Prefix(h, Uniform(rng, std::max<int64_t>(1, Size(h) - 30), Size(h))),
                 Fresh(rng, Uniform(rng, 1, 300)));
    }
    if (kind < 7) return Fresh(rng, Uniform(rng, 1490, 1700));  // around a slot's context (1500)
    return Fresh(rng, Uniform(rng, 1, 600));
  }
  static int64_t Size(const auto& v) { return static_cast<int64_t>(v.size()); }
  uint64_t Pick() {
    auto it = flights_.begin();
    std::advance(it, Uniform(0, Size(flights_) - 1));
    return it->first;
  }
  void Record(const EngineLookup& found) {
    trace_.insert(trace_.end(), {found.attention_hit_tokens, found.reusable_tokens});
  }

  void Admit() {
    Flight f;
    int64_t prefill_end = 0;
    if (!waiting_.empty() && Uniform(0, 1) == 0) {  // an aborted request recomputes
      f = std::move(waiting_.back());
      waiting_.pop_back();
      prefill_end = f.prefill_end;
    } else {
      f.input = NewInput();
      f.output = Fresh(Uniform(0, 120));
      prefill_end = Size(f.input);
    }
    const uint64_t id = next_id_++;
    const EngineLookup peeked = peek_ ? cache_->Peek(f.input) : EngineLookup{};
    const std::vector<int64_t> before = Fingerprint(*cache_);
    const int64_t rejected = cache_->rejected();
    const size_t busy = cache_->running();
    // Reserve a random part of the prefill, up to all of it.
    const int64_t reserve_max = prefill_end - (Size(f.input) - 1);  // hit <= n - 1
    const int64_t ask = Uniform(0, std::max<int64_t>(0, reserve_max));
    EngineLookup found;
    Flight& g = flights_[id] = std::move(f);
    const EngineAdmit got =
        cache_->Admit(id, g.input, g.output, prefill_end, ask, static_cast<double>(id), &found);
    Record(found);
    if (peek_) {
      EXPECT_EQ(peeked.attention_hit_tokens, found.attention_hit_tokens);
      EXPECT_EQ(peeked.reusable_tokens, found.reusable_tokens);
    }
    const int64_t n = Size(g.input);
    if (got != EngineAdmit::kAdmitted) {
      if (got == EngineAdmit::kNoRoom) {
        ++no_room;
        EXPECT_EQ(busy, cache_->slots().size());  // only when every slot is busy
        EXPECT_EQ(Fingerprint(*cache_), before);  // nothing changed
        EXPECT_EQ(cache_->rejected(), rejected);
      } else {
        ++too_large;
        EXPECT_GE(n, cache_->n_ctx());
        EXPECT_EQ(cache_->rejected(), rejected + 1);
        // Only the chosen slot's prompt-cache update may change something: nothing without it.
        if (cache_->cache_ram_bytes() == 0) {
          EXPECT_EQ(Fingerprint(*cache_), before);
        }
      }
      EXPECT_EQ(found.attention_hit_tokens, 0);
      EXPECT_EQ(found.reusable_tokens, 0);
      if (got == EngineAdmit::kNoRoom && Uniform(0, 1) == 0) {
        g.prefill_end = prefill_end;
        waiting_.push_back(std::move(g));  // it waits for a slot
      }
      flights_.erase(id);
      Check();
      return;
    }
    ++admitted;
    hits += found.reusable_tokens > 0 ? 1 : 0;
    EXPECT_LT(n, cache_->n_ctx());
    EXPECT_LE(found.reusable_tokens, found.attention_hit_tokens);
    EXPECT_LE(found.attention_hit_tokens, n - 1);
    g.hit = g.pos = found.reusable_tokens;
    g.reserved = g.hit + ask;
    g.prefill_end = prefill_end;
    g.slot = cache_->last_slot();
    EXPECT_TRUE(cache_->slots()[g.slot].busy);
    Check();
  }

  // Reserves and computes the next chunk; finishes the request at its end.
  void Advance(uint64_t id) {
    Flight& f = flights_.at(id);
    if (f.pos == f.end()) {
      cache_->Finish(id, 0);
      ++finished;
      sessions_.push_back(Cat(f.input, Prefix(f.output, f.end() - Size(f.input))));
      flights_.erase(id);
      Check();
      return;
    }
    const int64_t limit = f.pos < f.prefill_end ? f.prefill_end : f.end();
    const int64_t to = std::min(limit, f.pos + Uniform(1, 300));
    if (to > f.reserved) {
      ASSERT_TRUE(cache_->Reserve(id, to - f.reserved));  // the slot's own memory
      f.reserved = to;
      Check();
    }
    cache_->Computed(id, to);
    f.pos = to;
    Check();
  }

  void Abort(uint64_t id) {
    Flight f = std::move(flights_.at(id));
    flights_.erase(id);
    cache_->Abort(id);
    ++aborts;
    // It recomputes its sequence so far when it comes back.
    f.prefill_end = std::max(Size(f.input), f.pos);
    f.hit = f.pos = f.reserved = 0;
    waiting_.push_back(std::move(f));
    Check();
  }

  void Check() {
    const MemoryUse m = cache_->Memory();
    ASSERT_LE(m.total(), capacity_);
    const int64_t kv = SmallModel().KvBytesPerToken(), st = SmallModel().StateBytesPerCheckpoint();
    int64_t running_kv = 0;
    size_t busy = 0;
    for (const auto& s : cache_->slots()) {
      busy += s.busy ? 1 : 0;
      ASSERT_LE(Size(s.tokens), cache_->n_ctx());
      ASSERT_LE(Size(s.checkpoints), 4);  // ctx_checkpoints
    }
    ASSERT_EQ(busy, flights_.size());
    ASSERT_EQ(cache_->running(), flights_.size());
    for (const auto& [id, f] : flights_) {
      // A running request's slot is its own: it holds exactly the sequence computed so far.
      const auto& slot = cache_->slots()[f.slot];
      ASSERT_TRUE(slot.busy);
      const int64_t held = std::min(f.pos, cache_->n_ctx());
      const std::vector<Token> seq = Cat(f.input, f.output);
      ASSERT_EQ(slot.tokens, Prefix(seq, held)) << "request " << id;
      running_kv += (held - f.hit) * kv;
    }
    ASSERT_EQ(m.running_kv, running_kv);
    ASSERT_EQ(m.running_state, static_cast<int64_t>(flights_.size()) * st);
    int64_t entries = 0;
    for (const auto& e : cache_->prompt_cache()) entries += e.bytes;
    ASSERT_EQ(entries, cache_->prompt_cache_bytes());
    if (cache_->cache_ram_bytes() >= 0) {
      ASSERT_LE(entries, cache_->cache_ram_bytes());
    }
    trace_.push_back(-1);
    const std::vector<int64_t> f = Fingerprint(*cache_);
    trace_.insert(trace_.end(), f.begin(), f.end());
  }

  LlamacppCache* cache_;
  int64_t capacity_;
  std::mt19937_64 rng_, peek_rng_;
  bool peek_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Flight> flights_;
  std::vector<Flight> waiting_;
  std::vector<std::vector<Token>> sessions_;
  std::vector<int64_t> trace_;
};

// Three slots of 1500 tokens, small batches so that prompts take several checkpoints.
std::unique_ptr<LlamacppCache> LoadCache(int64_t cache_ram_mib, int64_t* capacity) {
  const ModelSpec& m = SmallModel();
  *capacity = 3 * (m.StateBytesPerCheckpoint() + 1500 * m.KvBytesPerToken());
  return MakeCache(
      Set({"parallel=3", "cache_ram_mib=" + std::to_string(cache_ram_mib), "n_batch=256",
           "n_ubatch=64", "ctx_checkpoints=4", "checkpoint_min_step=100"}),
      *capacity, m);
}

// (a) Random interleavings, with the prompt cache off and on (1 MiB: entries come and go).
TEST(EnginesLlamacpp, UnderLoadRandomInterleavingKeepsTheInvariants) {
  const uint64_t seed = 20261124;
  std::cout << "[ seed     ] " << seed << "\n";
  for (int64_t ram : {0, 1}) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " cache_ram_mib " + std::to_string(ram));
    int64_t capacity = 0;
    auto cache = LoadCache(ram, &capacity);
    ASSERT_EQ(cache->n_ctx(), 1500);
    LoadDriver driver(cache.get(), capacity, seed + static_cast<uint64_t>(ram), true);
    driver.Run(4000);
    ASSERT_FALSE(HasFatalFailure());
    // Every kind of event happened.
    EXPECT_GT(driver.admitted, 300);
    EXPECT_GT(driver.no_room, 20);
    EXPECT_GT(driver.too_large, 5);
    EXPECT_GT(driver.hits, 50);
    EXPECT_GT(driver.aborts, 20);
    EXPECT_GT(driver.finished, 200);
    if (ram > 0) {
      EXPECT_GT(cache->stats().inserts, 20);
    }
    // Nothing runs: no running memory; what is left is the slots' content.
    const MemoryUse m = cache->Memory();
    EXPECT_EQ(m.running_kv, 0);
    EXPECT_EQ(m.running_state, 0);
    EXPECT_EQ(m.cached_kv + m.cached_state, cache->stats().kv_bytes + cache->stats().state_bytes);
  }
}

// (b) Peek finds what Admit's lookup finds (checked by the driver) and changes nothing: a twin
// driven the same way without Peek ends every call in the same state.
TEST(EnginesLlamacpp, UnderLoadPeekChangesNothing) {
  const uint64_t seed = 777;
  std::cout << "[ seed     ] " << seed << "\n";
  int64_t capacity = 0;
  auto peeked = LoadCache(1, &capacity);
  auto plain = LoadCache(1, &capacity);
  LoadDriver with(peeked.get(), capacity, seed, true);
  LoadDriver without(plain.get(), capacity, seed, false);
  const std::vector<int64_t> a = with.Run(1500), b = without.Run(1500);
  EXPECT_GT(with.admitted, 100);
  ASSERT_EQ(a.size(), b.size());
  const auto diff = std::mismatch(a.begin(), a.end(), b.begin());
  EXPECT_EQ(diff.first - a.begin(), static_cast<ptrdiff_t>(a.size())) << "first difference";
  EXPECT_EQ(Fingerprint(*peeked), Fingerprint(*plain));
  EXPECT_EQ(with.admitted, without.admitted);
  EXPECT_EQ(with.hits, without.hits);
}

// (c) With both slots running, a third request finds no room and changes nothing; once one
// finishes, it is admitted into the freed slot and finds that request's content. The prefill runs
// in the scheduler's chunks: a chunk ending within n_ubatch of the prompt end adds a checkpoint at
// its start (update_slots' rule per batch), and each request's checkpoints carry its own task.
TEST(EnginesLlamacpp, UnderLoadBusySlotsMeanNoRoomUntilOneIsReleased) {
  const int64_t kv = Model().KvBytesPerToken(), st = Model().StateBytesPerCheckpoint();
  auto cache = MakeCache(Set({"parallel=2", "cache_ram_mib=0"}));
  const auto a = Seq(1, 3000), b = Seq(1'000'000, 2000), c = Cat(a, Seq(5'000'000, 100));
  EngineLookup found;
  ASSERT_EQ(cache->Admit(1, a, {}, 3000, 1000, 0, &found), EngineAdmit::kAdmitted);
  const size_t slot_a = cache->last_slot();
  ASSERT_EQ(cache->Admit(2, b, {}, 2000, 0, 0, &found), EngineAdmit::kAdmitted);
  EXPECT_NE(cache->last_slot(), slot_a);
  EXPECT_EQ(cache->running(), 2u);

  const std::vector<int64_t> before = Fingerprint(*cache);
  EXPECT_EQ(cache->Peek(c).reusable_tokens, 0);
  ASSERT_EQ(cache->Admit(3, c, {}, 3100, 0, 0, &found), EngineAdmit::kNoRoom);
  EXPECT_EQ(found.attention_hit_tokens, 0);
  EXPECT_EQ(Fingerprint(*cache), before);

  // A in chunks ending at 1000, 2700 and 3000: batches [2484, 2700) and [2700, 2996) both end
  // within 512 tokens of the end, so 2700 is checkpointed besides 2484 and 2996.
  cache->Computed(1, 1000);
  ASSERT_TRUE(cache->Reserve(1, 2000));
  cache->Computed(1, 2700);
  EXPECT_EQ(cache->Memory().running_kv, 2700 * kv);
  EXPECT_EQ(cache->Memory().running_state, 2 * st);
  cache->Computed(1, 3000);
  EXPECT_EQ(Positions(cache->slots()[slot_a]), std::vector<int64_t>({2484, 2700, 2996}));
  ASSERT_TRUE(cache->Reserve(2, 2000));
  cache->Computed(2, 2000);
  const auto& slot_b = cache->slots()[1 - slot_a];
  ASSERT_FALSE(slot_b.checkpoints.empty());
  EXPECT_LT(cache->slots()[slot_a].checkpoints[0].task, slot_b.checkpoints[0].task);
  cache->Finish(1, 1);
  EXPECT_FALSE(cache->slots()[slot_a].busy);
  EXPECT_EQ(cache->Memory().running_kv, 2000 * kv);
  EXPECT_EQ(cache->Memory().cached_kv, 3000 * kv);

  // C continues A: A's slot, its live state; the reused prefix counts as cached, pinned.
  EXPECT_EQ(cache->Peek(c).reusable_tokens, 3000);
  ASSERT_EQ(cache->Admit(3, c, {}, 3100, 100, 2, &found), EngineAdmit::kAdmitted);
  EXPECT_EQ(cache->last_slot(), slot_a);
  EXPECT_EQ(found.reusable_tokens, 3000);
  cache->Computed(3, 3100);
  const MemoryUse m = cache->Memory();
  EXPECT_EQ(m.running_kv, (2000 + 100) * kv);
  EXPECT_EQ(m.cached_kv, 3000 * kv);
  EXPECT_EQ(m.running_state, 2 * st);
  EXPECT_EQ(m.cached_state, 0);

  // An aborted request releases its slot with what it computed: B's 2000 tokens, then D's first
  // 500 in the other slot stay and are found again.
  cache->Abort(2);
  const auto d = Seq(7'000'000, 1000);
  ASSERT_EQ(cache->Admit(4, d, {}, 1000, 500, 3, &found), EngineAdmit::kAdmitted);
  cache->Computed(4, 500);
  cache->Abort(4);
  cache->Finish(3, 4);
  EXPECT_EQ(cache->running(), 0u);
  EXPECT_EQ(cache->Memory().running_kv + cache->Memory().running_state, 0);
  EXPECT_EQ(cache->Peek(d).reusable_tokens, 500);
  ASSERT_EQ(cache->Admit(5, d, {}, 1000, 0, 5, &found), EngineAdmit::kAdmitted);
  EXPECT_EQ(found.reusable_tokens, 500);
  cache->Finish(5, 6);
}

// A prompt that does not fit a slot's context is refused whether or not a slot is free; a
// request whose output runs past the context keeps running (Reserve always succeeds: the slot's
// context is its own) and its slot keeps n_ctx tokens.
TEST(EnginesLlamacpp, UnderLoadTheContextBoundsASlot) {
  const int64_t kv = Model().KvBytesPerToken(), st = Model().StateBytesPerCheckpoint();
  const int64_t capacity = 2 * (st + 5000 * kv);
  auto cache = MakeCache(Set({"parallel=2", "cache_ram_mib=0"}), capacity);
  const auto big = Seq(1, 5000), fits = Seq(100'000, 4990), out = Seq(200'000, 50);
  EngineLookup found;
  const std::vector<int64_t> before = Fingerprint(*cache);
  EXPECT_EQ(cache->Admit(1, big, {}, 5000, 0, 0, &found), EngineAdmit::kTooLarge);
  EXPECT_EQ(Fingerprint(*cache), before);
  ASSERT_EQ(cache->Admit(2, fits, out, 4990, 4990, 0, &found), EngineAdmit::kAdmitted);
  cache->Computed(2, 4990);
  EXPECT_TRUE(cache->Reserve(2, 49));
  cache->Computed(2, 5039);
  EXPECT_EQ(cache->slots()[cache->last_slot()].tokens.size(), 5000u);
  EXPECT_LE(cache->Memory().total(), capacity);
  EXPECT_EQ(cache->Memory().running_kv, 5000 * kv);
  cache->Finish(2, 1);
  EXPECT_EQ(cache->Memory().total(), 5000 * kv + st);
}

}  // namespace
}  // namespace marconi::sim
