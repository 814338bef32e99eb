// The vLLM v1 emulations (`vllm`: mamba_cache_mode align; `vllm-all`): the hand-worked cases
// 7-13 of docs/engine-sources.md section 6 with the expected hits derived from the documented
// rules, brute-force oracles at unbounded capacity, eviction order and pool bounds, derived sizes
// against a hand computation, --set overrides and bad parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <numeric>
#include <random>
#include <vector>

#include "marconi/prefix_cache.h"
#include "sim/engines/vllm.h"
#include "sim/replay.h"
#include "sim/systems.h"

namespace marconi::sim {
namespace {

using Tokens = std::vector<Token>;
constexpr int64_t kUnbounded = PrefixCacheConfig::kUnlimited;

// A hybrid whose state fits in 16 tokens of one attention layer, so B = K = 16 in align mode:
// attention 2 * 8 * 128 * 2 = 4096 bytes per token; a Gated DeltaNet state of
// (16 * 16 + (2 * 16 + 16) * 3) * 2 = 800 bytes. `recurrent` GDN layers, then one attention
// layer (recurrent first, as in Qwen3-Next), or the attention layer first.
ModelSpec SmallHybrid(int recurrent = 1, bool attention_first = false) {
  std::vector<LayerSpec> layers;
  for (int i = 0; i < recurrent; ++i) layers.push_back(GatedDeltaNetLayer{1, 1, 16, 16, 4});
  layers.insert(attention_first ? layers.begin() : layers.end(), AttentionLayer{8, 8, 128});
  return ModelSpec::Create("small-hybrid", 256, 2, std::move(layers)).value();
}

VllmParams Align() { return VllmParams{}; }
VllmParams All(int64_t chunk = 16) {
  VllmParams p;
  p.mode = VllmMambaCacheMode::kAll;
  p.mamba_chunk_size = chunk;  // lcm(16, 16) = 16: B = 16 as in the hand-worked cases
  return p;
}

VllmCache Make(const VllmParams& p, int recurrent = 1, int64_t capacity = kUnbounded) {
  return VllmCache(DeriveVllmConfig(SmallHybrid(recurrent), capacity, p).value());
}

// Distinct tokens from `base` on, so that requests share exactly what a test says they share.
Tokens Seq(int64_t n, Token base) {
  Tokens t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), base);
  return t;
}
// The first `shared` tokens of `a`, then fresh ones up to `n`.
Tokens Share(const Tokens& a, int64_t shared, int64_t n, Token fresh) {
  Tokens t(a.begin(), a.begin() + shared);
  for (int64_t i = shared; i < n; ++i) t.push_back(fresh + static_cast<Token>(i));
  return t;
}
Tokens Concat(const Tokens& a, const Tokens& b) {
  Tokens t = a;
  t.insert(t.end(), b.begin(), b.end());
  return t;
}

EngineLookup Serve(VllmCache& c, const Tokens& in, const Tokens& out) {
  return c.Serve(in, out, 0);
}

constexpr int64_t kB = 16;
int64_t Floor(int64_t x) { return x / kB * kB; }

TEST(VllmTest, SmallHybridDerivesBlock16) {
  const VllmConfig c = DeriveVllmConfig(SmallHybrid(), kUnbounded, Align()).value();
  EXPECT_EQ(c.block_size, kB);
  EXPECT_EQ(DeriveVllmConfig(SmallHybrid(), kUnbounded, All()).value().block_size, kB);
}

// Case 7: A P=40, G=5. Chunks [0,32) [32,40) (the last cache position floor(40/16)*16 = 32 is a
// mandatory stop); the state at r1 = floor(39/16)*16 = 32 is retained; KV holds the 2 full blocks
// of the 44 committed tokens. B sharing 35 of n=50: a = floor(35/16)*16 = 32, state 32: hit 32.
TEST(VllmTest, Case7StateAtReplayBoundary) {
  VllmCache c = Make(Align());
  const Tokens a_in = Seq(40, 0), a_out = Seq(5, 1000);
  EXPECT_EQ(Serve(c, a_in, a_out).reusable_tokens, 0);
  const int64_t p = 40, r1 = Floor(p - 1);
  EXPECT_EQ(c.last_prefill_steps(),
            (std::vector<std::pair<int64_t, int64_t>>{{0, Floor(p)}, {Floor(p), p}}));
  EXPECT_TRUE(c.StateCached(a_in, r1));
  EXPECT_FALSE(c.StateCached(a_in, 16));
  const Tokens committed = Concat(a_in, Tokens(a_out.begin(), a_out.end() - 1));  // 44
  for (int64_t d = kB; d <= Floor(44); d += kB) EXPECT_TRUE(c.KvBlockCached(committed, d));
  EXPECT_FALSE(c.KvBlockCached(Concat(committed, Seq(4, 5000)), Floor(44) + kB));
  EXPECT_EQ(c.stats().cached_tokens, Floor(44));
  EXPECT_EQ(c.stats().checkpoints, 1);

  const Tokens b = Share(a_in, 35, 50, 9000);
  const EngineLookup hit = Serve(c, b, Seq(3, 7000));
  EXPECT_EQ(hit.attention_hit_tokens, Floor(35));
  EXPECT_EQ(hit.reusable_tokens, r1);
}

// Case 8: A P=100, G=1: state r1 = 96, KV [0,96). B (P=100) shares 50 with A: a = 48, no state
// at or below 48: hit 0 and junction J = 48; B's prefill stops at 48, 96 and 100 and retains 48
// (the junction) and 96 (its r1). C sharing 50: hit 48.
TEST(VllmTest, Case8JunctionStoresBranchState) {
  VllmCache c = Make(Align());
  const Tokens a = Seq(100, 0);
  Serve(c, a, {7});
  EXPECT_TRUE(c.StateCached(a, Floor(99)));
  const Tokens b = Share(a, 50, 100, 10000);
  const EngineLookup hb = Serve(c, b, {8});
  const int64_t j = Floor(50);
  EXPECT_EQ(hb.attention_hit_tokens, j);
  EXPECT_EQ(hb.reusable_tokens, 0);
  EXPECT_EQ(c.last_prefill_steps(),
            (std::vector<std::pair<int64_t, int64_t>>{{0, j}, {j, Floor(100)}, {Floor(100), 100}}));
  EXPECT_TRUE(c.StateCached(b, j));
  EXPECT_TRUE(c.StateCached(b, Floor(99)));
  EXPECT_FALSE(c.StateCached(b, 64));
  const Tokens cc = Share(a, 50, 120, 20000);
  EXPECT_EQ(Serve(c, cc, {9}).reusable_tokens, j);
}

// Case 9 (ambiguity V2): A P=32, G=1, then an identical resend (n=32, cap 31): a = 16; the single
// chunk [0,32) materialised no state at 16 (r1 = floor(31/16)*16 = 16 is not a step end): hit 0.
TEST(VllmTest, Case9AlignedPromptResendMissesUnderAlign) {
  VllmCache c = Make(Align());
  const Tokens a = Seq(32, 0);
  Serve(c, a, {5});
  EXPECT_EQ(c.last_prefill_steps(), (std::vector<std::pair<int64_t, int64_t>>{{0, 32}}));
  const EngineLookup hit = Serve(c, a, {5});
  EXPECT_EQ(hit.attention_hit_tokens, Floor(32 - 1));
  EXPECT_EQ(hit.reusable_tokens, 0);
}

// Case 10: A P=100, G=20; B = A.input + A.output + 10 (n=130). A committed 119 tokens: KV
// floor(119/16)*16 = 112; the only retained state is r1 = 96 (decode boundaries are not kept).
TEST(VllmTest, Case10MultiTurnResumesAtReplayBoundary) {
  VllmCache c = Make(Align());
  const Tokens a_in = Seq(100, 0), a_out = Seq(20, 500);
  Serve(c, a_in, a_out);
  const Tokens b = Concat(Concat(a_in, a_out), Seq(10, 900));
  const EngineLookup hit = Serve(c, b, {1});
  EXPECT_EQ(hit.attention_hit_tokens, std::min(Floor(119), Floor(130 - 1)));
  EXPECT_EQ(hit.reusable_tokens, Floor(99));
}

// Case 11 (all, B=16): A P=40, G=5 stores states at 16 and 32 (44 committed). B sharing 35 gets
// 32; B sharing 20 gets 16, where align gets 0 (no state at 16).
TEST(VllmTest, Case11AllModeStatesAtEveryBoundary) {
  VllmCache all = Make(All());
  VllmCache align = Make(Align());
  const Tokens a_in = Seq(40, 0), a_out = Seq(5, 100);
  Serve(all, a_in, a_out);
  Serve(align, a_in, a_out);
  EXPECT_TRUE(all.StateCached(a_in, 16));
  EXPECT_TRUE(all.StateCached(a_in, 32));
  EXPECT_EQ(Serve(all, Share(a_in, 35, 50, 3000), {1}).reusable_tokens, Floor(35));
  EXPECT_EQ(Serve(all, Share(a_in, 20, 50, 4000), {1}).reusable_tokens, Floor(20));
  EXPECT_EQ(Serve(align, Share(a_in, 20, 50, 4000), {1}).reusable_tokens, 0);
}

// Case 12: case 9 under all: the state at 16 exists, hit 16.
TEST(VllmTest, Case12AllModeResend) {
  VllmCache c = Make(All());
  const Tokens a = Seq(32, 0);
  Serve(c, a, {5});
  EXPECT_EQ(Serve(c, a, {5}).reusable_tokens, Floor(32 - 1));
}

// Case 13: with gA = 1 and gM = 3 (1 attention + 3 GDN layers: group size 1), A (P=40, G=5)
// leaves 2 KV blocks and, under all, 2 states of 3 blocks (8 blocks); under align 1 state (5).
TEST(VllmTest, Case13StateCostsOneBlockPerRecurrentGroup) {
  using Kind = VllmBlockPool::Kind;
  const VllmConfig cfg = DeriveVllmConfig(SmallHybrid(3), kUnbounded, Align()).value();
  ASSERT_EQ(cfg.attention_groups, 1);
  ASSERT_EQ(cfg.recurrent_groups, 3);
  const Tokens a_in = Seq(40, 0), a_out = Seq(5, 100);
  const int64_t kv_blocks = Floor(44) / kB;
  VllmCache all = Make(All(), 3);
  Serve(all, a_in, a_out);
  EXPECT_EQ(all.pool().hashed_blocks(Kind::kAttention), kv_blocks);
  EXPECT_EQ(all.pool().hashed_blocks(Kind::kState), 2 * cfg.recurrent_groups);
  VllmCache align = Make(Align(), 3);
  Serve(align, a_in, a_out);
  EXPECT_EQ(align.pool().hashed_blocks(Kind::kAttention) + align.pool().hashed_blocks(Kind::kState),
            kv_blocks + 1 * cfg.recurrent_groups);
  EXPECT_EQ(align.stats().checkpoints, 1);
  EXPECT_EQ(align.stats().state_bytes, 3 * cfg.block_bytes());
}

// Retention > 0 keeps a state every R tokens where a step ends there; with a 32-token budget the
// prompt's chunks end at 32, 64, 96.
TEST(VllmTest, RetentionIntervalKeepsPeriodicStates) {
  VllmParams p = Align();
  p.max_num_batched_tokens = 32;
  const Tokens a = Seq(100, 0);
  VllmCache dense = Make([&] {
    VllmParams q = p;
    q.retention_interval = 32;
    return q;
  }());
  VllmCache sparse = Make(p);
  Serve(dense, a, {1});
  Serve(sparse, a, {1});
  EXPECT_EQ(sparse.last_prefill_steps(),
            (std::vector<std::pair<int64_t, int64_t>>{{0, 32}, {32, 64}, {64, 96}, {96, 100}}));
  for (int64_t pos : {32, 64}) {
    EXPECT_TRUE(dense.StateCached(a, pos));
    EXPECT_FALSE(sparse.StateCached(a, pos));
  }
  EXPECT_TRUE(dense.StateCached(a, 96));
  EXPECT_TRUE(sparse.StateCached(a, 96));
  EXPECT_FALSE(dense.StateCached(a, 48));
}

// A token budget below B: a chunk that cannot reach a block boundary advances sub-block, and
// the next one stops at the boundary (the mandatory stop of a chunk starting mid-block), so
// states still materialise at 16 and 32 (_mamba_block_aligned_split).
TEST(VllmTest, BudgetBelowBlockAdvancesSubBlock) {
  VllmParams p = Align();
  p.max_num_batched_tokens = 10;
  VllmCache c = Make(p);
  const Tokens a = Seq(40, 0);
  Serve(c, a, {1});
  EXPECT_EQ(c.last_prefill_steps(), (std::vector<std::pair<int64_t, int64_t>>{
                                        {0, 10}, {10, 16}, {16, 26}, {26, 32}, {32, 40}}));
  EXPECT_TRUE(c.StateCached(a, Floor(39)));  // r1, a step end
  EXPECT_FALSE(c.StateCached(a, 16));        // a step end, but not reachable
}

// --- brute-force oracles at unbounded capacity ------------------------------------------------

struct Request {
  Tokens input, output;
};

// A few system prompts, sessions whose turns extend the previous turn's input + output, and
// one-off requests that branch off a prefix.
std::vector<Request> RandomTrace(uint32_t seed, int requests) {
  std::mt19937 rng(seed);
  auto len = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto fresh = [&](int n) {
    Tokens t(static_cast<size_t>(n));
    for (Token& x : t) x = std::uniform_int_distribution<Token>(0, 50)(rng);
    return t;
  };
  std::vector<Tokens> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(fresh(len(0, 120)));
  std::vector<Tokens> sessions;
  std::vector<Request> out;
  while (static_cast<int>(out.size()) < requests) {
    Request r;
    const int kind = len(0, 9);
    if (kind < 5 && !sessions.empty()) {  // next turn of a session
      const size_t s = static_cast<size_t>(len(0, static_cast<int>(sessions.size()) - 1));
      r.input = Concat(sessions[s], fresh(len(1, 60)));
    } else if (kind < 8) {  // a new session on a system prompt
      r.input = Concat(prompts[static_cast<size_t>(len(0, 3))], fresh(len(1, 80)));
    } else if (!out.empty()) {  // a branch of an earlier request's input
      const Tokens& o = out[static_cast<size_t>(len(0, static_cast<int>(out.size()) - 1))].input;
      r.input = Concat(Tokens(o.begin(), o.begin() + len(0, static_cast<int>(o.size()))),
                       fresh(len(1, 40)));
    } else {
      r.input = fresh(len(1, 100));
    }
    r.output = fresh(len(1, 40));
    if (kind < 8) {
      const Tokens next = Concat(r.input, r.output);
      if (kind < 5 && !sessions.empty()) {
        sessions[static_cast<size_t>(len(0, static_cast<int>(sessions.size()) - 1))] = next;
      } else {
        sessions.push_back(next);
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

int64_t Lcp(const Tokens& a, const Tokens& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return static_cast<int64_t>(i);
}

Tokens Committed(const Request& r) {
  return Concat(r.input, Tokens(r.output.begin(), r.output.end() - 1));
}

// vllm-all: hit = floor(min(L, n - 1) / B) * B, L = the longest common prefix with any earlier
// request's committed tokens (input + output minus the last sampled token).
TEST(VllmTest, AllModeMatchesBruteForceOracle) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::cout << "vllm-all oracle seed " << seed << "\n";
    const std::vector<Request> trace = RandomTrace(seed, 300);
    VllmCache c = Make(All());
    int64_t hits = 0;
    for (size_t i = 0; i < trace.size(); ++i) {
      const int64_t n = static_cast<int64_t>(trace[i].input.size());
      int64_t l = 0;
      for (size_t j = 0; j < i; ++j) l = std::max(l, Lcp(trace[i].input, Committed(trace[j])));
      const int64_t expected = Floor(std::min(l, n - 1));
      const EngineLookup got = Serve(c, trace[i].input, trace[i].output);
      ASSERT_EQ(got.reusable_tokens, expected) << "request " << i;
      ASSERT_EQ(got.attention_hit_tokens, expected) << "request " << i;
      hits += expected > 0;
    }
    EXPECT_GT(hits, 50);  // the trace does exercise hits
  }
}

// vllm (align, retention 0), prompts below the chunk budget: the brute force keeps, for every
// earlier request, its committed KV (every full block) and the states it retained, derived from
// the documented rule: the junction J = a when a > m, and the replay boundary r1 = floor((P-1)/B)
// * B when a step ends there, i.e. when P is not block-aligned (last_cache_position) and r1 > m.
// The hit is the deepest retained state on the B grid <= the attention hit a <= n - 1.
TEST(VllmTest, AlignModeMatchesBruteForceOracle) {
  for (uint32_t seed : {4u, 5u, 6u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::cout << "vllm oracle seed " << seed << "\n";
    const std::vector<Request> trace = RandomTrace(seed, 300);
    VllmCache c = Make(Align());
    std::vector<std::vector<int64_t>> retained(trace.size());
    int64_t hits = 0, lost = 0;
    for (size_t i = 0; i < trace.size(); ++i) {
      const Tokens& in = trace[i].input;
      const int64_t n = static_cast<int64_t>(in.size());
      int64_t a = 0, m = 0;
      for (size_t j = 0; j < i; ++j) {
        const Tokens cj = Committed(trace[j]);
        const int64_t l = Lcp(in, cj);
        a = std::max(a, Floor(std::min({l, n - 1, Floor(static_cast<int64_t>(cj.size()))})));
      }
      // The deepest retained state on the matched path, not beyond the attention hit.
      int64_t best = 0;
      for (size_t j = 0; j < i; ++j) {
        const int64_t l = Lcp(in, Committed(trace[j]));
        for (int64_t pos : retained[j]) {
          if (pos <= l && pos <= a) best = std::max(best, pos);
        }
      }
      m = best;
      const EngineLookup got = Serve(c, in, trace[i].output);
      ASSERT_EQ(got.attention_hit_tokens, a) << "request " << i;
      ASSERT_EQ(got.reusable_tokens, m) << "request " << i;
      ASSERT_EQ(got.reusable_tokens % kB, 0);
      ASSERT_LE(got.reusable_tokens, n - 1);
      const int64_t r1 = Floor(n - 1);
      if (a > m) retained[i].push_back(a);
      if (n % kB != 0 && r1 > m) retained[i].push_back(r1);
      hits += m > 0;
      lost += a - m;
    }
    EXPECT_GT(hits, 30);
    EXPECT_GT(lost, 0);  // some attention hits lack a state: the junction rule is exercised
  }
}

// --- eviction -----------------------------------------------------------------------------------

// A pool of exactly `usable` blocks (plus the null block).
VllmCache Bounded(const VllmParams& p, int64_t usable, bool attention_first = false,
                  int recurrent = 1) {
  const ModelSpec model = SmallHybrid(recurrent, attention_first);
  const VllmConfig unb = DeriveVllmConfig(model, kUnbounded, p).value();
  return VllmCache(DeriveVllmConfig(model, unb.block_bytes() * (usable + 1), p).value());
}

// Blocks that were never hashed are handed out before any cached block is evicted.
TEST(VllmTest, NeverCachedBlocksGoFirst) {
  VllmCache c = Bounded(Align(), 12);
  const Tokens a = Seq(40, 0);
  Serve(c, a, Seq(5, 100));  // caches 2 KV blocks + 1 state: 3 hashed, 9 never-hashed free
  ASSERT_EQ(c.pool().free_blocks(), 12);
  // An unrelated request (P=100, G=1) holding 9 blocks at its peak (7 KV + the state slots of
  // 96 and 100): exactly the 9 never-hashed blocks.
  Serve(c, Seq(100, 5000), {1});
  EXPECT_EQ(c.stats().evictions, 0);
  EXPECT_EQ(Serve(c, Share(a, 35, 50, 9000), {1}).reusable_tokens, 32);
}

// Under pressure the LRU head goes first: a request's state blocks were freed before its KV, and
// its KV tail first, so the state goes, then the deepest KV block.
TEST(VllmTest, EvictionFollowsFreeQueueOrder) {
  VllmCache c = Bounded(Align(), 6);
  const Tokens a = Seq(40, 0);
  Serve(c, a, Seq(5, 100));  // hashed: state 32, KV 16, KV 32; 3 never-hashed free
  ASSERT_EQ(c.pool().HashedFreeOrder().size(), 3u);
  // An unrelated P=40 request holds 5 blocks at its peak (3 KV + 2 state slots): two evictions,
  // A's state first (its block was released as A's decode passed 32, before A's KV was freed at
  // finish), then A's deepest KV block; the shallow one stays.
  Serve(c, Seq(40, 7000), {1});
  EXPECT_EQ(c.stats().evictions, 2);
  EXPECT_EQ(c.stats().evicted_checkpoints, 1);
  EXPECT_EQ(c.stats().evicted_tokens, kB);
  EXPECT_FALSE(c.StateCached(a, 32));
  EXPECT_FALSE(c.KvBlockCached(a, 32));
  EXPECT_TRUE(c.KvBlockCached(a, 16));
  EXPECT_LE(c.pool().used_blocks(), c.pool().usable_blocks());
}

// At finish a request frees group by group in the model's layer order. A (P=40, G=1) still holds
// its retained state at 32 at finish (no decode step released it): with the recurrent layers
// first the state is freed (and evicted) before the KV, with the attention layer first after it.
TEST(VllmTest, GroupOrderFollowsLayerOrder) {
  for (bool attention_first : {false, true}) {
    SCOPED_TRACE(attention_first ? "attention first" : "recurrent first");
    VllmCache c = Bounded(Align(), 6, attention_first);
    const Tokens a = Seq(40, 0);
    Serve(c, a, {1});
    Serve(c, Seq(40, 7000), {1});  // holds 5 blocks at its peak: 2 evictions
    EXPECT_EQ(c.stats().evictions, 2);
    EXPECT_EQ(c.StateCached(a, 32), attention_first);
    EXPECT_FALSE(c.KvBlockCached(a, 32));                 // the deepest KV goes either way
    EXPECT_EQ(c.KvBlockCached(a, 16), !attention_first);  // then the shallow one
  }
}

// vllm-marconi: when the free queue's head is a state block, the state block evicted is the one
// of lowest recency + alpha * FLOPs-per-byte (both min-max normalised). A's state at 96 is older
// than B's at 16 but saves far more FLOPs per byte: S(96) = 0 + alpha, S(16) = 1 + 0, so alpha 2
// evicts B's state where vLLM's LRU (and alpha 0) evicts A's.
TEST(VllmTest, MarconiVariantEvictsTheLeastUsefulState) {
  for (double alpha : {-1.0, 0.0, 2.0}) {
    SCOPED_TRACE("alpha " + std::to_string(alpha));
    VllmParams p = Align();
    p.marconi_alpha = alpha;
    VllmCache c = Bounded(p, 12);
    const Tokens a = Seq(100, 0), b = Seq(20, 1000);
    Serve(c, a, {1});              // KV [0,96) and the state at 96
    Serve(c, b, {1});              // KV [0,16) and the state at 16
    Serve(c, Seq(20, 5000), {1});  // holds 4 blocks at its peak: one eviction
    ASSERT_EQ(c.stats().evictions, 1);
    EXPECT_EQ(c.StateCached(a, 96), alpha > 1);
    EXPECT_EQ(c.StateCached(b, 16), alpha <= 1);
  }
}

// No leaf rule: losing a mid-path KV block cuts every deeper hit, though the deeper blocks and the
// state stay cached (the chain-hash match stops at the first miss).
TEST(VllmTest, MidPathEvictionCutsDeeperHits) {
  VllmCache c = Make(Align());
  const Tokens a = Seq(100, 0);
  Serve(c, a, {1});
  const Tokens b = Concat(a, Seq(50, 3000));
  ASSERT_TRUE(c.EvictKvBlock(a, 32));
  EXPECT_TRUE(c.KvBlockCached(a, 48));
  EXPECT_TRUE(c.StateCached(a, 96));
  const EngineLookup hit = Serve(c, b, {1});
  EXPECT_EQ(hit.attention_hit_tokens, 16);
  EXPECT_EQ(hit.reusable_tokens, 0);
}

// The pool never holds more than its blocks, the bytes never exceed the capacity, and a request
// too large for the pool is served uncached instead of crashing.
TEST(VllmTest, BoundedPoolNeverOverflows) {
  for (const VllmParams& p : {Align(), All()}) {
    for (int recurrent : {1, 3}) {  // 3: a state costs 3 blocks, evicted one by one
      for (int64_t usable : {4, 9, 30, 200}) {
        SCOPED_TRACE("usable " + std::to_string(usable) + ", recurrent layers " +
                     std::to_string(recurrent));
        VllmCache c = Bounded(p, usable, false, recurrent);
        const int64_t capacity = c.config().block_bytes() * c.config().num_blocks;
        int64_t hits = 0;
        for (const Request& r : RandomTrace(7, 400)) {
          const EngineLookup got = Serve(c, r.input, r.output);
          hits += got.reusable_tokens;
          ASSERT_LE(got.reusable_tokens, got.attention_hit_tokens);
          ASSERT_EQ(got.reusable_tokens % kB, 0);
          ASSERT_EQ(c.pool().held_blocks(), 0);
          ASSERT_LE(c.pool().created(), usable);
          ASSERT_EQ(c.pool().used_blocks(),
                    c.pool().hashed_blocks(VllmBlockPool::Kind::kAttention) +
                        c.pool().hashed_blocks(VllmBlockPool::Kind::kState));
          ASSERT_LE(c.stats().kv_bytes + c.stats().state_bytes, capacity);
        }
        EXPECT_LE(c.peak_used_blocks(), usable);
        EXPECT_LE(c.stats().peak_bytes, capacity);
        if (usable >= 30) {
          EXPECT_GT(hits, 0);
        }
      }
    }
  }
}

// --- the request protocol under load ----------------------------------------------------------

// What "nothing changed" compares: the content counters, the pool's counts and its free queue.
struct Snapshot {
  std::vector<int64_t> counters;
  std::vector<int32_t> queue;
  bool operator==(const Snapshot&) const = default;
};
Snapshot Snap(const VllmCache& c) {
  const CacheStats& s = c.stats();
  const MemoryUse m = c.Memory();
  return {{s.cached_tokens, s.checkpoints, s.kv_bytes, s.state_bytes, s.peak_bytes, s.inserts,
           s.checkpoints_admitted, s.evictions, s.evicted_tokens, s.evicted_checkpoints,
           m.running_kv, m.running_state, m.cached_kv, m.cached_state, c.pool().free_blocks(),
           c.pool().used_blocks(), c.pool().held_blocks(), c.pool().created()},
          c.pool().HashedFreeOrder()};
}

// The pool and byte invariants after every call.
void CheckInvariants(const VllmCache& c, int64_t capacity, const std::string& where) {
  const MemoryUse m = c.Memory();
  ASSERT_LE(m.total(), capacity) << where;
  ASSERT_EQ(m.total(), c.pool().used_blocks() * c.config().block_bytes()) << where;
  ASSERT_LE(c.pool().used_blocks(), c.pool().usable_blocks()) << where;
  ASSERT_LE(c.pool().created(), c.pool().usable_blocks()) << where;
  ASSERT_GE(m.running_kv, 0) << where;
  ASSERT_GE(m.running_state, 0) << where;
}

// Several requests admitted, reserved and computed in random chunks, finished or aborted in
// random order over a bounded pool: the invariants hold after every call, a running request's
// hit stays found while it holds it, refusals change nothing, and nothing stays running at the
// end.
TEST(VllmTest, RandomInterleavingKeepsThePoolConsistent) {
  struct Flight {
    EngineCache::RequestId id;
    size_t request;
    int64_t pos, committed, reserved;
    EngineLookup found;
  };
  const uint32_t seed = 20261124;
  std::cout << "interleaving seed " << seed << "\n";
  int64_t admitted = 0, no_room = 0, too_large = 0, refused_reserve = 0, aborted = 0, hits = 0;
  for (const VllmParams& base : {Align(), All()}) {
    for (const bool marconi : {false, true}) {
      if (marconi && base.mode == VllmMambaCacheMode::kAll) continue;
      for (const int recurrent : {1, 3}) {
        for (const int64_t usable : {24, 60}) {
          VllmParams p = base;
          if (marconi) p.marconi_alpha = 1.0;
          p.max_num_batched_tokens = 48;
          const std::string where =
              std::string(base.mode == VllmMambaCacheMode::kAll ? "all" : "align") +
              (marconi ? " marconi" : "") + ", recurrent " + std::to_string(recurrent) +
              ", usable " + std::to_string(usable);
          SCOPED_TRACE(where);
          VllmCache c = Bounded(p, usable, false, recurrent);
          const int64_t capacity = c.config().block_bytes() * c.config().num_blocks;
          std::mt19937 rng(seed + static_cast<uint32_t>(usable * 10 + recurrent));
          auto pick = [&](int64_t lo, int64_t hi) {
            return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
          };
          const std::vector<Request> trace = RandomTrace(seed, 160);
          std::vector<Flight> running;
          size_t next = 0;
          EngineCache::RequestId next_id = 1;
          int steps = 0;
          while ((next < trace.size() || !running.empty()) && ++steps < 20000) {
            const int64_t action = pick(0, 9);
            if (next < trace.size() && (running.empty() || (action < 3 && running.size() < 5))) {
              const Request& r = trace[next];
              const int64_t n = static_cast<int64_t>(r.input.size());
              const EngineLookup peek = c.Peek(r.input);
              const int64_t reserve = pick(0, n - peek.reusable_tokens);
              const Snapshot before = Snap(c);
              EngineLookup found;
              const EngineAdmit got = c.Admit(next_id, r.input, r.output, n, reserve, 0, &found);
              ASSERT_EQ(found.reusable_tokens, peek.reusable_tokens);
              ASSERT_EQ(found.attention_hit_tokens, peek.attention_hit_tokens);
              if (got != EngineAdmit::kAdmitted) {
                ASSERT_TRUE(before == Snap(c)) << "a refused Admit changed the cache";
                if (got == EngineAdmit::kTooLarge) {
                  ++too_large;
                  ++next;
                } else {
                  ++no_room;
                  ASSERT_FALSE(running.empty()) << "an empty pool refused a request that fits";
                }
                continue;
              }
              ++admitted;
              hits += found.reusable_tokens > 0;
              const int64_t committed =
                  n + std::max<int64_t>(static_cast<int64_t>(r.output.size()), 1) - 1;
              running.push_back({next_id++, next++, found.reusable_tokens, committed,
                                 found.reusable_tokens + reserve, found});
            } else if (!running.empty()) {
              const size_t i =
                  static_cast<size_t>(pick(0, static_cast<int64_t>(running.size()) - 1));
              Flight& f = running[i];
              if (f.pos == f.committed || action == 9) {
                if (f.pos == f.committed) {
                  c.Finish(f.id, 0);
                } else {
                  c.Abort(f.id);
                  ++aborted;
                  --next;  // retried later (the trace's order is only a source of requests)
                }
                running.erase(running.begin() + static_cast<ptrdiff_t>(i));
              } else {
                const int64_t end = std::min(f.committed, f.pos + pick(1, 40));
                if (end > f.reserved) {
                  const Snapshot before = Snap(c);
                  if (!c.Reserve(f.id, end - f.reserved)) {
                    ++refused_reserve;
                    ASSERT_TRUE(before == Snap(c)) << "a refused Reserve changed the cache";
                    // Preempt another request (or this one, alone) as a scheduler would.
                    const size_t v = running.size() > 1 ? (i + 1) % running.size() : i;
                    c.Abort(running[v].id);
                    ++aborted;
                    running.erase(running.begin() + static_cast<ptrdiff_t>(v));
                    continue;
                  }
                  f.reserved = end;
                }
                c.Computed(f.id, end);
                f.pos = end;
              }
            }
            CheckInvariants(c, capacity, where);
            // The hit's KV blocks are held until the request ends; its state block until the
            // request's first step past it (remove_skipped_blocks releases it, evictable).
            for (const Flight& f : running) {
              const EngineLookup now = c.Peek(trace[f.request].input);
              ASSERT_GE(now.attention_hit_tokens, f.found.reusable_tokens);
              if (f.pos == f.found.reusable_tokens) {
                ASSERT_GE(now.reusable_tokens, f.found.reusable_tokens);
              }
            }
          }
          ASSERT_TRUE(running.empty()) << "the interleaving did not drain";
          EXPECT_EQ(c.Memory().running_kv, 0);
          EXPECT_EQ(c.Memory().running_state, 0);
          EXPECT_EQ(c.pool().held_blocks(), 0);
        }
      }
    }
  }
  std::cout << "admitted " << admitted << ", no room " << no_room << ", too large " << too_large
            << ", refused reserves " << refused_reserve << ", aborted " << aborted << ", hits "
            << hits << "\n";
  EXPECT_GT(no_room, 0);
  EXPECT_GT(refused_reserve, 0);
  EXPECT_GT(hits, 0);
}

// Peek is Admit's lookup and changes nothing: a twin fed the same requests without Peek calls
// ends identical, the Marconi variant's clock included.
TEST(VllmTest, PeekIsAdmitsLookupAndChangesNothing) {
  for (const double alpha : {-1.0, 1.0}) {
    VllmParams p = Align();
    p.marconi_alpha = alpha;
    VllmCache peeked = Bounded(p, 30), plain = Bounded(p, 30);
    const std::vector<Request> trace = RandomTrace(12, 200);
    for (size_t i = 0; i < trace.size(); ++i) {
      const EngineLookup before = peeked.Peek(trace[i].input);
      const EngineLookup got = Serve(peeked, trace[i].input, trace[i].output);
      ASSERT_EQ(before.reusable_tokens, got.reusable_tokens) << "request " << i;
      ASSERT_EQ(before.attention_hit_tokens, got.attention_hit_tokens) << "request " << i;
      const EngineLookup twin = Serve(plain, trace[i].input, trace[i].output);
      ASSERT_EQ(twin.reusable_tokens, got.reusable_tokens) << "request " << i;
    }
    EXPECT_TRUE(Snap(peeked) == Snap(plain));
    EXPECT_GT(peeked.stats().evictions, 0);
  }
}

// Requests that reserve their whole prefill fill the pool: the next Admit finds no room and
// changes nothing; once the running ones finish it is admitted.
TEST(VllmTest, FullPoolRefusesUntilRequestsFinish) {
  VllmCache c = Bounded(Align(), 20);
  std::vector<Tokens> inputs;
  for (int i = 0; i < 4; ++i) inputs.push_back(Seq(100, 1000 * (i + 1)));
  const Tokens out = {1};
  EngineLookup found;
  // Each holds 7 KV blocks and one state slot for its whole prefill: two fit in 20 blocks.
  ASSERT_EQ(c.Admit(1, inputs[0], out, 100, 100, 0, &found), EngineAdmit::kAdmitted);
  ASSERT_EQ(c.Admit(2, inputs[1], out, 100, 100, 0, &found), EngineAdmit::kAdmitted);
  const Snapshot before = Snap(c);
  EXPECT_EQ(c.Admit(3, inputs[2], out, 100, 100, 0, &found), EngineAdmit::kNoRoom);
  EXPECT_TRUE(before == Snap(c));
  // Admitted without KV, it cannot reserve it.
  ASSERT_EQ(c.Admit(3, inputs[2], out, 100, 0, 0, &found), EngineAdmit::kAdmitted);
  EXPECT_FALSE(c.Reserve(3, 100));
  c.Abort(3);
  // A request larger than the whole pool is refused for good.
  EXPECT_EQ(c.Admit(4, Seq(400, 90000), out, 400, 0, 0, &found), EngineAdmit::kTooLarge);
  for (const EngineCache::RequestId id : {1, 2}) {
    c.Computed(id, 100);
    EXPECT_GT(c.Memory().running_kv, 0);
    c.Finish(id, 0);
  }
  EXPECT_EQ(c.Memory().running_kv + c.Memory().running_state, 0);
  EXPECT_EQ(c.Admit(3, inputs[2], out, 100, 100, 0, &found), EngineAdmit::kAdmitted);
  EXPECT_GT(c.stats().cached_tokens, 0);
}

// --- derived sizes, registry, bad input ---------------------------------------------------------

// qwen3-next-80b-a3b: 12 attention layers (2 KV heads of 256, bf16) and 36 Gated DeltaNet layers
// (16 key heads, 32 value heads of 128, conv 4).
TEST(VllmTest, DerivedSizesMatchHandComputation) {
  const ModelSpec model = ModelSpec::Preset("qwen3-next-80b-a3b").value();
  const int64_t attn_1tok = 2 * 2 * 256 * 2;
  const int64_t mamba_page = (32 * 128 * 128 + (2 * 16 * 128 + 32 * 128) * 3) * 2;
  const int64_t k = 16;
  const int64_t b_align = k * ((mamba_page + k * attn_1tok - 1) / (k * attn_1tok));
  const int64_t chunk = std::lcm<int64_t>(64, k);
  const int64_t b_all = chunk * (((mamba_page + attn_1tok - 1) / attn_1tok + chunk - 1) / chunk);
  const int64_t gs = 12;  // min(12, 36); 36 >= 1.5 * 12
  const int64_t capacity = 10'000'000'000;

  const VllmConfig al = DeriveVllmConfig(model, capacity, Align()).value();
  EXPECT_EQ(al.block_size, b_align);
  EXPECT_EQ(al.group_size, gs);
  EXPECT_EQ(al.attention_groups, 1);
  EXPECT_EQ(al.recurrent_groups, 3);
  EXPECT_EQ(al.page_bytes, b_align * attn_1tok);
  EXPECT_EQ(al.num_blocks, capacity / (b_align * attn_1tok * gs));
  VllmParams all;
  all.mode = VllmMambaCacheMode::kAll;
  const VllmConfig a2 = DeriveVllmConfig(model, capacity, all).value();
  EXPECT_EQ(a2.mamba_chunk_size, 64);  // GatedDeltaNet
  EXPECT_EQ(a2.block_size, b_all);

  const VllmCache cache(al);
  const auto d = cache.DerivedSizes();
  EXPECT_EQ(d.at("block_size"), static_cast<double>(b_align));
  EXPECT_EQ(d.at("state_cost_blocks"), 3.0);
  EXPECT_EQ(d.at("num_blocks"), static_cast<double>(al.num_blocks));
  EXPECT_EQ(d.at("group_size"), static_cast<double>(gs));

  // A Mamba2 model without a chunk size defaults to 256.
  EXPECT_EQ(DeriveVllmConfig(ModelSpec::Preset("nemotron-h-8b").value(), capacity, all)
                .value()
                .mamba_chunk_size,
            256);
}

Result<std::unique_ptr<EngineCache>> FromRegistry(SystemKind kind, const ModelSpec& model,
                                                  int64_t capacity,
                                                  const SystemOverrides& overrides) {
  EngineContext ctx;
  ctx.model = &model;
  ctx.capacity_bytes = capacity;
  ctx.param = [&](std::string_view name) { return Param(kind, name, overrides); };
  return SpecOf(kind).engine(ctx);
}

TEST(VllmTest, SetOverridesTakeEffect) {
  const ModelSpec model = ModelSpec::Preset("qwen3-next-80b-a3b").value();
  SystemOverrides o;
  ASSERT_TRUE(ParseSet("vllm.block_size=1088", &o).ok());
  ASSERT_TRUE(ParseSet("vllm-all.mamba_chunk_size=128", &o).ok());
  auto v = FromRegistry(SystemKind::kVllm, model, kUnbounded, o);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ((*v)->DerivedSizes().at("block_size"), 1088.0);  // 1088 tokens hold a state
  auto w = FromRegistry(SystemKind::kVllmAll, model, kUnbounded, o);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->DerivedSizes().at("mamba_chunk_size"), 128.0);
  EXPECT_EQ((*w)->DerivedSizes().at("block_size"), 640.0);  // 128 * cdiv(536, 128)
  // A retention interval that is a multiple of B is accepted.
  ASSERT_TRUE(ParseSet("vllm.retention_interval=2176", &o).ok());
  EXPECT_TRUE(FromRegistry(SystemKind::kVllm, model, kUnbounded, o).ok());
}

TEST(VllmTest, BadParametersAreInvalidArgument) {
  const ModelSpec model = ModelSpec::Preset("qwen3-next-80b-a3b").value();
  // Capacity below the null block plus one block.
  auto small = FromRegistry(SystemKind::kVllm, model, 20'000'000, {});
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("null block"), std::string::npos);
  // Retention not a multiple of B.
  SystemOverrides o;
  ASSERT_TRUE(ParseSet("vllm.retention_interval=100", &o).ok());
  auto r = FromRegistry(SystemKind::kVllm, model, kUnbounded, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(ParseSet("vllm-marconi.alpha=-2", &o).ok());
  // Out of range values are refused by --set itself.
  EXPECT_FALSE(ParseSet("vllm.max_num_batched_tokens=0", &o).ok());
  EXPECT_FALSE(ParseSet("vllm.block_size=-16", &o).ok());
  // A model with nothing to cache.
  const ModelSpec mlp = ModelSpec::Create("mlp", 64, 2, {MlpLayer{128, true}}).value();
  EXPECT_EQ(FromRegistry(SystemKind::kVllmAll, mlp, kUnbounded, {}).status().code(),
            StatusCode::kInvalidArgument);
}

// The registry rows replay a trace end to end.
TEST(VllmTest, RunsThroughTheRegistry) {
  Trace trace;
  for (const Request& r : RandomTrace(11, 50)) {
    TraceRequest t;
    t.input = r.input;
    t.output = r.output;
    trace.requests.push_back(std::move(t));
  }
  SimConfig config;
  config.model = SmallHybrid();
  for (SystemKind kind : {SystemKind::kVllm, SystemKind::kVllmAll, SystemKind::kVllmMarconi}) {
    auto r = RunSystem(trace, kind, config);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->stats.requests, 50);
    EXPECT_GT(r->stats.hit_tokens, 0);
    // all: lcm(64, 16) for a GatedDeltaNet model
    EXPECT_EQ(r->derived.at("block_size"), kind == SystemKind::kVllmAll ? 64.0 : 16.0);
  }
}

}  // namespace
}  // namespace marconi::sim
