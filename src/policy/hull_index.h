// HullIndex: the minimum of Marconi's normalised utility over a changing set of candidates,
// without rescanning them all for every victim.
//
// Each candidate is a point (e, t): FLOP efficiency and last access. The utility is
//   S = (t - t_min) / (t_max - t_min) + alpha * (e - e_min) / (e_max - e_min)
// with the extrema taken over the current candidates (a constant attribute contributes 0). Since
// both normalisations are affine, argmin S = argmin t + lambda * e with
// lambda = alpha (t_max - t_min) / (e_max - e_min) >= 0, and that minimum lies on the lower
// convex hull of the points. Points live in blocks of at most B, each block sorted by e and
// keeping its lower hull; a query binary-searches every block's hull: O((n / B) log B), and an
// update rebuilds one block: O(B). A block whose lower bound on S (its least t and least e) cannot
// beat the best found so far is skipped. With B = 512 and 100K candidates that is at most ~200
// short searches per victim instead of 100K score evaluations.
#ifndef MARCONI_POLICY_HULL_INDEX_H_
#define MARCONI_POLICY_HULL_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "marconi/types.h"

namespace marconi::internal {

class HullIndex {
 public:
  explicit HullIndex(size_t block_size = 512) : block_size_(block_size) {}

  // Inserts or replaces the point of `node`; `seq` breaks ties of t (smaller first). e and t must
  // be finite.
  void Set(NodeId node, double e, double t, int64_t seq);
  void Erase(NodeId node);
  bool Contains(NodeId node) const;
  int64_t size() const { return size_; }

  // The node of minimum S for `alpha` (ties: smaller t, then smaller seq, then smaller node id,
  // up to floating rounding between near-equal scores), or kNoNode when empty.
  NodeId MinScore(double alpha);

 private:
  struct Point {
    double e = 0;
    double t = 0;
    int64_t seq = 0;
    NodeId node = kNoNode;
    bool operator<(const Point& o) const {
      if (e != o.e) return e < o.e;
      return OlderThan(o);
    }
    // The recency order alone: (t, seq, node).
    bool OlderThan(const Point& o) const {
      if (t != o.t) return t < o.t;
      if (seq != o.seq) return seq < o.seq;
      return node < o.node;
    }
  };
  struct Block {
    std::vector<Point> points;  // sorted by (e, t, seq, node)
    std::vector<Point> hull;    // the lower hull, left to right, up to the lowest point
    Point min_t;                // the point of least (t, seq, node)
    double max_t = 0;           // the greatest t
    bool dirty = false;
    bool open = true;  // listed in open_ (has room)
  };
  void Rebuild(Block& b);

  size_t block_size_;
  std::vector<Block> blocks_;
  std::vector<uint32_t> open_;
  std::vector<int32_t> block_of_;  // by node id; -1 when absent
  std::vector<Point> point_of_;    // by node id
  int64_t size_ = 0;
};

}  // namespace marconi::internal

#endif  // MARCONI_POLICY_HULL_INDEX_H_
