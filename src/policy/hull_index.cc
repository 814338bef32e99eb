#include "policy/hull_index.h"

#include <algorithm>
#include <limits>

namespace marconi::internal {

void HullIndex::Set(NodeId node, double e, double t, int64_t seq) {
  Erase(node);
  const size_t id = static_cast<size_t>(node);
  if (id >= block_of_.size()) {
    block_of_.resize(id + 1, -1);
    point_of_.resize(id + 1);
  }
  while (!open_.empty() && blocks_[open_.back()].points.size() >= block_size_) {
    blocks_[open_.back()].open = false;
    open_.pop_back();
  }
  if (open_.empty()) {
    open_.push_back(static_cast<uint32_t>(blocks_.size()));
    blocks_.emplace_back();
  }
  const uint32_t bi = open_.back();
  Block& b = blocks_[bi];
  const Point p{e, t, seq, node};
  b.points.insert(std::lower_bound(b.points.begin(), b.points.end(), p), p);
  b.dirty = true;
  block_of_[id] = static_cast<int32_t>(bi);
  point_of_[id] = p;
  ++size_;
}

void HullIndex::Erase(NodeId node) {
  if (!Contains(node)) return;
  const size_t id = static_cast<size_t>(node);
  Block& b = blocks_[static_cast<size_t>(block_of_[id])];
  auto it = std::lower_bound(b.points.begin(), b.points.end(), point_of_[id]);
  b.points.erase(it);
  b.dirty = true;
  if (!b.open) {
    b.open = true;
    open_.push_back(static_cast<uint32_t>(block_of_[id]));
  }
  block_of_[id] = -1;
  --size_;
}

bool HullIndex::Contains(NodeId node) const {
  const size_t id = static_cast<size_t>(node);
  return node >= 0 && id < block_of_.size() && block_of_[id] >= 0;
}

void HullIndex::Rebuild(Block& b) {
  b.dirty = false;
  b.hull.clear();
  if (b.points.empty()) return;
  b.min_t = b.points[0];
  b.max_t = b.points[0].t;
  for (const Point& p : b.points) {
    if (p.OlderThan(b.min_t)) b.min_t = p;
    b.max_t = std::max(b.max_t, p.t);
  }
  // Andrew's monotone chain, lower hull; stops at the lowest point: for lambda >= 0 the minimum
  // of t + lambda e never lies to its right.
  for (const Point& c : b.points) {
    while (b.hull.size() >= 2) {
      const Point& o = b.hull[b.hull.size() - 2];
      const Point& a = b.hull.back();
      const double cross = (a.e - o.e) * (c.t - o.t) - (a.t - o.t) * (c.e - o.e);
      if (cross > 0) break;
      b.hull.pop_back();
    }
    if (b.hull.empty() || c.e != b.hull.back().e) b.hull.push_back(c);
    if (c.node == b.min_t.node) break;
  }
}

NodeId HullIndex::MinScore(double alpha) {
  if (size_ == 0) return kNoNode;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double t_min = kInf, t_max = -kInf, e_min = kInf, e_max = -kInf;
  for (Block& b : blocks_) {
    if (b.dirty) Rebuild(b);
    if (b.points.empty()) continue;
    e_min = std::min(e_min, b.points.front().e);
    e_max = std::max(e_max, b.points.back().e);
    t_min = std::min(t_min, b.min_t.t);
    t_max = std::max(t_max, b.max_t);
  }
  const double dt = t_max - t_min, de = e_max - e_min;
  const bool use_e = alpha > 0 && de > 0;
  auto score = [&](const Point& p) {
    return (dt > 0 ? (p.t - t_min) / dt : 0.0) + (use_e ? alpha * (p.e - e_min) / de : 0.0);
  };
  auto better = [&](const Point& a, double sa, const Point& b, double sb) {
    if (sa != sb) return sa < sb;
    return a.OlderThan(b);
  };
  Point best;
  double best_score = kInf;
  bool have = false;
  for (const Block& b : blocks_) {
    if (b.points.empty()) continue;
    // No point of the block scores below its least t combined with its least e.
    const Point bound{b.points.front().e, b.min_t.t, 0, kNoNode};
    if (have && score(bound) > best_score) continue;
    if (!use_e) {
      // Recency alone: the oldest point (ties by seq, then node id).
      const double s = score(b.min_t);
      if (!have || better(b.min_t, s, best, best_score))
        best = b.min_t, best_score = s, have = true;
      continue;
    }
    // dt == 0 makes lambda 0 only in the e term's favour: minimise e alone (hull[0]).
    const double lambda = dt > 0 ? alpha * dt / de : kInf;
    size_t lo = 0, hi = b.hull.size() - 1;  // first i with key(i) <= key(i + 1)
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      const Point& p = b.hull[mid];
      const Point& q = b.hull[mid + 1];
      const bool rising = lambda == kInf ? q.e >= p.e : (q.t - p.t) + lambda * (q.e - p.e) >= 0;
      if (rising) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    // Rounding can misplace the minimum by one vertex: settle it with the exact score.
    for (size_t i = lo > 0 ? lo - 1 : 0; i <= std::min(lo + 1, b.hull.size() - 1); ++i) {
      const Point& p = b.hull[i];
      const double s = score(p);
      if (!have || better(p, s, best, best_score)) best = p, best_score = s, have = true;
    }
  }
  return best.node;
}

}  // namespace marconi::internal
