#include "marconi/policies.h"
#include "policy/ordered_index.h"

namespace marconi {
namespace {

class LruEviction final : public EvictionPolicy {
 public:
  std::string_view name() const override { return "lru"; }
  CandidateScope candidate_scope() const override { return CandidateScope::kLeaves; }
  bool touches_path() const override { return true; }
  void Upsert(const EvictionCandidate& c) override {
    index_.Set(c.node, c.last_access, 0, c.access_seq);
  }
  void Erase(NodeId node) override { index_.Erase(node); }
  NodeId Victim(int64_t) override { return index_.Min(); }
  int64_t size() const override { return index_.size(); }
  bool Contains(NodeId node) const override { return index_.Contains(node); }
  std::unique_ptr<EvictionPolicy> Clone() const override {
    return std::make_unique<LruEviction>(*this);
  }

 private:
  internal::OrderedIndex index_;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLruEviction(const LruEvictionConfig&) {
  return std::make_unique<LruEviction>();
}

}  // namespace marconi
