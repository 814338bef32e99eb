// One typed conformance suite run against every eviction policy: each is driven by random
// Upsert / Erase / Victim sequences and compared with a brute-force model of its own ordering,
// and must honour the common contract (no phantom victims, Clone equivalence, empty behaviour).
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "marconi/policies.h"
#include "test_util.h"

namespace marconi {
namespace {

using Candidates = std::map<NodeId, EvictionCandidate>;

double Efficiency(const EvictionCandidate& c) {
  return c.bytes_freed > 0 ? c.flops_saved / static_cast<double>(c.bytes_freed) : 0;
}

struct LruTraits {
  static std::unique_ptr<EvictionPolicy> Make() { return MakeLruEviction(); }
  // Brute force: the least recent, ties to the older access (seq).
  struct Model {
    void Upsert(const EvictionCandidate&) {}
    void OnEvicted(const EvictionCandidate&) {}
    double Score(const Candidates& all, NodeId id, int64_t) const { return all.at(id).last_access; }
  };
  static constexpr bool kExactTies = true;
};

using Recency = FlopAwareEvictionConfig::Recency;

template <int kAlphaTenths, Recency kRecency>
struct FlopAwareTraits {
  static std::unique_ptr<EvictionPolicy> Make() {
    return MakeFlopAwareEviction({kAlphaTenths / 10.0, kRecency}).value();
  }
  struct Model {
    void Upsert(const EvictionCandidate&) {}
    void OnEvicted(const EvictionCandidate&) {}
    static double Recent(const EvictionCandidate& c, int64_t clock) {
      return kRecency == Recency::kLinearTime
                 ? c.last_access
                 : 1.0 / static_cast<double>(clock - c.access_clock + 1);
    }
    // Marconi's S(n) with min-max normalisation over the current candidates.
    double Score(const Candidates& all, NodeId id, int64_t clock) const {
      double tmin = INFINITY, tmax = -INFINITY, emin = INFINITY, emax = -INFINITY;
      for (const auto& [k, c] : all) {
        tmin = std::min(tmin, Recent(c, clock)), tmax = std::max(tmax, Recent(c, clock));
        emin = std::min(emin, Efficiency(c)), emax = std::max(emax, Efficiency(c));
      }
      const EvictionCandidate& c = all.at(id);
      const double alpha = kAlphaTenths / 10.0;
      return (tmax > tmin ? (Recent(c, clock) - tmin) / (tmax - tmin) : 0) +
             (alpha > 0 && emax > emin ? alpha * (Efficiency(c) - emin) / (emax - emin) : 0);
    }
  };
  static constexpr bool kExactTies = kAlphaTenths == 0;
};

struct GdsfTraits {
  static std::unique_ptr<EvictionPolicy> Make() { return MakeGdsfEviction(); }
  struct Model {
    double clock = 0;
    std::map<NodeId, double> h;
    void Upsert(const EvictionCandidate& c) {
      h[c.node] = clock + static_cast<double>(1 + c.hits) * Efficiency(c);
    }
    void OnEvicted(const EvictionCandidate& c) { clock = std::max(clock, h.at(c.node)); }
    double Score(const Candidates&, NodeId id, int64_t) const { return h.at(id); }
  };
  static constexpr bool kExactTies = false;
};

template <typename Traits>
class EvictionConformance : public ::testing::Test {};

using AllPolicies = ::testing::Types<
    LruTraits, FlopAwareTraits<0, Recency::kLinearTime>, FlopAwareTraits<5, Recency::kLinearTime>,
    FlopAwareTraits<15, Recency::kLinearTime>, FlopAwareTraits<0, Recency::kInverseRequests>,
    FlopAwareTraits<5, Recency::kInverseRequests>, FlopAwareTraits<15, Recency::kInverseRequests>,
    GdsfTraits>;
TYPED_TEST_SUITE(EvictionConformance, AllPolicies);

TYPED_TEST(EvictionConformance, EmptyPolicyHasNoVictim) {
  auto p = TypeParam::Make();
  EXPECT_EQ(p->Victim(0), kNoNode);
  EXPECT_EQ(p->size(), 0);
  p->Erase(3);  // absent: ignored
  EXPECT_FALSE(p->Contains(3));
}

TYPED_TEST(EvictionConformance, MatchesBruteForceOrdering) {
  for (uint64_t seed = 21; seed <= 24; ++seed) {
    auto rng = testing::SeededRng(seed);
    auto policy = TypeParam::Make();
    typename TypeParam::Model model;
    Candidates all;
    double now = 0;
    int64_t seq = 0, clock = 0;
    auto random_candidate = [&](NodeId id) {
      // Times and clocks repeat (ties), seq never does, and ids are unrelated to either: ties
      // must follow the access order, not the ids.
      EvictionCandidate c;
      c.node = id;
      c.last_access = (now += static_cast<double>(testing::Uniform(rng, 0, 2)));
      c.access_seq = ++seq;
      c.access_clock = (clock += testing::Uniform(rng, 0, 1));
      c.hits = testing::Uniform(rng, 0, 3);
      c.depth = testing::Uniform(rng, 1, 5000);
      c.flops_saved = static_cast<double>(testing::Uniform(rng, 1, 1000)) * 1e9;
      c.bytes_freed = testing::Uniform(rng, 1, 50) * 1000;
      return c;
    };
    for (int step = 0; step < 3000; ++step) {
      const int op = static_cast<int>(testing::Uniform(rng, 0, 9));
      const NodeId id = static_cast<NodeId>(testing::Uniform(rng, 0, 300));
      if (op < 5) {
        const EvictionCandidate c = random_candidate(id);
        policy->Upsert(c);
        model.Upsert(c);
        all[id] = c;
      } else if (op < 7) {
        policy->Erase(id);
        all.erase(id);
      } else {
        const NodeId victim = policy->Victim(clock);
        ASSERT_EQ(policy->size(), static_cast<int64_t>(all.size()));
        if (all.empty()) {
          ASSERT_EQ(victim, kNoNode);
          continue;
        }
        ASSERT_TRUE(all.count(victim)) << "victim " << victim << " is not a candidate";
        double best_score = INFINITY;
        for (const auto& [k, c] : all) {
          best_score = std::min(best_score, model.Score(all, k, clock));
        }
        const double got = model.Score(all, victim, clock);
        ASSERT_NEAR(got, best_score, 1e-9 * std::max(1.0, std::abs(best_score))) << "step " << step;
        if (TypeParam::kExactTies) {
          // Equal scores go to the older access (seq, unique here), whatever the ids.
          for (const auto& [k, c] : all) {
            if (model.Score(all, k, clock) == got) {
              ASSERT_GE(c.access_seq, all[victim].access_seq) << "step " << step;
            }
          }
        }
        policy->OnEvicted(all[victim]);
        model.OnEvicted(all[victim]);
        policy->Erase(victim);
        all.erase(victim);
      }
      ASSERT_EQ(policy->Contains(id), all.count(id) > 0);
    }
  }
}

TYPED_TEST(EvictionConformance, CloneBehavesIdentically) {
  auto rng = testing::SeededRng(77);
  auto a = TypeParam::Make();
  for (NodeId id = 0; id < 500; ++id) {
    EvictionCandidate c;
    c.node = id;
    c.last_access = static_cast<double>(testing::Uniform(rng, 0, 100));
    c.access_seq = id;
    c.access_clock = testing::Uniform(rng, 0, 100);
    c.hits = testing::Uniform(rng, 0, 3);
    c.depth = 10;
    c.flops_saved = 1e9 * static_cast<double>(id % 17 + 1);
    c.bytes_freed = 1000 * (id % 5 + 1);
    a->Upsert(c);
  }
  auto b = a->Clone();
  for (int i = 0; i < 200; ++i) {
    const NodeId va = a->Victim(100), vb = b->Victim(100);
    ASSERT_EQ(va, vb);
    a->Erase(va);
    b->Erase(vb);
  }
  EXPECT_EQ(a->size(), 300);
  EXPECT_EQ(b->size(), 300);
}

TYPED_TEST(EvictionConformance, ServesABoundedCacheWithinItsContract) {
  const ModelSpec model = testing::TinyModel();
  auto rng = testing::SeededRng(91);
  const int64_t capacity = 6 * model.StateBytesPerCheckpoint() + 150 * model.KvBytesPerToken();
  PrefixCacheConfig config;
  config.capacity_bytes = capacity;
  auto cache = PrefixCache::Create(config, model, MakeJudiciousAdmission(), TypeParam::Make());
  ASSERT_TRUE(cache.ok());
  std::vector<std::vector<Token>> stems;
  for (int i = 0; i < 4; ++i) stems.push_back(testing::RandomSequence(rng, {{0}}, 4, 30));
  for (int step = 0; step < 300; ++step) {
    const auto q = testing::RandomSequence(rng, stems, 4, 20);
    auto h = (*cache)->BeginRequest(q, step);
    ASSERT_TRUE(h.ok());
    const std::vector<Token> out = {1, 2};
    ASSERT_TRUE((*cache)->CompleteRequest(std::move(h).value(), q, out, step).ok());
    const Status inv = (*cache)->CheckInvariants();
    ASSERT_TRUE(inv.ok()) << inv.ToString();
    ASSERT_LE((*cache)->stats().bytes(), capacity);
  }
  EXPECT_GT((*cache)->stats().evictions, 0);
  EXPECT_GT((*cache)->stats().hit_tokens, 0);
}

}  // namespace
}  // namespace marconi
