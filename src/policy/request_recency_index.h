// RequestRecencyIndex: the minimum of Marconi's normalised utility when recency is measured as
// the authors' simulator measures it, r = 1 / (clock - access_clock + 1) on a logical clock that
// ticks once per request, min-max normalised over the candidates together with FLOP efficiency:
//   S = (r - r_min) / (r_max - r_min) + alpha * (e - e_min) / (e_max - e_min).
// r is not affine in the access time and changes with the clock, so the hull of HullIndex does
// not apply. But r depends only on access_clock and grows with it, and within one clock the least
// e wins. A segment tree over the clocks keeps the least e of every clock range; a query descends
// it best-bound first, bounding a range by the r of its oldest clock plus its least e, and prunes
// every range that cannot beat the best candidate found. In practice a handful of root-to-leaf
// paths: the winner is either old (r ~ 0, where e decides) or efficient enough to beat that.
// Updates are O(log n + log C) for C the span of live clocks; the tree is rebuilt over the live
// span when a clock falls outside it (amortised, as clocks only grow).
#ifndef MARCONI_POLICY_REQUEST_RECENCY_INDEX_H_
#define MARCONI_POLICY_REQUEST_RECENCY_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "marconi/types.h"

namespace marconi::internal {

class RequestRecencyIndex {
 public:
  // Inserts or replaces the point of `node`: FLOP efficiency e (finite), the logical clock of its
  // last access and its access sequence number (ties: smaller first).
  void Set(NodeId node, double e, int64_t access_clock, int64_t seq);
  void Erase(NodeId node);
  bool Contains(NodeId node) const;
  int64_t size() const { return static_cast<int64_t>(by_e_.size()); }

  // The node of minimum S for `alpha` at logical time `clock` (>= every access_clock); ties: the
  // older access (seq), then the smaller node id. kNoNode when empty.
  NodeId MinScore(double alpha, int64_t clock) const;

 private:
  using Key = std::tuple<double, int64_t, NodeId>;  // (e, seq, node): least e, then older
  struct Entry {
    bool present = false;
    double e = 0;
    int64_t access_clock = 0;
    int64_t seq = 0;
  };
  static Key Empty();
  // Brings the tree leaf of `access_clock` (and its ancestors) up to date with its bucket.
  void Refresh(int64_t access_clock);
  // Rebuilds the tree over the live clocks and `also` (a clock about to be added).
  void Rebuild(int64_t also);

  std::map<int64_t, std::set<Key>> by_clock_;  // access_clock -> its candidates
  std::set<Key> by_e_;                         // every candidate, for e's extremes
  std::vector<Entry> entry_of_;                // by node id
  int64_t base_ = 0;                           // the clock of leaf 0
  size_t leaves_ = 0;                          // a power of two (0: no tree yet)
  std::vector<Key> tree_;                      // 1-based heap: min Key of each clock range
};

}  // namespace marconi::internal

#endif  // MARCONI_POLICY_REQUEST_RECENCY_INDEX_H_
