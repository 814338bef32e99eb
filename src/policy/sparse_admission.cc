// Admission by sparse placement: adaptive (SolvePlacement over observed overlap depths) or fixed
// (the baselines). Both checkpoint every planned position the prefill passes, beyond the point it
// resumed from.
#include <algorithm>
#include <cmath>
#include <memory>

#include "marconi/policies.h"

namespace marconi {
namespace {

void AppendPlanned(const std::vector<int64_t>& planned, const AdmissionContext& ctx,
                   std::vector<int64_t>* positions) {
  for (int64_t p : planned) {
    if (p > ctx.lookup.reusable_tokens && p <= ctx.input_tokens) positions->push_back(p);
  }
}

void AppendLast(bool last_token, const AdmissionContext& ctx, int64_t output_tokens,
                std::vector<int64_t>* positions) {
  if (last_token) positions->push_back(ctx.input_tokens + output_tokens);
}

class FixedPlacementAdmission final : public AdmissionPolicy {
 public:
  explicit FixedPlacementAdmission(FixedPlacementAdmissionConfig config)
      : config_(std::move(config)) {}
  std::string_view name() const override { return "fixed_placement"; }
  void PlanPrefill(const AdmissionContext& ctx, std::vector<int64_t>* positions) const override {
    AppendPlanned(config_.positions, ctx, positions);
  }
  void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                  std::vector<int64_t>* positions) const override {
    AppendLast(config_.last_token, ctx, output_tokens, positions);
  }
  std::unique_ptr<AdmissionPolicy> Clone() const override {
    return std::make_unique<FixedPlacementAdmission>(*this);
  }

 private:
  FixedPlacementAdmissionConfig config_;
};

class SparseAdmission final : public AdmissionPolicy {
 public:
  explicit SparseAdmission(const SparseAdmissionConfig& config)
      : config_(config),
        histogram_(config.max_tokens / config.chunk_tokens, config.chunk_tokens, config.decay) {
    SetPlacement(BalancedPlacement(histogram_.num_bins(), config_.budget));
  }
  std::string_view name() const override { return "sparse"; }
  void Observe(const AdmissionContext& ctx) override {
    histogram_.Observe(ctx.lookup.matched_tokens);
    const int64_t seen = histogram_.observations();
    if (seen >= config_.min_observations && seen % config_.resolve_every == 0) {
      const auto weights = histogram_.Weights();
      Result<Placement> best = SolvePlacement(weights, config_.budget, config_.cost);
      if (best.ok()) SetPlacement(best->positions);  // inputs validated at creation
    }
  }
  void PlanPrefill(const AdmissionContext& ctx, std::vector<int64_t>* positions) const override {
    AppendPlanned(planned_, ctx, positions);
  }
  void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                  std::vector<int64_t>* positions) const override {
    AppendLast(config_.last_token, ctx, output_tokens, positions);
  }
  std::unique_ptr<AdmissionPolicy> Clone() const override {
    return std::make_unique<SparseAdmission>(*this);
  }

 private:
  void SetPlacement(const std::vector<int64_t>& bins) {
    planned_.clear();
    for (int64_t b : bins) planned_.push_back(b * config_.chunk_tokens);
  }

  SparseAdmissionConfig config_;
  OverlapHistogram histogram_;
  std::vector<int64_t> planned_;  // token positions of the current placement
};

}  // namespace

Result<std::unique_ptr<AdmissionPolicy>> MakeSparseAdmission(const SparseAdmissionConfig& c) {
  const bool ok = c.chunk_tokens >= 1 && c.max_tokens >= c.chunk_tokens && c.budget >= 0 &&
                  c.decay > 0 && c.decay <= 1 && c.resolve_every >= 1 && c.min_observations >= 0 &&
                  c.cost.linear >= 0 && c.cost.quadratic >= 0 &&
                  c.cost.linear + c.cost.quadratic > 0 &&
                  std::isfinite(c.cost.linear + c.cost.quadratic);
  if (!ok) {
    return Status::InvalidArgument(
        "sparse admission: need chunk_tokens >= 1, max_tokens >= chunk_tokens, budget >= 0, "
        "decay in (0, 1], resolve_every >= 1, min_observations >= 0 and non-negative cost "
        "coefficients, not both 0");
  }
  return std::unique_ptr<AdmissionPolicy>(std::make_unique<SparseAdmission>(c));
}

Result<std::unique_ptr<AdmissionPolicy>> MakeFixedPlacementAdmission(
    const FixedPlacementAdmissionConfig& config) {
  for (size_t i = 0; i < config.positions.size(); ++i) {
    if (config.positions[i] < 1 || (i > 0 && config.positions[i] <= config.positions[i - 1])) {
      return Status::InvalidArgument("fixed placement: positions must be >= 1 and increasing (at " +
                                     std::to_string(i) + ")");
    }
  }
  return std::unique_ptr<AdmissionPolicy>(std::make_unique<FixedPlacementAdmission>(config));
}

}  // namespace marconi
