#include <algorithm>

#include "marconi/policies.h"
#include "policy/ordered_index.h"

namespace marconi {
namespace {

class GdsfEviction final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "gdsf"; }
  CandidateScope candidate_scope() const override { return CandidateScope::kLeavesAndSingleChild; }
  bool touches_path() const override { return false; }
  void Upsert(const EvictionCandidate& c) override {
    const double value = c.bytes_freed > 0 ? c.flops_saved / static_cast<double>(c.bytes_freed) : 0;
    index_.Set(c.node, clock_ + static_cast<double>(1 + c.hits) * value, c.last_access,
               c.access_seq);
  }
  void Erase(NodeId node) override { index_.Erase(node); }
  NodeId Victim(int64_t) override { return index_.Min(); }
  void OnEvicted(const EvictionCandidate& c) override {
    // Inflate the clock to the victim's priority, so that entries not used since age out.
    clock_ = std::max(clock_, index_.KeyOf(c.node));
  }
  int64_t size() const override { return index_.size(); }
  bool Contains(NodeId node) const override { return index_.Contains(node); }
  std::unique_ptr<EvictionPolicy> Clone() const override {
    return std::make_unique<GdsfEviction>(*this);
  }

 private:
  internal::OrderedIndex index_;
  double clock_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeGdsfEviction(const GdsfEvictionConfig&) {
  return std::make_unique<GdsfEviction>();
}

}  // namespace marconi
