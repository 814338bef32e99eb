#include "sim/placement_experiment.h"

#include <gtest/gtest.h>

#include <map>

#include "sim/synthetic.h"

namespace marconi::sim {
namespace {

TEST(PlacementExperiment, DistributionAwarePlacementDominatesAtSmallBudgets) {
  const Trace trace = SyntheticDocQa(10, 3);
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  PlacementExperimentOptions options;
  options.budgets = {1, 2};
  auto points = RunPlacementExperiment(trace, model, options);
  ASSERT_TRUE(points.ok()) << points.status().ToString();
  std::map<std::pair<std::string, int64_t>, PlacementPoint> by;
  for (const auto& p : *points) by[{p.strategy, p.parameter}] = p;
  const PlacementPoint& none = by.at({"last-only", 0});
  EXPECT_EQ(none.saved_tokens, 0);  // no question repeats a whole earlier request
  for (int64_t m : {1, 2}) {
    const PlacementPoint& dp = by.at({"dp-relative", m});
    for (const char* baseline : {"balanced", "sqrt", "dyadic"}) {
      const PlacementPoint& b = by.at({baseline, m});
      EXPECT_GT(dp.saved_fraction(), b.saved_fraction()) << baseline << " M=" << m;
    }
    EXPECT_LE(dp.checkpoints_per_request(), 1.0 + static_cast<double>(m));
  }
  for (const auto& p : *points) {
    EXPECT_EQ(p.requests, static_cast<int64_t>(trace.requests.size()));
    EXPECT_LE(p.saved_tokens + p.recomputed_tokens, p.input_tokens);
  }
}

TEST(PlacementExperiment, OutputsAreWellFormedAndDeterministic) {
  const Trace trace = SyntheticDocQa(3, 4);
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  PlacementExperimentOptions options;
  options.budgets = {1, 4};
  options.block_tokens = {1024};
  options.attention_aware = true;
  auto a = RunPlacementExperiment(trace, model, options);
  auto b = RunPlacementExperiment(trace, model, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(PlacementCsv(*a), PlacementCsv(*b));
  EXPECT_EQ(PlacementSvg(*a, "t"), PlacementSvg(*b, "t"));
  const std::string csv = PlacementCsv(*a);
  EXPECT_EQ(csv.rfind("strategy,parameter,requests,", 0), 0u);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 1 + 2 * 5 + 1);
  const std::string svg = PlacementSvg(*a, "t");
  EXPECT_NE(svg.find("<svg"), std::string::npos);
  EXPECT_NE(svg.find("dp-relative"), std::string::npos);
  EXPECT_EQ(PlacementJson(*a).front(), '[');
}

}  // namespace
}  // namespace marconi::sim
