// OrderedIndex: candidates ordered by a (key, tie) pair with O(log n) update and min. Shared by
// the policies whose priority is a single number (LRU, GDSF).
#ifndef MARCONI_POLICY_ORDERED_INDEX_H_
#define MARCONI_POLICY_ORDERED_INDEX_H_

#include <cstdint>
#include <set>
#include <tuple>
#include <unordered_map>

#include "marconi/types.h"

namespace marconi::internal {

class OrderedIndex {
 public:
  // Sets the priority of `node` (inserting it if absent). Lower is evicted first; equal keys go
  // by `tie` (lower first), then by `seq` (the access sequence number: older first), then by node
  // id.
  void Set(NodeId node, double key, double tie, int64_t seq) {
    Erase(node);
    const Entry e{key, tie, seq, node};
    order_.insert(e);
    where_.emplace(node, e);
  }
  void Erase(NodeId node) {
    auto it = where_.find(node);
    if (it == where_.end()) return;
    order_.erase(it->second);
    where_.erase(it);
  }
  // The key `node` was last Set with; 0 when absent.
  double KeyOf(NodeId node) const {
    auto it = where_.find(node);
    return it == where_.end() ? 0.0 : std::get<0>(it->second);
  }
  NodeId Min() const { return order_.empty() ? kNoNode : std::get<3>(*order_.begin()); }
  int64_t size() const { return static_cast<int64_t>(where_.size()); }
  bool Contains(NodeId node) const { return where_.count(node) > 0; }

 private:
  using Entry = std::tuple<double, double, int64_t, NodeId>;
  std::set<Entry> order_;
  std::unordered_map<NodeId, Entry> where_;
};

}  // namespace marconi::internal

#endif  // MARCONI_POLICY_ORDERED_INDEX_H_
