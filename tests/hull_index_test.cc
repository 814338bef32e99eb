// The hull index against a brute-force evaluation of Marconi's normalised score.
#include "policy/hull_index.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>

#include "test_util.h"

namespace marconi::internal {
namespace {

struct Pt {
  double e, t;
  int64_t seq = 0;
};

// Exact evaluation of S over all points; returns the minimum score.
double BruteMinScore(const std::map<NodeId, Pt>& pts, double alpha, NodeId* argmin) {
  double tmin = INFINITY, tmax = -INFINITY, emin = INFINITY, emax = -INFINITY;
  for (const auto& [id, p] : pts) {
    tmin = std::min(tmin, p.t), tmax = std::max(tmax, p.t);
    emin = std::min(emin, p.e), emax = std::max(emax, p.e);
  }
  double best = INFINITY;
  for (const auto& [id, p] : pts) {
    const double s = (tmax > tmin ? (p.t - tmin) / (tmax - tmin) : 0) +
                     (alpha > 0 && emax > emin ? alpha * (p.e - emin) / (emax - emin) : 0);
    if (s < best) best = s, *argmin = id;
  }
  return best;
}

double ScoreOf(const std::map<NodeId, Pt>& pts, double alpha, NodeId id) {
  double tmin = INFINITY, tmax = -INFINITY, emin = INFINITY, emax = -INFINITY;
  for (const auto& [k, p] : pts) {
    tmin = std::min(tmin, p.t), tmax = std::max(tmax, p.t);
    emin = std::min(emin, p.e), emax = std::max(emax, p.e);
  }
  const Pt& p = pts.at(id);
  return (tmax > tmin ? (p.t - tmin) / (tmax - tmin) : 0) +
         (alpha > 0 && emax > emin ? alpha * (p.e - emin) / (emax - emin) : 0);
}

class HullIndexRandom : public ::testing::TestWithParam<int> {};

TEST_P(HullIndexRandom, MatchesBruteForce) {
  const int coarse = GetParam();  // 0: continuous values; >0: few distinct values (many ties)
  auto rng = marconi::testing::SeededRng(1000 + static_cast<uint64_t>(coarse));
  HullIndex index(/*block_size=*/8);
  std::map<NodeId, Pt> pts;
  auto value = [&](double hi) {
    return coarse > 0 ? static_cast<double>(marconi::testing::Uniform(rng, 0, coarse))
                      : std::uniform_real_distribution<double>(0, hi)(rng);
  };
  for (int step = 0; step < 4000; ++step) {
    const int op = static_cast<int>(marconi::testing::Uniform(rng, 0, 9));
    const NodeId id = static_cast<NodeId>(marconi::testing::Uniform(rng, 0, 199));
    if (op < 5) {
      // seq grows with every update while ids are random: ties of t must follow seq, not ids.
      const Pt p{value(1e6), value(1e4), step};
      index.Set(id, p.e, p.t, p.seq);
      pts[id] = p;
    } else if (op < 7) {
      index.Erase(id);
      pts.erase(id);
    } else {
      const double alpha = std::vector<double>{
          0, 0.1, 1, 2, 7.5}[static_cast<size_t>(marconi::testing::Uniform(rng, 0, 4))];
      const NodeId got = index.MinScore(alpha);
      ASSERT_EQ(index.size(), static_cast<int64_t>(pts.size()));
      if (pts.empty()) {
        ASSERT_EQ(got, kNoNode);
        continue;
      }
      NodeId want = kNoNode;
      const double best = BruteMinScore(pts, alpha, &want);
      ASSERT_TRUE(pts.count(got)) << "victim " << got << " is not a candidate";
      ASSERT_NEAR(ScoreOf(pts, alpha, got), best, 1e-9) << "step " << step << " alpha " << alpha;
      if (alpha == 0) {
        // Recency alone has exact ties: the oldest, then the older access (seq).
        NodeId oldest = kNoNode;
        for (const auto& [k, p] : pts) {
          if (oldest == kNoNode || p.t < pts[oldest].t ||
              (p.t == pts[oldest].t && p.seq < pts[oldest].seq)) {
            oldest = k;
          }
        }
        ASSERT_EQ(got, oldest);
      }
    }
    for (NodeId probe : {id, static_cast<NodeId>(id + 1)}) {
      ASSERT_EQ(index.Contains(probe), pts.count(probe) > 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Values, HullIndexRandom, ::testing::Values(0, 3, 40));

TEST(HullIndex, EmptyAndSingle) {
  HullIndex index;
  EXPECT_EQ(index.MinScore(1), kNoNode);
  index.Set(5, 1, 1, 0);
  EXPECT_EQ(index.MinScore(1), 5);
  index.Set(5, 2, 2, 1);  // replace
  EXPECT_EQ(index.size(), 1);
  index.Erase(5);
  index.Erase(5);  // absent: ignored
  EXPECT_EQ(index.MinScore(0), kNoNode);
}

TEST(HullIndex, AlphaTradesRecencyForEfficiency) {
  HullIndex index;
  index.Set(1, /*e=*/100, /*t=*/0, 0);  // old but efficient
  index.Set(2, /*e=*/1, /*t=*/10, 1);   // recent but inefficient
  index.Set(3, /*e=*/50, /*t=*/5, 2);
  EXPECT_EQ(index.MinScore(0), 1);    // LRU: the oldest
  EXPECT_EQ(index.MinScore(2.0), 2);  // S = 1 + 0 < 0 + 2 (node 1), 0.5 + 0.99 (node 3)
}

}  // namespace
}  // namespace marconi::internal
