#include "sim/placement_experiment.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"
#include "sim/replay.h"
#include "sim/svg_plot.h"

namespace marconi::sim {
namespace {

Result<PlacementPoint> Serve(const Trace& trace, const ModelSpec& model,
                             std::unique_ptr<AdmissionPolicy> admission, std::string strategy,
                             int64_t parameter) {
  auto cache = PrefixCache::Create({}, model, std::move(admission), MakeLruEviction());
  if (!cache.ok()) return cache.status();
  if (Status s = ServeTrace(trace, **cache); !s.ok()) return s;
  const CacheStats& st = (*cache)->stats();
  PlacementPoint p;
  p.strategy = std::move(strategy);
  p.parameter = parameter;
  p.requests = st.requests;
  p.input_tokens = st.input_tokens;
  p.saved_tokens = st.hit_tokens;
  p.recomputed_tokens = st.matched_tokens - st.hit_tokens;
  p.checkpoints = st.checkpoints_admitted;
  p.flops_saved = st.flops_saved;
  p.flops_without_cache = st.flops_without_cache;
  return p;
}

}  // namespace

double PlacementPoint::checkpoints_per_request() const {
  return requests > 0 ? static_cast<double>(checkpoints) / static_cast<double>(requests) : 0;
}

double PlacementPoint::saved_fraction() const {
  return input_tokens > 0 ? static_cast<double>(saved_tokens) / static_cast<double>(input_tokens)
                          : 0;
}

Result<std::vector<PlacementPoint>> RunPlacementExperiment(
    const Trace& trace, const ModelSpec& model, const PlacementExperimentOptions& options) {
  if (options.chunk_tokens < 1) return Status::InvalidArgument("chunk must be >= 1 token");
  int64_t longest = options.chunk_tokens;
  for (const auto& r : trace.requests) longest = std::max<int64_t>(longest, r.input.size());
  std::vector<PlacementPoint> points;
  const size_t runs = 1 + 5 * options.budgets.size() + options.block_tokens.size();
  auto run = [&](Result<std::unique_ptr<AdmissionPolicy>> admission, const char* name,
                 int64_t parameter) -> Status {
    if (!admission.ok()) return admission.status();
    auto p = Serve(trace, model, std::move(admission).value(), name, parameter);
    if (!p.ok()) return p.status();
    points.push_back(std::move(p).value());
    if (options.progress) options.progress(points.size(), runs);
    return Status::Ok();
  };
  using Kind = HeuristicPlacementAdmissionConfig::Kind;
  if (Status s = run(MakeLastTokenAdmission(), "last-only", 0); !s.ok()) return s;
  for (int64_t m : options.budgets) {
    SparseAdmissionConfig dp;
    dp.chunk_tokens = options.chunk_tokens;
    dp.max_tokens = (longest / options.chunk_tokens + 1) * options.chunk_tokens;
    dp.budget = m;
    if (options.attention_aware) dp.cost = RecomputeCostOf(model, options.chunk_tokens);
    if (Status s = run(MakeSparseAdmission(dp), "dp", m); !s.ok()) return s;
    dp.relative = true;
    if (Status s = run(MakeSparseAdmission(dp), "dp-relative", m); !s.ok()) return s;
    for (auto [kind, name] : {std::pair{Kind::kBalanced, "balanced"},
                              std::pair{Kind::kSqrt, "sqrt"}, std::pair{Kind::kDyadic, "dyadic"}}) {
      HeuristicPlacementAdmissionConfig h;
      h.kind = kind;
      h.budget = m;
      h.chunk_tokens = options.chunk_tokens;
      if (Status s = run(MakeHeuristicPlacementAdmission(h), name, m); !s.ok()) return s;
    }
  }
  for (int64_t b : options.block_tokens) {
    HeuristicPlacementAdmissionConfig h;
    h.kind = Kind::kBlock;
    h.block_tokens = b;
    if (Status s = run(MakeHeuristicPlacementAdmission(h), "block", b); !s.ok()) return s;
  }
  return points;
}

std::string PlacementCsv(const std::vector<PlacementPoint>& points) {
  std::string out =
      "strategy,parameter,requests,input_tokens,saved_tokens,recomputed_tokens,checkpoints,"
      "checkpoints_per_request,saved_fraction,flops_saved_fraction\n";
  char buf[512];
  for (const auto& p : points) {
    std::snprintf(
        buf, sizeof(buf), "%s,%lld,%lld,%lld,%lld,%lld,%lld,%.6f,%.6f,%.6f\n", p.strategy.c_str(),
        static_cast<long long>(p.parameter), static_cast<long long>(p.requests),
        static_cast<long long>(p.input_tokens), static_cast<long long>(p.saved_tokens),
        static_cast<long long>(p.recomputed_tokens), static_cast<long long>(p.checkpoints),
        p.checkpoints_per_request(), p.saved_fraction(),
        p.flops_without_cache > 0 ? p.flops_saved / p.flops_without_cache : 0.0);
    out += buf;
  }
  return out;
}

std::string PlacementJson(const std::vector<PlacementPoint>& points) {
  std::string out = "[\n";
  char buf[512];
  for (size_t i = 0; i < points.size(); ++i) {
    const auto& p = points[i];
    std::snprintf(
        buf, sizeof(buf),
        "  {\"strategy\": \"%s\", \"parameter\": %lld, \"requests\": %lld, "
        "\"input_tokens\": %lld, \"saved_tokens\": %lld, \"recomputed_tokens\": %lld, "
        "\"checkpoints\": %lld, \"checkpoints_per_request\": %.6f, "
        "\"saved_fraction\": %.6f}%s\n",
        p.strategy.c_str(), static_cast<long long>(p.parameter), static_cast<long long>(p.requests),
        static_cast<long long>(p.input_tokens), static_cast<long long>(p.saved_tokens),
        static_cast<long long>(p.recomputed_tokens), static_cast<long long>(p.checkpoints),
        p.checkpoints_per_request(), p.saved_fraction(), i + 1 < points.size() ? "," : "");
    out += buf;
  }
  return out + "]\n";
}

std::string PlacementSvg(const std::vector<PlacementPoint>& points, const std::string& title) {
  PlotSpec spec;
  spec.title = title;
  spec.x_label = "checkpoints admitted per request (last token included)";
  spec.y_label = "prefill tokens saved (%)";
  std::map<std::string, size_t> index;
  for (const auto& p : points) {
    if (p.strategy == "last-only") continue;
    if (!index.count(p.strategy)) {
      index[p.strategy] = spec.series.size();
      spec.series.push_back({p.strategy, {}});
    }
    spec.series[index[p.strategy]].points.push_back(
        {p.checkpoints_per_request(), 100 * p.saved_fraction()});
  }
  for (auto& s : spec.series) std::sort(s.points.begin(), s.points.end());
  return RenderSvgLinePlot(spec);
}

}  // namespace marconi::sim
