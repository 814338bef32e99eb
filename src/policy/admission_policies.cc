// The built-in admission policies. Each is stateless: a plan depends only on its context.
#include <memory>

#include "marconi/policies.h"
#include "policy/admission_common.h"

namespace marconi {
namespace {

using internal::AppendLastToken;

class JudiciousAdmission final : public AdmissionPolicy {
 public:
  std::string_view name() const override { return "judicious"; }
  void PlanPrefill(const AdmissionContext& ctx, std::vector<int64_t>* positions) const override {
    const int64_t b = ctx.lookup.branch_point;
    if (b > ctx.lookup.reusable_tokens && b <= ctx.input_tokens) positions->push_back(b);
  }
  void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                  std::vector<int64_t>* positions) const override {
    AppendLastToken(ctx, output_tokens, positions);
  }
  std::unique_ptr<AdmissionPolicy> Clone() const override {
    return std::make_unique<JudiciousAdmission>(*this);
  }
};

class BlockAdmission final : public AdmissionPolicy {
 public:
  explicit BlockAdmission(int64_t block) : block_(block) {}
  std::string_view name() const override { return "block"; }
  void PlanPrefill(const AdmissionContext& ctx, std::vector<int64_t>* positions) const override {
    const int64_t first = (ctx.lookup.reusable_tokens / block_ + 1) * block_;
    for (int64_t p = first; p <= ctx.input_tokens; p += block_) positions->push_back(p);
  }
  void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                  std::vector<int64_t>* positions) const override {
    const int64_t first = (ctx.input_tokens / block_ + 1) * block_;
    for (int64_t p = first; p <= ctx.input_tokens + output_tokens; p += block_) {
      positions->push_back(p);
    }
  }
  std::unique_ptr<AdmissionPolicy> Clone() const override {
    return std::make_unique<BlockAdmission>(*this);
  }

 private:
  int64_t block_;
};

class LastTokenAdmission final : public AdmissionPolicy {
 public:
  std::string_view name() const override { return "last"; }
  void PlanPrefill(const AdmissionContext&, std::vector<int64_t>*) const override {}
  void PlanDecode(const AdmissionContext& ctx, int64_t output_tokens,
                  std::vector<int64_t>* positions) const override {
    AppendLastToken(ctx, output_tokens, positions);
  }
  std::unique_ptr<AdmissionPolicy> Clone() const override {
    return std::make_unique<LastTokenAdmission>(*this);
  }
};

}  // namespace

std::unique_ptr<AdmissionPolicy> MakeJudiciousAdmission(const JudiciousAdmissionConfig&) {
  return std::make_unique<JudiciousAdmission>();
}

Result<std::unique_ptr<AdmissionPolicy>> MakeBlockAdmission(const BlockAdmissionConfig& config) {
  if (config.block_size < 1) {
    return Status::InvalidArgument("block admission: block_size must be >= 1, got " +
                                   std::to_string(config.block_size));
  }
  return std::unique_ptr<AdmissionPolicy>(std::make_unique<BlockAdmission>(config.block_size));
}

std::unique_ptr<AdmissionPolicy> MakeLastTokenAdmission(const LastTokenAdmissionConfig&) {
  return std::make_unique<LastTokenAdmission>();
}

Result<std::unique_ptr<AdmissionPolicy>> MakeAdmissionByName(const std::string& name) {
  if (name == "judicious") return MakeJudiciousAdmission();
  if (name == "block") return MakeBlockAdmission({});
  if (name == "last") return MakeLastTokenAdmission();
  if (name == "sparse") return MakeSparseAdmission({});
  return Status::NotFound("unknown admission policy '" + name +
                          "' (admission policies: judicious, block, last, sparse)");
}

Result<std::unique_ptr<EvictionPolicy>> MakeEvictionByName(const std::string& name) {
  if (name == "lru") return MakeLruEviction();
  if (name == "flop_aware") return MakeFlopAwareEviction({});
  if (name == "gdsf") return MakeGdsfEviction();
  return Status::NotFound("unknown eviction policy '" + name +
                          "' (eviction policies: lru, flop_aware, gdsf)");
}

}  // namespace marconi
