#include "policy/request_recency_index.h"

#include <algorithm>
#include <cassert>
#include <limits>

namespace marconi::internal {

RequestRecencyIndex::Key RequestRecencyIndex::Empty() {
  return Key{std::numeric_limits<double>::infinity(), 0, kNoNode};
}

void RequestRecencyIndex::Set(NodeId node, double e, int64_t access_clock, int64_t seq) {
  Erase(node);
  const size_t id = static_cast<size_t>(node);
  if (id >= entry_of_.size()) entry_of_.resize(id + 1);
  entry_of_[id] = Entry{true, e, access_clock, seq};
  by_clock_[access_clock].insert(Key{e, seq, node});
  by_e_.insert(Key{e, seq, node});
  if (access_clock < base_ || access_clock - base_ >= static_cast<int64_t>(leaves_)) {
    Rebuild(access_clock);
  } else {
    Refresh(access_clock);
  }
}

void RequestRecencyIndex::Erase(NodeId node) {
  if (!Contains(node)) return;
  Entry& entry = entry_of_[static_cast<size_t>(node)];
  const Key key{entry.e, entry.seq, node};
  auto bucket = by_clock_.find(entry.access_clock);
  bucket->second.erase(key);
  if (bucket->second.empty()) by_clock_.erase(bucket);
  by_e_.erase(key);
  entry.present = false;
  Refresh(entry.access_clock);
}

bool RequestRecencyIndex::Contains(NodeId node) const {
  const size_t id = static_cast<size_t>(node);
  return node >= 0 && id < entry_of_.size() && entry_of_[id].present;
}

void RequestRecencyIndex::Refresh(int64_t access_clock) {
  size_t v = leaves_ + static_cast<size_t>(access_clock - base_);
  auto bucket = by_clock_.find(access_clock);
  tree_[v] = bucket == by_clock_.end() ? Empty() : *bucket->second.begin();
  for (v /= 2; v >= 1; v /= 2) tree_[v] = std::min(tree_[2 * v], tree_[2 * v + 1]);
}

void RequestRecencyIndex::Rebuild(int64_t also) {
  const int64_t lo = std::min(also, by_clock_.begin()->first);
  const int64_t hi = std::max(also, by_clock_.rbegin()->first);
  base_ = lo;
  // Room for as many clocks again as are live, so that rebuilds are amortised over additions.
  leaves_ = 1;
  while (static_cast<int64_t>(leaves_) < 2 * (hi - lo + 1)) leaves_ *= 2;
  tree_.assign(2 * leaves_, Empty());
  for (const auto& [c, bucket] : by_clock_) {
    tree_[leaves_ + static_cast<size_t>(c - base_)] = *bucket.begin();
  }
  for (size_t v = leaves_ - 1; v >= 1; --v) tree_[v] = std::min(tree_[2 * v], tree_[2 * v + 1]);
}

NodeId RequestRecencyIndex::MinScore(double alpha, int64_t clock) const {
  if (by_e_.empty()) return kNoNode;
  const int64_t c_min = by_clock_.begin()->first, c_max = by_clock_.rbegin()->first;
  assert(c_max <= clock);
  auto recency = [clock](int64_t access_clock) {
    return 1.0 / static_cast<double>(clock - access_clock + 1);
  };
  const double r_min = recency(c_min), dr = recency(c_max) - r_min;
  const double e_min = std::get<0>(*by_e_.begin());
  const double de = std::get<0>(*by_e_.rbegin()) - e_min;
  if (!(alpha > 0 && de > 0)) {
    // Recency alone: the oldest clock, and in it the oldest access (few nodes share a clock: the
    // ones one request touched).
    const std::set<Key>& oldest = by_clock_.begin()->second;
    return std::get<2>(
        *std::min_element(oldest.begin(), oldest.end(), [](const Key& a, const Key& b) {
          return std::tie(std::get<1>(a), std::get<2>(a)) <
                 std::tie(std::get<1>(b), std::get<2>(b));
        }));
  }
  auto r_term = [&](int64_t c) { return dr > 0 ? (recency(c) - r_min) / dr : 0.0; };
  auto e_term = [&](double e) { return alpha * (e - e_min) / de; };
  double best_score = std::numeric_limits<double>::infinity();
  Key best = Empty();
  // Depth-first, better bound first. A range's bound is exact for its least-e candidate at its
  // oldest live clock, so a leaf's bound is its candidate's score.
  auto visit = [&](auto&& self, size_t v, int64_t lo, int64_t width) -> void {
    const Key& k = tree_[v];
    if (std::get<2>(k) == kNoNode) return;
    const double bound = r_term(std::max(lo, c_min)) + e_term(std::get<0>(k));
    if (bound > best_score) return;
    if (width == 1) {
      if (bound < best_score ||
          (bound == best_score && std::tie(std::get<1>(k), std::get<2>(k)) <
                                      std::tie(std::get<1>(best), std::get<2>(best)))) {
        best_score = bound;
        best = k;
      }
      return;
    }
    const int64_t half = width / 2;
    const Key& left = tree_[2 * v];
    const Key& right = tree_[2 * v + 1];
    const bool right_first = std::get<2>(right) != kNoNode &&
                             (std::get<2>(left) == kNoNode ||
                              r_term(lo + half) + e_term(std::get<0>(right)) <
                                  r_term(std::max(lo, c_min)) + e_term(std::get<0>(left)));
    if (right_first) {
      self(self, 2 * v + 1, lo + half, half);
      self(self, 2 * v, lo, half);
    } else {
      self(self, 2 * v, lo, half);
      self(self, 2 * v + 1, lo + half, half);
    }
  };
  visit(visit, 1, base_, static_cast<int64_t>(leaves_));
  return std::get<2>(best);
}

}  // namespace marconi::internal
