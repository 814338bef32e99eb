// The SGLang emulations (sglang, sglang-nobuffer, sglang-lazy, sglang-marconi): the hand-worked
// cases of docs/engine-sources.md §6 (1-6), brute-force oracles at unbounded capacity, eviction
// order, the capacity invariant, derived sizes and bad parameters.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "marconi/prefix_cache.h"
#include "sim/engines/sglang.h"
#include "sim/replay.h"
#include "sim/systems.h"

namespace marconi::sim {
namespace {

constexpr int64_t kUnlimited = PrefixCacheConfig::kUnlimited;
using Tokens = std::vector<Token>;

const ModelSpec& Model() {
  static const ModelSpec m = ModelSpec::Preset("paper-7b").value();
  return m;
}

// Fresh tokens: every call returns tokens no earlier call returned.
Tokens Fresh(int64_t len) {
  static Token next = 1;
  Tokens t(static_cast<size_t>(len));
  for (Token& x : t) x = next++;
  return t;
}
Tokens Cat(const Tokens& a, const Tokens& b) {
  Tokens out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}
Tokens Prefix(const Tokens& a, int64_t len) {
  return Tokens(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(len));
}

// C = 64 and T = 256, as in §6; no chunking unless a test sets it.
SglangConfig Config(SglangStrategy strategy) {
  SglangConfig c;
  c.strategy = strategy;
  c.chunk_size = 64;
  c.track_interval = 256;
  return c;
}

std::unique_ptr<SglangCache> Make(const SglangConfig& c, int64_t capacity = kUnlimited) {
  auto cache = SglangCache::Create(Model(), capacity, c);
  EXPECT_TRUE(cache.ok()) << cache.status().ToString();
  return std::move(cache).value();
}

struct Req {
  Tokens input, output;
  Tokens Committed() const {  // input + output minus the last sampled token
    Tokens s = input;
    if (output.size() > 1) s.insert(s.end(), output.begin(), output.end() - 1);
    return s;
  }
};

EngineLookup Serve(SglangCache& c, const Req& r) { return c.Serve(r.input, r.output, 0); }

// ------------------------------------------------------------------------------------------
// Hand-worked cases (docs/engine-sources.md §6).

TEST(SglangEngine, Case1PrefillTrackAndMultiTurnHit) {
  auto c = Make(Config(SglangStrategy::kExtraBuffer));
  const int64_t C = c->chunk_size();
  const Req a{Fresh(1000), Fresh(10)};
  EXPECT_EQ(Serve(*c, a).reusable_tokens, 0);
  const int64_t track = 1000 / C * C;  // no multiple of 256 in (1000, 1009]
  ASSERT_EQ(track, 960);
  EXPECT_EQ(c->tree().StateDepths(a.Committed()), std::vector<int64_t>{track});
  EXPECT_EQ(c->stats().cached_tokens, track);  // KV past the last track is freed
  const Req b{Cat(Cat(a.input, a.output), Fresh(50)), Fresh(5)};
  const EngineLookup found = Serve(*c, b);
  EXPECT_EQ(found.reusable_tokens, track);
  EXPECT_EQ(found.attention_hit_tokens, track);
}

TEST(SglangEngine, Case2BranchPointOverridesTheExtendTrack) {
  auto c = Make(Config(SglangStrategy::kExtraBuffer));
  const int64_t C = c->chunk_size();
  const Req a{Fresh(1000), Fresh(10)};
  Serve(*c, a);
  const Req b{Cat(Prefix(a.input, 700), Fresh(200)), Fresh(10)};  // n = 900
  const EngineLookup fb = Serve(*c, b);
  EXPECT_EQ(fb.attention_hit_tokens, 700);  // K: the edge is split at 700 (a tombstone)
  EXPECT_EQ(fb.reusable_tokens, 0);
  const int64_t branch = 700 / C * C;
  ASSERT_EQ(branch, 640);
  // One state per extend: the branch replaces floor(900/64)*64 = 896, and B's finish caches
  // [0, 640) only.
  EXPECT_EQ(c->tree().StateDepths(b.Committed()), std::vector<int64_t>{branch});
  const Req cc{Cat(Prefix(a.input, 700), Fresh(300)), Fresh(3)};
  const EngineLookup fc = Serve(*c, cc);
  EXPECT_EQ(fc.reusable_tokens, branch);
  EXPECT_EQ(fc.attention_hit_tokens, 700);
}

TEST(SglangEngine, Case3OnlyTheLastDecodeTrackSurvives) {
  auto c = Make(Config(SglangStrategy::kExtraBuffer));
  const Req a{Fresh(200), Fresh(400)};
  Serve(*c, a);
  const int64_t committed = 200 + 400 - 1, t = 256;
  const int64_t last = committed / t * t;  // decode tracks 256 and 512; 192 is overwritten
  ASSERT_EQ(last, 512);
  EXPECT_EQ(c->tree().StateDepths(a.Committed()), std::vector<int64_t>{last});
  EXPECT_EQ(c->stats().cached_tokens, last);
  EXPECT_EQ(c->stats().checkpoints, 1);
}

// Case 4, state side: X (640) and its descendant Y (960); a hit on Y refreshes Y only (not its
// ancestors, in any order), so a state shortfall of one tombstones X (its KV stays), not W (a
// state stored after X) nor Y.
TEST(SglangEngine, Case4StateListRefreshesOnlyTheUsedNode) {
  SglangConfig config = Config(SglangStrategy::kExtraBuffer);
  config.max_mamba_cache_size = 6;  // 4 states + the 3 slots of a running request: one short
  auto c = Make(config);
  const Req a{Fresh(1000), Fresh(1)};
  Serve(*c, a);  // Y at 960
  const Req b{Cat(Prefix(a.input, 700), Fresh(200)), Fresh(1)};
  Serve(*c, b);  // X at 640 (branch), newer than Y
  ASSERT_EQ(c->tree().StateDepths(a.input), (std::vector<int64_t>{640, 960}));
  const Req w{Fresh(100), Fresh(1)};
  Serve(*c, w);                                        // W at 64, newer than X
  const Req hit_y{Cat(a.input, Fresh(50)), Fresh(1)};  // hits Y, stores Z at 1024 below it
  EXPECT_EQ(Serve(*c, hit_y).reusable_tokens, 960);
  ASSERT_EQ(c->tree().StateDepths(hit_y.input), (std::vector<int64_t>{640, 960, 1024}));
  const int64_t kv_before = c->stats().cached_tokens;
  const int64_t evicted_before = c->stats().evicted_checkpoints;
  const Req other{Fresh(100), Fresh(1)};  // its 3 slots force one state eviction
  Serve(*c, other);
  EXPECT_EQ(c->stats().evicted_checkpoints, evicted_before + 1);
  EXPECT_EQ(c->tree().StateDepths(hit_y.input), (std::vector<int64_t>{960, 1024}));
  EXPECT_EQ(c->tree().StateDepths(w.input), std::vector<int64_t>{64});
  // X became a tombstone: its KV stays (other's 64 tokens were added).
  EXPECT_EQ(c->stats().cached_tokens, kv_before + 64);
  const Req e{Cat(Prefix(a.input, 700), Fresh(100)), Fresh(1)};
  const EngineLookup fe = Serve(*c, e);
  EXPECT_EQ(fe.attention_hit_tokens, 700);
  EXPECT_EQ(fe.reusable_tokens, 0);
}

// Case 4, KV side: the least recently used unlocked leaf goes first, a hit refreshing its path.
void KvLeafOrder(bool refresh_first) {
  SglangConfig config = Config(SglangStrategy::kExtraBuffer);
  config.max_mamba_cache_size = 10;
  const int64_t kv = Model().KvBytesPerToken();
  const int64_t slot = SglangStateSlotBytes(Model(), config.ssm_dtype_bytes);
  // Two leaves of 256 tokens, and room for 299 more: a 300-token request evicts one leaf.
  auto c = Make(config, 10 * slot + (256 + 256 + 299) * kv);
  ASSERT_EQ(c->kv_tokens(), 811);
  const Req l1{Fresh(300), Fresh(1)}, l2{Fresh(300), Fresh(1)};
  Serve(*c, l1);
  Serve(*c, l2);
  if (refresh_first) {
    // A lookup that uses l1's state and inserts nothing (its extend of 1 < C tracks nothing).
    const Req touch{Prefix(l1.input, 257), Fresh(1)};
    EXPECT_EQ(Serve(*c, touch).reusable_tokens, 256);
  }
  Serve(*c, Req{Fresh(300), Fresh(1)});
  const bool l1_kept = !c->tree().StateDepths(l1.input).empty();
  const bool l2_kept = !c->tree().StateDepths(l2.input).empty();
  EXPECT_NE(l1_kept, l2_kept);
  EXPECT_EQ(l1_kept, refresh_first) << "the LRU leaf is evicted";
  EXPECT_EQ(c->stats().evicted_tokens, 256);
}
TEST(SglangEngine, Case4KvSideEvictsTheLruLeaf) { KvLeafOrder(false); }
TEST(SglangEngine, Case4KvSideHitRefreshesThePath) { KvLeafOrder(true); }

TEST(SglangEngine, Case5NoBufferStoresCommittedTokensOnly) {
  auto c = Make(Config(SglangStrategy::kNoBuffer));
  const Req a{Fresh(1000), Fresh(10)};
  Serve(*c, a);
  const int64_t committed = 1000 + 10 - 1;
  EXPECT_EQ(c->tree().StateDepths(a.Committed()), std::vector<int64_t>{committed});
  EXPECT_EQ(c->stats().cached_tokens, committed);
  const Req b{Cat(Cat(a.input, a.output), Fresh(50)), Fresh(3)};
  EXPECT_EQ(Serve(*c, b).reusable_tokens, committed);
  const Req d{Cat(Prefix(a.input, 700), Fresh(200)), Fresh(3)};
  EXPECT_EQ(Serve(*c, d).reusable_tokens, 0);  // no branch states
  const Req e{Cat(Prefix(a.input, 700), Fresh(300)), Fresh(3)};
  const EngineLookup fe = Serve(*c, e);
  EXPECT_EQ(fe.reusable_tokens, 0);
  EXPECT_EQ(fe.attention_hit_tokens, 700);
}

// Case 6: lazy tracks a decode boundary only if a slot is free after evicting at most one state.
// Z leaves a state at 128; A (P=200, G=400) runs with 2 slots in a pool of 3.
void LazyCase(bool a_shares_z, int64_t expected_cache_len) {
  SglangConfig config = Config(SglangStrategy::kExtraBufferLazy);
  config.max_mamba_cache_size = 3;
  auto c = Make(config);
  ASSERT_EQ(c->reserved_slots(), 2);
  const Req z{Fresh(130), Fresh(1)};
  Serve(*c, z);
  ASSERT_EQ(c->tree().StateDepths(z.input), std::vector<int64_t>{128});
  const Req a{a_shares_z ? Cat(Prefix(z.input, 128), Fresh(72)) : Fresh(200), Fresh(400)};
  Serve(*c, a);
  const std::vector<int64_t> depths = c->tree().StateDepths(a.Committed());
  ASSERT_FALSE(depths.empty());
  EXPECT_EQ(depths.back(), expected_cache_len);
  // Shared: Z's [0, 128) is a prefix of A's; not shared: Z's leaf was evicted whole.
  EXPECT_EQ(c->stats().cached_tokens, expected_cache_len);
}
// Z's state is locked by A's hit: the pool is exhausted with nothing evictable, the tracks at 256
// and 512 are skipped and the finish caches the prefill track 192.
TEST(SglangEngine, Case6LazySkipsTracksWithoutAFreeSlot) { LazyCase(true, 192); }
// Z's state is evictable: the track at 256 evicts it, 512 finds the slot free again.
TEST(SglangEngine, Case6LazyEvictsOneStateForATrack) { LazyCase(false, 512); }

TEST(SglangEngine, ExtraBufferTracksDespiteAFullPool) {
  // The same situation as Case6LazySkipsTracksWithoutAFreeSlot under extra_buffer (3 slots held
  // up front): the decode tracks need no new slot.
  SglangConfig config = Config(SglangStrategy::kExtraBuffer);
  config.max_mamba_cache_size = 4;
  auto c = Make(config);
  const Req z{Fresh(130), Fresh(1)};
  Serve(*c, z);
  const Req a{Cat(Prefix(z.input, 128), Fresh(72)), Fresh(400)};
  Serve(*c, a);
  EXPECT_EQ(c->tree().StateDepths(a.Committed()).back(), 512);
}

// sglang-marconi: the KV side evicts the leaf of least normalised recency + alpha * efficiency.
TEST(SglangEngine, MarconiOrderEvictsTheLessEfficientLeaf) {
  SglangConfig config = Config(SglangStrategy::kExtraBuffer);
  config.max_mamba_cache_size = 10;
  const int64_t kv = Model().KvBytesPerToken();
  const int64_t slot = SglangStateSlotBytes(Model(), config.ssm_dtype_bytes);
  auto efficiency = [&](int64_t depth) {
    return Model().PrefillFlops(0, depth) / static_cast<double>(slot + depth * kv);
  };
  // Leaves of 3968 and 64 tokens (P = 4000 and 100); the more efficient one is made the older.
  const bool long_first = efficiency(3968) > efficiency(64);
  const Req long_req{Fresh(4000), Fresh(1)}, short_req{Fresh(100), Fresh(1)};
  const Req& older = long_first ? long_req : short_req;
  const Req& newer = long_first ? short_req : long_req;
  for (bool marconi : {false, true}) {
    SCOPED_TRACE(marconi ? "sglang-marconi" : "sglang");
    SglangConfig cfg = config;
    if (marconi) {
      cfg.order = SglangTree::Order::kFlopAware;
      // Normalised: older = alpha * 1, newer = 1 + alpha * 0; alpha 2 evicts the newer.
      cfg.alpha = 2;
    }
    auto c = Make(cfg, 10 * slot + (3968 + 64 + 99) * kv);
    Serve(*c, older);
    Serve(*c, newer);
    Serve(*c, Req{Fresh(100), Fresh(1)});  // needs 100 KV tokens: one leaf goes
    const bool older_kept = !c->tree().StateDepths(older.input).empty();
    const bool newer_kept = !c->tree().StateDepths(newer.input).empty();
    EXPECT_EQ(older_kept, marconi);
    EXPECT_EQ(newer_kept, !marconi);
  }
}

TEST(SglangEngine, MarconiAlphaZeroIsLru) {
  // With alpha 0 the utility is recency alone: the state side then matches the LRU list.
  SglangConfig lru = Config(SglangStrategy::kExtraBuffer);
  lru.max_mamba_cache_size = 5;
  SglangConfig flop = lru;
  flop.order = SglangTree::Order::kFlopAware;
  flop.alpha = 0;
  auto a = Make(lru), b = Make(flop);
  std::mt19937 rng(7);
  std::vector<Tokens> seen;
  int64_t hits = 0;
  for (int i = 0; i < 60; ++i) {
    Tokens input = seen.empty() || rng() % 2 == 0
                       ? Fresh(64 + static_cast<int64_t>(rng() % 400))
                       : Cat(seen[rng() % seen.size()], Fresh(1 + rng() % 100));
    const Req r{input, Fresh(1)};
    const int64_t hit = Serve(*a, r).reusable_tokens;
    EXPECT_EQ(hit, Serve(*b, r).reusable_tokens) << "request " << i;
    hits += hit;
    seen.push_back(input);
  }
  EXPECT_GT(hits, 0);
  EXPECT_EQ(a->stats().evictions, b->stats().evictions);
  EXPECT_GT(a->stats().evictions, 0);
}

// ------------------------------------------------------------------------------------------
// Brute-force oracles at unbounded capacity: the rules applied to plain lists of what every
// earlier request stored (no tree), checked request by request against the emulation.

struct Stored {
  Tokens seq;                // the request's committed tokens
  std::set<int64_t> states;  // positions of its stored states (its KV is cached up to the last)
};

int64_t Lcp(const Tokens& a, int64_t a_len, const Tokens& b, int64_t b_len) {
  const int64_t m = std::min(a_len, b_len);
  int64_t k = 0;
  while (k < m && a[static_cast<size_t>(k)] == b[static_cast<size_t>(k)]) ++k;
  return k;
}

// The hit and the matched length over everything stored, for an input of n tokens (key n - 1).
EngineLookup OracleLookup(const std::vector<Stored>& stored, const Tokens& input) {
  const int64_t key = static_cast<int64_t>(input.size()) - 1;
  EngineLookup out;
  for (const Stored& s : stored) {
    if (s.states.empty()) continue;
    const int64_t kv_len = *s.states.rbegin();
    const int64_t lcp = Lcp(input, key, s.seq, kv_len);
    out.attention_hit_tokens = std::max(out.attention_hit_tokens, lcp);
    auto it = s.states.upper_bound(lcp);  // the deepest state within the common prefix
    if (it != s.states.begin()) out.reusable_tokens = std::max(out.reusable_tokens, *--it);
  }
  return out;
}

// What request (input, output) stores, given its lookup. extra_buffer (and lazy, marconi with
// unbounded slots): one state per extend at p + floor(e/C)*C, or the branch point inside it;
// each non-final chunk's track inserted; the last decode multiple of T; KV up to the last track.
// no_buffer: every non-final chunk end, and all committed tokens.
std::set<int64_t> OracleStores(bool buffered, int64_t C, int64_t T, int64_t S, const Req& r,
                               const EngineLookup& found) {
  const int64_t n = static_cast<int64_t>(r.input.size());
  const int64_t g = static_cast<int64_t>(r.output.size());
  const int64_t committed = g > 0 ? n + g - 1 : n;
  const int64_t h = found.reusable_tokens;
  const int64_t aligned = found.attention_hit_tokens / C * C;
  const int64_t branch = buffered && aligned > h ? aligned : -1;
  std::set<int64_t> out;
  int64_t last = -1;
  for (int64_t p = h; p < n;) {
    const int64_t end = S > 0 ? std::min(n, p + S) : n;
    if (buffered) {
      int64_t track = end - p >= C ? p + (end - p) / C * C : -1;
      if (branch > p && branch < end && (branch - p) % C == 0) track = branch;
      if (track >= 0) last = track;
      if (end < n && last >= 0) {
        out.insert(last);
        last = -1;
      }
    } else if (end < n) {
      out.insert(end);
    }
    p = end;
  }
  if (!buffered) {
    out.insert(committed);
  } else {
    if (committed / T * T > n) last = committed / T * T;
    if (last > 0) out.insert(last);
  }
  return out;
}

// Sessions over a few system prompts: multi-turn continuations (input = the previous turn's
// input + output + new tokens), fresh requests on a system prompt, and partial overlaps that
// diverge inside earlier requests (edge splits, branch points).
std::vector<Req> RandomTrace(uint32_t seed, int requests) {
  std::mt19937 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(hi - lo + 1));
  };
  std::vector<Tokens> prompts;
  for (int i = 0; i < 3; ++i) prompts.push_back(Fresh(uniform(40, 500)));
  std::vector<Req> out;
  for (int i = 0; i < requests; ++i) {
    Req r;
    const int64_t kind = out.empty() ? 0 : uniform(0, 3);
    if (kind == 0) {
      r.input = Cat(prompts[static_cast<size_t>(uniform(0, 2))], Fresh(uniform(1, 700)));
    } else if (kind == 1 || kind == 2) {
      const Req& prev = out[static_cast<size_t>(uniform(0, static_cast<int64_t>(out.size()) - 1))];
      r.input = Cat(Cat(prev.input, prev.output), Fresh(uniform(1, 300)));
    } else {
      const Req& prev = out[static_cast<size_t>(uniform(0, static_cast<int64_t>(out.size()) - 1))];
      const Tokens full = Cat(prev.input, prev.output);
      r.input =
          Cat(Prefix(full, uniform(1, static_cast<int64_t>(full.size()))), Fresh(uniform(0, 200)));
    }
    r.output = Fresh(uniform(0, 600));
    out.push_back(std::move(r));
  }
  return out;
}

void RunOracle(SglangStrategy strategy, SglangTree::Order order, int64_t prefill_chunk) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE("seed " + std::to_string(seed) + ", chunked_prefill_size " +
                 std::to_string(prefill_chunk));
    SglangConfig config = Config(strategy);
    config.order = order;
    config.chunked_prefill_size = prefill_chunk;
    auto c = Make(config);
    const bool buffered = strategy != SglangStrategy::kNoBuffer;
    std::vector<Stored> stored;
    int64_t hits = 0, lost = 0;
    for (const Req& r : RandomTrace(seed, 120)) {
      const EngineLookup want = OracleLookup(stored, r.input);
      const EngineLookup got = Serve(*c, r);
      ASSERT_EQ(got.reusable_tokens, want.reusable_tokens) << "request " << stored.size();
      ASSERT_EQ(got.attention_hit_tokens, want.attention_hit_tokens) << "request " << stored.size();
      hits += got.reusable_tokens;
      lost += got.attention_hit_tokens - got.reusable_tokens;
      stored.push_back(
          {r.Committed(), OracleStores(buffered, c->chunk_size(), 256, prefill_chunk, r, want)});
    }
    std::cout << "seed " << seed << ": hit tokens " << hits << ", lost for want of a state " << lost
              << "\n";
    EXPECT_GT(hits, 0);
  }
}

TEST(SglangOracle, ExtraBuffer) {
  RunOracle(SglangStrategy::kExtraBuffer, SglangTree::Order::kLru, 0);
  RunOracle(SglangStrategy::kExtraBuffer, SglangTree::Order::kLru, 192);
}
TEST(SglangOracle, NoBuffer) {
  RunOracle(SglangStrategy::kNoBuffer, SglangTree::Order::kLru, 0);
  RunOracle(SglangStrategy::kNoBuffer, SglangTree::Order::kLru, 150);
}
TEST(SglangOracle, LazyAndMarconiMatchExtraBufferWithoutPressure) {
  RunOracle(SglangStrategy::kExtraBufferLazy, SglangTree::Order::kLru, 192);
  RunOracle(SglangStrategy::kExtraBuffer, SglangTree::Order::kFlopAware, 192);
}

// A model without recurrent layers: SGLang's plain RadixCache, whatever the strategy. The hit is
// the longest common prefix (capped at n - 1) with any earlier request's committed tokens.
TEST(SglangOracle, PlainRadixCacheForAttentionOnlyModels) {
  const ModelSpec llama = ModelSpec::Preset("llama-2-7b").value();
  for (SglangStrategy strategy : {SglangStrategy::kExtraBuffer, SglangStrategy::kNoBuffer}) {
    SglangConfig config = Config(strategy);
    config.chunked_prefill_size = 192;
    auto c = SglangCache::Create(llama, kUnlimited, config).value();
    std::vector<Tokens> committed;
    int64_t hits = 0;
    for (const Req& r : RandomTrace(5, 120)) {
      const int64_t key = static_cast<int64_t>(r.input.size()) - 1;
      int64_t want = 0;
      for (const Tokens& s : committed) {
        want = std::max(want, Lcp(r.input, key, s, static_cast<int64_t>(s.size())));
      }
      const EngineLookup got = Serve(*c, r);
      ASSERT_EQ(got.reusable_tokens, want) << "request " << committed.size();
      ASSERT_EQ(got.attention_hit_tokens, want);
      hits += want;
      committed.push_back(r.Committed());
    }
    EXPECT_GT(hits, 0);
    EXPECT_EQ(c->stats().state_bytes, 0);
    EXPECT_EQ(c->DerivedSizes().count("state_slots"), 0u);
  }
  // Bounded: all the capacity is KV.
  auto bounded = SglangCache::Create(llama, 1000 * llama.KvBytesPerToken(), SglangConfig{});
  ASSERT_TRUE(bounded.ok());
  EXPECT_EQ((*bounded)->kv_tokens(), 1000);
}

// ------------------------------------------------------------------------------------------
// Bounded pools: the capacity invariant, and eviction happening.

TEST(SglangEngine, PoolsNeverOverflow) {
  const int64_t kv = Model().KvBytesPerToken();
  for (SglangStrategy strategy : {SglangStrategy::kExtraBuffer, SglangStrategy::kNoBuffer,
                                  SglangStrategy::kExtraBufferLazy}) {
    for (SglangTree::Order order : {SglangTree::Order::kLru, SglangTree::Order::kFlopAware}) {
      for (const auto& [slots, tokens, seed] :
           {std::tuple{9, 6000, 11u}, std::tuple{5, 2500, 12u}, std::tuple{12, 4000, 13u}}) {
        SCOPED_TRACE("slots " + std::to_string(slots) + ", KV tokens " + std::to_string(tokens) +
                     ", seed " + std::to_string(seed));
        SglangConfig config = Config(strategy);
        config.order = order;
        config.chunked_prefill_size = 256;
        config.max_mamba_cache_size = slots;
        const int64_t slot = SglangStateSlotBytes(Model(), config.ssm_dtype_bytes);
        auto c = Make(config, slots * slot + tokens * kv);
        ASSERT_EQ(c->kv_tokens(), tokens);
        int64_t hits = 0;
        for (const Req& r : RandomTrace(seed, 150)) {
          hits += Serve(*c, r).reusable_tokens;
          const CacheStats& s = c->stats();
          ASSERT_LE(c->tree().peak_kv_used(), c->kv_tokens());
          ASSERT_LE(c->tree().peak_slots_used(), c->state_slots());
          ASSERT_EQ(s.cached_tokens, c->tree().tree_kv_tokens());
          ASSERT_EQ(s.kv_bytes, s.cached_tokens * kv);
          ASSERT_EQ(s.state_bytes, s.checkpoints * slot);
          ASSERT_LE(s.checkpoints, c->state_slots());
        }
        EXPECT_GT(c->stats().evictions, 0);
        EXPECT_GT(c->stats().evicted_tokens, 0);
        EXPECT_GT(hits, 0);
        EXPECT_LE(c->stats().peak_kv_bytes, c->kv_tokens() * kv);
      }
    }
  }
}

TEST(SglangEngine, RequestLongerThanThePoolCachesNothing) {
  SglangConfig config = Config(SglangStrategy::kExtraBuffer);
  config.max_mamba_cache_size = 4;
  const int64_t slot = SglangStateSlotBytes(Model(), config.ssm_dtype_bytes);
  auto c = Make(config, 4 * slot + 500 * Model().KvBytesPerToken());
  Serve(*c, Req{Fresh(600), Fresh(2)});
  EXPECT_EQ(c->stats().cached_tokens, 0);
  Serve(*c, Req{Fresh(300), Fresh(2)});
  EXPECT_EQ(c->stats().cached_tokens, 256);
}

// ------------------------------------------------------------------------------------------
// Derived sizes, --set, bad parameters.

TEST(SglangEngine, DerivedSizesFollowTheMemorySplit) {
  const int64_t cap = int64_t{10} << 30;
  int64_t slot = 0;
  for (const LayerSpec& l : Model().layers()) {
    if (IsRecurrent(l)) slot += LayerStateBytes(l, Model().d_model(), 4);
  }
  const int64_t slots =
      static_cast<int64_t>(static_cast<double>(cap) * 0.9 / 1.9 / static_cast<double>(slot));
  const int64_t kv_tokens = (cap - slots * slot) / Model().KvBytesPerToken();
  SglangConfig config;  // the defaults: C from the model
  auto c = Make(config, cap);
  const auto d = c->DerivedSizes();
  EXPECT_EQ(d.at("state_slot_bytes"), static_cast<double>(slot));
  EXPECT_EQ(d.at("state_slots"), static_cast<double>(slots));
  EXPECT_EQ(d.at("kv_tokens"), static_cast<double>(kv_tokens));
  EXPECT_EQ(d.at("max_running_requests"), static_cast<double>(std::min(slots / 5, kv_tokens / 2)));
  EXPECT_EQ(d.at("chunk_size"), 256);  // paper-7b's SSM layers: the Mamba2 default
  EXPECT_EQ(d.at("chunked_prefill_size"), 8192);
  // no_buffer needs fewer slots per running request.
  SglangConfig nb;
  nb.strategy = SglangStrategy::kNoBuffer;
  EXPECT_EQ(Make(nb, cap)->DerivedSizes().at("max_running_requests"),
            static_cast<double>(std::min(slots / 3, kv_tokens / 2)));
  // Unbounded: no pool sizes.
  EXPECT_EQ(Make(config)->DerivedSizes().count("state_slots"), 0u);
  // A GatedDeltaNet model gets FLA's 64.
  const ModelSpec qwen = ModelSpec::Preset("qwen3-next-80b-a3b").value();
  EXPECT_EQ(SglangDerivedChunkSize(qwen), 64);
}

TEST(SglangEngine, SetOverridesReachTheEngine) {
  SimConfig config;
  config.model = Model();
  config.capacity_bytes = int64_t{10} << 30;
  ASSERT_TRUE(ParseSet("sglang.chunk_size=128", &config.params).ok());
  ASSERT_TRUE(ParseSet("sglang.max_mamba_cache_size=40", &config.params).ok());
  ASSERT_TRUE(ParseSet("sglang-marconi.alpha=0.5", &config.params).ok());
  Trace trace;
  const Tokens p = Fresh(300);
  for (int i = 0; i < 4; ++i) {
    trace.requests.push_back({"s", i, static_cast<double>(i), Cat(p, Fresh(50)), Fresh(5), 0});
  }
  auto r = RunSystem(trace, SystemKind::kSglang, config);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->derived.at("chunk_size"), 128);
  EXPECT_EQ(r->derived.at("state_slots"), 40);
  EXPECT_EQ(r->params.at("track_interval"), 256);
  auto m = RunSystem(trace, SystemKind::kSglangMarconi, config);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->params.at("alpha"), 0.5);
  // The first request caches its track floor(350/128)*128 = 256, inside the shared prompt.
  EXPECT_EQ(r->records[1].hit_tokens, 256);
  EXPECT_EQ(r->records[3].hit_tokens, 256);
  for (SystemKind k : {SystemKind::kSglangNoBuffer, SystemKind::kSglangLazy}) {
    auto x = RunSystem(trace, k, config);
    ASSERT_TRUE(x.ok()) << x.status().ToString();
  }
}

TEST(SglangEngine, BadParametersAreInvalidArgument) {
  auto invalid = [](const ModelSpec& model, int64_t cap, const SglangConfig& c) {
    auto r = SglangCache::Create(model, cap, c);
    return !r.ok() && r.status().code() == StatusCode::kInvalidArgument;
  };
  SglangConfig ok;
  EXPECT_TRUE(invalid(Model(), 1000, ok)) << "capacity below one running request's slots";
  EXPECT_TRUE(invalid(Model(), 0, ok));
  SglangConfig small_chunk;
  small_chunk.chunked_prefill_size = 100;  // below C = 256
  EXPECT_TRUE(invalid(Model(), kUnlimited, small_chunk));
  SglangConfig too_many;
  too_many.max_mamba_cache_size = 1 << 20;
  EXPECT_TRUE(invalid(Model(), int64_t{1} << 30, too_many));
  SglangConfig ratio;
  ratio.mamba_full_memory_ratio = 0;
  EXPECT_TRUE(invalid(Model(), kUnlimited, ratio));
  SglangConfig alpha;
  alpha.alpha = -1;
  EXPECT_TRUE(invalid(Model(), kUnlimited, alpha));
  const ModelSpec llama = ModelSpec::Preset("llama-2-7b").value();
  EXPECT_TRUE(invalid(llama, 1000, ok)) << "not one KV token";
  SystemOverrides o;
  EXPECT_FALSE(ParseSet("sglang.track_interval=0", &o).ok());
  EXPECT_FALSE(ParseSet("sglang-nobuffer.chunk_size=64", &o).ok());
  EXPECT_FALSE(ParseSet("sglang-marconi.alpha=-2", &o).ok());
  // Through the registry: a capacity too small is an error of the replay, not a crash.
  SimConfig config;
  config.model = Model();
  config.capacity_bytes = 1000;
  Trace trace;
  trace.requests.push_back({"s", 0, 0, Fresh(10), Fresh(1), 0});
  for (SystemKind k : {SystemKind::kSglang, SystemKind::kSglangNoBuffer, SystemKind::kSglangLazy,
                       SystemKind::kSglangMarconi}) {
    auto r = RunSystem(trace, k, config);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

// ------------------------------------------------------------------------------------------
// Under load: many requests at once through the request protocol.

auto ContentOf(const SglangCache& c) {
  const CacheStats& s = c.stats();
  const MemoryUse m = c.Memory();
  // clang-format off
  return std::tuple{s.cached_tokens, s.checkpoints, s.nodes, s.kv_bytes, s.state_bytes, s.inserts,
                    s.evictions, s.evicted_tokens, s.evicted_checkpoints, s.checkpoints_admitted,
                    m.running_kv, m.running_state, m.cached_kv, m.cached_state};
  // clang-format on
}

// The pools' accounting after any call: within the capacity, the tree's counters as its walk.
void CheckPools(const SglangCache& c, int64_t capacity) {
  const MemoryUse m = c.Memory();
  ASSERT_LE(m.total(), capacity);
  ASSERT_LE(c.tree().peak_kv_used(), c.kv_tokens());
  ASSERT_LE(c.tree().peak_slots_used(), c.state_slots());
  ASSERT_EQ(m.cached_kv, c.stats().kv_bytes);
  ASSERT_EQ(m.cached_state, c.stats().state_bytes);
  const auto [kv, slots] = c.tree().CountEvictable();
  ASSERT_EQ(c.tree().EvictableKv({}), kv);
  ASSERT_EQ(c.tree().EvictableSlots({}), slots);
}

struct Flight {
  Req req;
  int64_t n = 0, prefill_end = 0, committed = 0, hit = 0;
  int64_t reserved = 0, computed = 0;  // positions: KV held up to, computed up to
  bool running = false, done = false;
};

// Random admissions, reservations, chunk ends, finishes and preemptions in a bounded cache.
void Interleave(SglangStrategy strategy, SglangTree::Order order, uint32_t seed) {
  std::cout << "seed " << seed << "\n";
  SglangConfig config = Config(strategy);
  config.order = order;
  config.max_mamba_cache_size = 11;
  const int64_t kv = Model().KvBytesPerToken();
  const int64_t capacity = 11 * SglangStateSlotBytes(Model(), 4) + 5000 * kv;
  auto c = Make(config, capacity);
  std::mt19937 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(rng() % static_cast<uint32_t>(hi - lo + 1));
  };
  std::vector<Flight> flights;
  for (const Req& r : RandomTrace(seed, 80)) {
    Flight f{r, static_cast<int64_t>(r.input.size())};
    f.committed = f.n + std::max<int64_t>(static_cast<int64_t>(r.output.size()) - 1, 0);
    f.prefill_end = f.n;
    flights.push_back(f);
  }
  int64_t admitted = 0, no_room = 0, too_large = 0, aborted = 0, finished = 0;
  size_t next = 0;
  std::vector<size_t> running;
  while (next < flights.size() || !running.empty()) {
    const int64_t action = uniform(0, 9);
    if (next < flights.size() && (running.empty() || (action < 3 && running.size() < 4))) {
      Flight& f = flights[next];
      const EngineLookup peek = c->Peek(f.req.input);
      const int64_t reserve = uniform(0, f.prefill_end - peek.reusable_tokens);
      const auto before = ContentOf(*c);
      EngineLookup found;
      const EngineAdmit a =
          c->Admit(next, f.req.input, f.req.output, f.prefill_end, reserve, 0, &found);
      ASSERT_EQ(found.reusable_tokens, peek.reusable_tokens);
      ASSERT_EQ(found.attention_hit_tokens, peek.attention_hit_tokens);
      if (a == EngineAdmit::kAdmitted) {
        ++admitted;
        f.running = true;
        f.hit = f.computed = found.reusable_tokens;
        f.reserved = f.hit + reserve;
        running.push_back(next++);
      } else {
        ASSERT_EQ(ContentOf(*c), before) << "a refused Admit changes nothing";
        if (a == EngineAdmit::kTooLarge) {
          ASSERT_GT(f.committed, c->kv_tokens());
          ++too_large;
          ++next;
        } else {
          ++no_room;
          ASSERT_FALSE(running.empty()) << "alone a request always fits";
        }
      }
    } else {
      const size_t k = static_cast<size_t>(uniform(0, static_cast<int64_t>(running.size()) - 1));
      Flight& f = flights[running[k]];
      const EngineCache::RequestId id = running[k];
      bool leave = false;
      if (action == 9 && uniform(0, 19) == 0) {
        c->Abort(id);
        ++aborted;
        leave = true;
      } else if (f.computed == f.committed) {
        c->Finish(id, 0);
        ++finished;
        f.done = leave = true;
      } else if (f.reserved == f.computed) {
        const int64_t limit = f.computed < f.prefill_end ? f.prefill_end : f.committed;
        const int64_t tokens = uniform(1, std::min<int64_t>(limit - f.computed, 700));
        const auto before = ContentOf(*c);
        if (c->Reserve(id, tokens)) {
          f.reserved += tokens;
        } else {
          ASSERT_EQ(ContentOf(*c), before) << "a refused Reserve changes nothing";
          c->Abort(id);  // preempted
          ++aborted;
          leave = true;
        }
      } else {
        f.computed = uniform(f.computed + 1, f.reserved);
        c->Computed(id, f.computed);
      }
      if (leave) {
        f.running = false;
        running.erase(running.begin() + static_cast<std::ptrdiff_t>(k));
        if (!f.done) {  // recomputed later: its generated tokens are prefilled
          f.prefill_end = std::max(f.n, std::min(f.computed, f.committed));
          f.reserved = f.computed = 0;
          flights.push_back(f);
        }
      }
    }
    CheckPools(*c, capacity);
    // A running request's hit stays cached while it runs.
    for (size_t i : running) {
      const Flight& f = flights[i];
      if (f.prefill_end == f.n) {
        ASSERT_GE(c->Peek(f.req.input).reusable_tokens, f.hit);
      }
    }
  }
  EXPECT_EQ(c->Memory().running_kv, 0);
  EXPECT_EQ(c->Memory().running_state, 0);
  std::cout << "admitted " << admitted << ", no room " << no_room << ", too large " << too_large
            << ", aborted " << aborted << ", finished " << finished << "\n";
  EXPECT_GT(no_room, 0);
  EXPECT_GT(finished, 0);
  EXPECT_GT(c->stats().evictions, 0);
}

TEST(SglangLoad, RandomInterleavingKeepsThePools) {
  for (SglangStrategy s : {SglangStrategy::kExtraBuffer, SglangStrategy::kNoBuffer,
                           SglangStrategy::kExtraBufferLazy}) {
    for (uint32_t seed : {21u, 22u, 23u}) {
      SCOPED_TRACE("strategy " + std::to_string(static_cast<int>(s)) + ", seed " +
                   std::to_string(seed));
      Interleave(s, SglangTree::Order::kLru, seed);
      if (HasFatalFailure()) return;
    }
  }
  Interleave(SglangStrategy::kExtraBuffer, SglangTree::Order::kFlopAware, 24);
}

// Peek finds what Admit's lookup finds, and changes nothing: a twin cache served without Peek
// ends identical.
TEST(SglangLoad, PeekIsAdmitsLookupAndChangesNothing) {
  SglangConfig config = Config(SglangStrategy::kExtraBuffer);
  config.max_mamba_cache_size = 7;
  const int64_t capacity = 7 * SglangStateSlotBytes(Model(), 4) + 2500 * Model().KvBytesPerToken();
  auto a = Make(config, capacity), b = Make(config, capacity);
  int64_t hits = 0;
  for (const Req& r : RandomTrace(31, 100)) {
    const EngineLookup peek = a->Peek(r.input);
    EXPECT_EQ(std::tuple(peek.reusable_tokens, peek.attention_hit_tokens),
              std::tuple(a->Peek(r.input).reusable_tokens, a->Peek(r.input).attention_hit_tokens));
    const EngineLookup served = a->Serve(r.input, r.output, 0);
    EXPECT_EQ(served.reusable_tokens, peek.reusable_tokens);
    EXPECT_EQ(served.attention_hit_tokens, peek.attention_hit_tokens);
    EXPECT_EQ(b->Serve(r.input, r.output, 0).reusable_tokens, served.reusable_tokens);
    ASSERT_EQ(ContentOf(*a), ContentOf(*b));
    ASSERT_EQ(a->tree().StateDepths(r.Committed()), b->tree().StateDepths(r.Committed()));
    hits += served.reusable_tokens;
  }
  EXPECT_GT(hits, 0);
  EXPECT_GT(a->stats().evictions, 0);
}

// Full pools of running requests refuse the next one (slots, then KV) until one finishes.
TEST(SglangLoad, NoRoomUntilARunningRequestFinishes) {
  SglangConfig config = Config(SglangStrategy::kExtraBuffer);
  config.max_mamba_cache_size = 6;  // two running requests' 3 slots
  const int64_t capacity = 6 * SglangStateSlotBytes(Model(), 4) + 1000 * Model().KvBytesPerToken();
  auto c = Make(config, capacity);
  const Req r1{Fresh(300), Fresh(2)}, r2{Fresh(300), Fresh(2)}, r3{Fresh(300), Fresh(2)};
  EngineLookup found;
  ASSERT_EQ(c->Admit(1, r1.input, r1.output, 300, 300, 0, &found), EngineAdmit::kAdmitted);
  ASSERT_EQ(c->Admit(2, r2.input, r2.output, 300, 300, 0, &found), EngineAdmit::kAdmitted);
  const auto before = ContentOf(*c);
  EXPECT_EQ(c->Admit(3, r3.input, r3.output, 300, 0, 0, &found), EngineAdmit::kNoRoom);
  EXPECT_EQ(ContentOf(*c), before);
  EXPECT_EQ(c->Memory().running_state, 6 * c->state_slot_bytes());
  c->Computed(1, 300);
  ASSERT_TRUE(c->Reserve(1, 1));
  c->Computed(1, 301);
  c->Finish(1, 0);  // caches [0, 256) with one of its slots, frees the others
  EXPECT_EQ(c->tree().StateDepths(r1.input), std::vector<int64_t>{256});
  // The KV: 256 cached + 300 held by r2 leave 444 free and 256 evictable: 701 is too many.
  EXPECT_EQ(c->Admit(3, r3.input, r3.output, 300, 701, 0, &found), EngineAdmit::kNoRoom);
  EXPECT_EQ(c->tree().StateDepths(r1.input), std::vector<int64_t>{256});
  EXPECT_EQ(c->Admit(3, r3.input, r3.output, 300, 300, 0, &found), EngineAdmit::kAdmitted);
  // A request longer than the KV pool never fits.
  const Req big{Fresh(1001), Fresh(1)};
  EXPECT_EQ(c->Admit(4, big.input, big.output, 1001, 0, 0, &found), EngineAdmit::kTooLarge);
  c->Abort(2);
  c->Abort(3);
  EXPECT_EQ(c->Memory().running_kv + c->Memory().running_state, 0);
}

}  // namespace
}  // namespace marconi::sim
