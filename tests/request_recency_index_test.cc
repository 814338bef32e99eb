// The request-recency index against a brute-force evaluation of Marconi's score with the authors'
// recency, 1 / (clock - access_clock + 1), min-max normalised with FLOP efficiency.
#include "policy/request_recency_index.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "test_util.h"

namespace marconi::internal {
namespace {

struct Pt {
  double e;
  int64_t clock, seq;
};

// Score of every point; the index must return a minimum, ties to the smaller seq, then id.
NodeId BruteMin(const std::map<NodeId, Pt>& pts, double alpha, int64_t clock, double* best) {
  auto r = [clock](const Pt& p) { return 1.0 / static_cast<double>(clock - p.clock + 1); };
  double rmin = INFINITY, rmax = -INFINITY, emin = INFINITY, emax = -INFINITY;
  for (const auto& [id, p] : pts) {
    rmin = std::min(rmin, r(p)), rmax = std::max(rmax, r(p));
    emin = std::min(emin, p.e), emax = std::max(emax, p.e);
  }
  NodeId arg = kNoNode;
  *best = INFINITY;
  for (const auto& [id, p] : pts) {
    const double s = (rmax > rmin ? (r(p) - rmin) / (rmax - rmin) : 0) +
                     (alpha > 0 && emax > emin ? alpha * (p.e - emin) / (emax - emin) : 0);
    if (s < *best ||
        (s == *best && (p.seq < pts.at(arg).seq || (p.seq == pts.at(arg).seq && id < arg)))) {
      *best = s, arg = id;
    }
  }
  return arg;
}

class RequestRecencyIndexRandom : public ::testing::TestWithParam<int> {};

TEST_P(RequestRecencyIndexRandom, MatchesBruteForce) {
  const int coarse = GetParam();  // 0: continuous efficiencies; > 0: few values (many ties)
  auto rng = marconi::testing::SeededRng(2000 + static_cast<uint64_t>(coarse));
  RequestRecencyIndex index;
  std::map<NodeId, Pt> pts;
  int64_t clock = 0, seq = 0;
  for (int step = 0; step < 6000; ++step) {
    const int op = static_cast<int>(marconi::testing::Uniform(rng, 0, 9));
    const NodeId id = static_cast<NodeId>(marconi::testing::Uniform(rng, 0, 299));
    clock += marconi::testing::Uniform(rng, 0, 1);
    if (op < 5) {
      // Mostly the current clock, sometimes an old one (a node re-offered after a pin, with the
      // clock of its last access): exercises rebuilds below the tree's base.
      const int64_t c = marconi::testing::Uniform(rng, 0, 4) == 0
                            ? marconi::testing::Uniform(rng, 0, clock)
                            : clock;
      const double e = coarse > 0 ? static_cast<double>(marconi::testing::Uniform(rng, 0, coarse))
                                  : std::uniform_real_distribution<double>(0, 1e6)(rng);
      const Pt p{e, c, ++seq};
      index.Set(id, p.e, p.clock, p.seq);
      pts[id] = p;
    } else if (op < 7) {
      index.Erase(id);
      pts.erase(id);
    } else {
      const double alpha = std::vector<double>{
          0, 0.1, 1, 2, 7.5}[static_cast<size_t>(marconi::testing::Uniform(rng, 0, 4))];
      const NodeId got = index.MinScore(alpha, clock);
      ASSERT_EQ(index.size(), static_cast<int64_t>(pts.size()));
      if (pts.empty()) {
        ASSERT_EQ(got, kNoNode);
        continue;
      }
      double best = 0;
      const NodeId want = BruteMin(pts, alpha, clock, &best);
      ASSERT_TRUE(pts.count(got)) << "victim " << got << " is not a candidate";
      // The index's choice scores the minimum (up to rounding) ...
      auto r = [&](const Pt& p) { return 1.0 / static_cast<double>(clock - p.clock + 1); };
      double rmin = INFINITY, rmax = -INFINITY, emin = INFINITY, emax = -INFINITY;
      for (const auto& [k, p] : pts) {
        rmin = std::min(rmin, r(p)), rmax = std::max(rmax, r(p));
        emin = std::min(emin, p.e), emax = std::max(emax, p.e);
      }
      const Pt& g = pts.at(got);
      const double got_score =
          (rmax > rmin ? (r(g) - rmin) / (rmax - rmin) : 0) +
          (alpha > 0 && emax > emin ? alpha * (g.e - emin) / (emax - emin) : 0);
      ASSERT_NEAR(got_score, best, 1e-9) << "step " << step << " alpha " << alpha;
      // ... and with recency alone (exact ties) it is exactly the brute force's: oldest, then seq.
      if (alpha == 0) {
        ASSERT_EQ(got, want) << "step " << step;
      }
    }
    ASSERT_EQ(index.Contains(id), pts.count(id) > 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Values, RequestRecencyIndexRandom, ::testing::Values(0, 3, 40));

}  // namespace
}  // namespace marconi::internal
