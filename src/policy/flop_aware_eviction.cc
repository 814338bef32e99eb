#include <cmath>
#include <string>

#include "marconi/policies.h"
#include "policy/hull_index.h"
#include "policy/request_recency_index.h"

namespace marconi {
namespace {

class FlopAwareEviction final : public EvictionPolicy {
 public:
  explicit FlopAwareEviction(FlopAwareEvictionConfig::Recency recency) : recency_(recency) {}
  std::string_view name() const override { return "flop_aware"; }
  CandidateScope candidate_scope() const override { return CandidateScope::kLeavesAndSingleChild; }
  bool touches_path() const override { return false; }
  void Upsert(const EvictionCandidate& c) override {
    const double efficiency =
        c.bytes_freed > 0 ? c.flops_saved / static_cast<double>(c.bytes_freed) : 0;
    if (by_requests()) {
      requests_.Set(c.node, efficiency, c.access_clock, c.access_seq);
    } else {
      time_.Set(c.node, efficiency, c.last_access, c.access_seq);
    }
  }
  void Erase(NodeId node) override {
    if (by_requests()) {
      requests_.Erase(node);
    } else {
      time_.Erase(node);
    }
  }
  NodeId Victim(int64_t clock) override {
    return by_requests() ? requests_.MinScore(alpha_, clock) : time_.MinScore(alpha_);
  }
  int64_t size() const override { return by_requests() ? requests_.size() : time_.size(); }
  bool Contains(NodeId node) const override {
    return by_requests() ? requests_.Contains(node) : time_.Contains(node);
  }
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
  bool by_requests() const {
    return recency_ == FlopAwareEvictionConfig::Recency::kInverseRequests;
  }
  FlopAwareEvictionConfig::Recency recency_;
  double alpha_ = 0;
  internal::HullIndex time_;                // kLinearTime
  internal::RequestRecencyIndex requests_;  // kInverseRequests
};

}  // namespace

Result<std::unique_ptr<EvictionPolicy>> MakeFlopAwareEviction(
    const FlopAwareEvictionConfig& config) {
  if (config.recency != FlopAwareEvictionConfig::Recency::kInverseRequests &&
      config.recency != FlopAwareEvictionConfig::Recency::kLinearTime) {
    return Status::InvalidArgument("flop_aware eviction: unknown recency");
  }
  auto policy = std::make_unique<FlopAwareEviction>(config.recency);
  if (Status s = policy->SetAlpha(config.alpha); !s.ok()) return s;
  return std::unique_ptr<EvictionPolicy>(std::move(policy));
}

Result<FlopAwareEvictionConfig::Recency> ParseRecency(std::string_view name) {
  using Recency = FlopAwareEvictionConfig::Recency;
  for (Recency r : {Recency::kInverseRequests, Recency::kLinearTime}) {
    if (name == RecencyName(r)) return r;
  }
  return Status::InvalidArgument("unknown recency '" + std::string(name) +
                                 "' (choose inverse-requests or linear-time)");
}

std::string_view RecencyName(FlopAwareEvictionConfig::Recency recency) {
  return recency == FlopAwareEvictionConfig::Recency::kLinearTime ? "linear-time"
                                                                  : "inverse-requests";
}

}  // namespace marconi
