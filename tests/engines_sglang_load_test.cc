// The SGLang emulations under load: many requests at once through EngineCache's request protocol
// (random interleavings against the pools' invariants, Peek against Admit, refusals until a
// running request finishes).
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
