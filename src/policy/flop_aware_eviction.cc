#include <cmath>

#include "marconi/policies.h"
#include "policy/hull_index.h"

namespace marconi {
namespace {

class FlopAwareEviction final : public EvictionPolicy {
 public:
  explicit FlopAwareEviction(double alpha) : alpha_(alpha) {}
  std::string_view name() const override { return "flop_aware"; }
  CandidateScope candidate_scope() const override { return CandidateScope::kLeavesAndSingleChild; }
  bool touches_path() const override { return false; }
  void Upsert(const EvictionCandidate& c) override {
    const double efficiency =
        c.bytes_freed > 0 ? c.flops_saved / static_cast<double>(c.bytes_freed) : 0;
    index_.Set(c.node, efficiency, c.last_access);
  }
  void Erase(NodeId node) override { index_.Erase(node); }
  NodeId Victim() override { return index_.MinScore(alpha_); }
  int64_t size() const override { return index_.size(); }
  bool Contains(NodeId node) const override { return index_.Contains(node); }
  Status SetAlpha(double alpha) override {
    if (!std::isfinite(alpha) || alpha < 0) {
      return Status::InvalidArgument("flop_aware eviction: alpha must be finite and >= 0, got " +
                                     std::to_string(alpha));
    }
    alpha_ = alpha;
    return Status::Ok();
  }
  double alpha() const override { return alpha_; }
  std::unique_ptr<EvictionPolicy> Clone() const override {
    return std::make_unique<FlopAwareEviction>(*this);
  }

 private:
  double alpha_;
  internal::HullIndex index_;
};

}  // namespace

Result<std::unique_ptr<EvictionPolicy>> MakeFlopAwareEviction(
    const FlopAwareEvictionConfig& config) {
  auto policy = std::make_unique<FlopAwareEviction>(0.0);
  if (Status s = policy->SetAlpha(config.alpha); !s.ok()) return s;
  return std::unique_ptr<EvictionPolicy>(std::move(policy));
}

}  // namespace marconi
