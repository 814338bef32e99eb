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

#include "engines_sglang_util.h"
#include "marconi/prefix_cache.h"
#include "sim/engines/sglang.h"
#include "sim/replay.h"
#include "sim/systems.h"

namespace marconi::sim {
namespace {

using namespace sglang_test;  // NOLINT(build/namespaces): the tests' own helpers

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

}  // namespace
}  // namespace marconi::sim
