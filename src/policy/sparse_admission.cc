// Admission by sparse placement: adaptive (SolvePlacement over observed overlap depths) or
// heuristic (the baselines). Both checkpoint every planned position the prefill passes, beyond the
// point it resumed from.
#include <algorithm>
#include <cmath>
#include <memory>

#include "marconi/policies.h"
#include "policy/admission_common.h"

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
  if (last_token) internal::AppendLastToken(ctx, output_tokens, positions);
}

class HeuristicPlacementAdmission final : public AdmissionPolicy {
 public:
  using Kind = HeuristicPlacementAdmissionConfig::Kind;
  explicit HeuristicPlacementAdmission(const HeuristicPlacementAdmissionConfig& config)
      : config_(config) {}
  std::string_view name() const override { return "heuristic_placement"; }
  void PlanPrefill(const AdmissionContext& ctx, std::vector<int64_t>* positions) const override {
    const int64_t chunk = config_.chunk_tokens;
    const int64_t n = ctx.input_tokens / chunk;
    std::vector<int64_t> bins;
    switch (config_.kind) {
      case Kind::kBlock:
        bins = BlockPlacement(ctx.input_tokens, config_.block_tokens);
        break;
      case Kind::kBalanced:
        bins = BalancedPlacement(n, config_.budget);
        break;
      case Kind::kSqrt:
        bins = SqrtPlacement(n, config_.budget);
        break;
      case Kind::kDyadic:
        bins = DyadicPlacement(n, config_.budget);
        break;
    }
    const int64_t scale = config_.kind == Kind::kBlock ? 1 : chunk;
    for (int64_t& b : bins) b *= scale;
    AppendPlanned(bins, ctx, positions);
  }
  void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                  std::vector<int64_t>* positions) const override {
    AppendLast(config_.last_token, ctx, output_tokens, positions);
  }
  std::unique_ptr<AdmissionPolicy> Clone() const override {
    return std::make_unique<HeuristicPlacementAdmission>(*this);
  }

 private:
  HeuristicPlacementAdmissionConfig config_;
};

class SparseAdmission final : public AdmissionPolicy {
 public:
  explicit SparseAdmission(const SparseAdmissionConfig& config)
      : config_(config),
        histogram_(config.relative ? config.relative_bins : config.max_tokens / config.chunk_tokens,
                   config.relative ? 1 : config.chunk_tokens, config.decay) {
    bins_ = BalancedPlacement(histogram_.num_bins(), config_.budget);
  }
  std::string_view name() const override { return "sparse"; }
  void Observe(const AdmissionContext& ctx) override {
    if (config_.relative) {
      // The bin of matched / input: at most relative_bins (the whole input matched).
      histogram_.Observe(ctx.lookup.matched_tokens * config_.relative_bins /
                         std::max<int64_t>(ctx.input_tokens, 1));
    } else {
      histogram_.Observe(ctx.lookup.matched_tokens);
    }
    const int64_t seen = histogram_.observations();
    if (seen >= config_.min_observations && seen % config_.resolve_every == 0) {
      const auto weights = histogram_.Weights();
      Result<Placement> best = SolvePlacement(weights, config_.budget, config_.cost);
      if (best.ok()) bins_ = std::move(best->positions);  // inputs validated at creation
    }
  }
  void PlanPrefill(const AdmissionContext& ctx, std::vector<int64_t>* positions) const override {
    // Bin b is token b x chunk (absolute), or b / bins of this input down to a chunk boundary
    // (relative, where neighbouring bins may land on the same boundary).
    std::vector<int64_t> planned;
    const int64_t chunk = config_.chunk_tokens;
    for (int64_t b : bins_) {
      const int64_t p = config_.relative
                            ? b * ctx.input_tokens / config_.relative_bins / chunk * chunk
                            : b * chunk;
      if (p > 0 && (planned.empty() || p > planned.back())) planned.push_back(p);
    }
    AppendPlanned(planned, ctx, positions);
  }
  void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                  std::vector<int64_t>* positions) const override {
    AppendLast(config_.last_token, ctx, output_tokens, positions);
  }
  std::unique_ptr<AdmissionPolicy> Clone() const override {
    return std::make_unique<SparseAdmission>(*this);
  }

 private:
  SparseAdmissionConfig config_;
  OverlapHistogram histogram_;
  std::vector<int64_t> bins_;  // the current placement, in histogram bins
};

}  // namespace

Result<std::unique_ptr<AdmissionPolicy>> MakeSparseAdmission(const SparseAdmissionConfig& c) {
  const bool ok = c.chunk_tokens >= 1 && c.max_tokens >= c.chunk_tokens && c.budget >= 0 &&
                  c.decay > 0 && c.decay <= 1 && c.resolve_every >= 1 && c.min_observations >= 0 &&
                  c.relative_bins >= 1 && c.cost.linear >= 0 && c.cost.quadratic >= 0 &&
                  c.cost.linear + c.cost.quadratic > 0 &&
                  std::isfinite(c.cost.linear + c.cost.quadratic);
  if (!ok) {
    return Status::InvalidArgument(
        "sparse admission: need chunk_tokens >= 1, max_tokens >= chunk_tokens, budget >= 0, "
        "decay in (0, 1], resolve_every >= 1, min_observations >= 0, relative_bins >= 1 and "
        "non-negative cost coefficients, not both 0");
  }
  return std::unique_ptr<AdmissionPolicy>(std::make_unique<SparseAdmission>(c));
}

Result<std::unique_ptr<AdmissionPolicy>> MakeHeuristicPlacementAdmission(
    const HeuristicPlacementAdmissionConfig& config) {
  if (config.budget < 0 || config.block_tokens < 1 || config.chunk_tokens < 1) {
    return Status::InvalidArgument(
        "heuristic placement: need budget >= 0, block_tokens >= 1 and chunk_tokens >= 1");
  }
  return std::unique_ptr<AdmissionPolicy>(std::make_unique<HeuristicPlacementAdmission>(config));
}

}  // namespace marconi
