// Device profiles (sim/serving/device_profile.h): the fit recovers the fractions and overhead that
// made a set of steps, with and without noise; profiles parse; bad ones are refused saying what
// and where.
#include "sim/serving/device_profile.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "sim/serving/step_time.h"

namespace marconi::sim::serving {
namespace {

// Steps of both kinds: prefill chunks (compute-bound) and decode batches (bandwidth-bound), with
// durations from `truth`'s step time model, times (1 + noise x a uniform draw in [-1, 1]).
std::vector<MeasuredStep> StepsOf(const ModelSpec& model, const DeviceSpec& truth, double noise,
                                  uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  const StepTimeModel time(model, truth);
  std::vector<MeasuredStep> steps;
  for (int64_t tokens : {256, 1024, 4096, 8192}) {
    for (int64_t context : {0, 2000, 16000}) {
      steps.push_back({{{context, tokens}}, 0, 0, 0});
    }
  }
  for (int64_t batch : {1, 8, 64, 256}) {
    for (int64_t context : {500, 8000}) {
      MeasuredStep s;
      for (int64_t i = 0; i < batch; ++i) s.batch.emplace_back(context + i, 1);
      steps.push_back(s);
    }
  }
  for (MeasuredStep& s : steps) {
    StepCost cost;
    for (const auto& [context, tokens] : s.batch) time.Add(context, tokens, &cost);
    s.seconds = time.Seconds(cost) * (1 + noise * u(rng));
  }
  return steps;
}

TEST(DeviceProfile, FitRecoversTheDeviceThatMadeTheSteps) {
  const ModelSpec model = ModelSpec::Preset("nemotron-h-8b").value();
  DeviceSpec truth = DevicePreset("A100-40GB").value();
  truth.flops_efficiency = 0.42;
  truth.bandwidth_efficiency = 0.73;
  truth.step_overhead_s = 0.0031;
  DeviceSpec fitted = DevicePreset("A100-40GB").value();
  auto fit = FitDevice(model, StepsOf(model, truth, 0, 1), &fitted);
  ASSERT_TRUE(fit.ok()) << fit.status().ToString();
  EXPECT_EQ(fit->steps, 20);
  EXPECT_NEAR(fitted.flops_efficiency, 0.42, 0.42 * 0.01);
  EXPECT_NEAR(fitted.bandwidth_efficiency, 0.73, 0.73 * 0.01);
  EXPECT_NEAR(fitted.step_overhead_s, 0.0031, 0.0031 * 0.02);
  EXPECT_LT(fit->rms_relative_error, 0.005);
}

TEST(DeviceProfile, FitWithNoiseStaysCloseAndReportsTheError) {
  const uint64_t seed = 17;
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  DeviceSpec truth = DevicePreset("H100-80GB").value();
  truth.flops_efficiency = 0.55;
  truth.bandwidth_efficiency = 0.85;
  truth.step_overhead_s = 0.002;
  DeviceSpec fitted = DevicePreset("H100-80GB").value();
  auto fit = FitDevice(model, StepsOf(model, truth, 0.03, seed), &fitted);
  ASSERT_TRUE(fit.ok());
  EXPECT_NEAR(fitted.flops_efficiency, 0.55, 0.55 * 0.06);
  EXPECT_NEAR(fitted.bandwidth_efficiency, 0.85, 0.85 * 0.06);
  EXPECT_GT(fit->rms_relative_error, 0.003);  // the noise shows
  EXPECT_LT(fit->rms_relative_error, 0.03);
  EXPECT_LE(fit->rms_relative_error, fit->max_relative_error);
}

TEST(DeviceProfile, ParsesFractionsStepsAndMeasuredCosts) {
  auto given = ParseDeviceProfile(R"({"name": "lab-a100", "base": "A100-40GB",
      "flops_efficiency": 0.5, "bandwidth_efficiency": 0.7, "step_overhead_s": 0.004,
      "memory_utilization": 0.85})",
                                  "given.json");
  ASSERT_TRUE(given.ok()) << given.status().ToString();
  EXPECT_EQ(given->device.name, "lab-a100");
  EXPECT_EQ(given->device.peak_flops, 312e12);
  EXPECT_EQ(given->device.flops_efficiency, 0.5);
  EXPECT_EQ(given->device.step_overhead_s, 0.004);
  EXPECT_EQ(given->device.memory_utilization, 0.85);
  EXPECT_EQ(given->fit.steps, 0);

  // Steps given as FLOPs and bytes, made at 40% of 100 TFLOP/s and 50% of 1 TB/s plus 1 ms.
  std::string steps;
  for (int i = 0; i < 6; ++i) {
    const double flops = 1e11 * (i + 1) * (i % 2 ? 40 : 1), bytes = 2e9 * (i + 1);
    const double seconds = 0.001 + std::max(flops / 40e12, bytes / 500e9);
    steps += std::string(i ? "," : "") + "{\"flops\": " + std::to_string(flops) +
             ", \"bytes\": " + std::to_string(bytes) + ", \"seconds\": " + std::to_string(seconds) +
             "}";
  }
  auto measured = ParseDeviceProfile(
      R"({"name": "box", "peak_flops": 100e12, "hbm_bandwidth": 1e12, "hbm_bytes": 24e9,
          "steps": [)" +
          steps + "]}",
      "measured.json");
  ASSERT_TRUE(measured.ok()) << measured.status().ToString();
  EXPECT_NEAR(measured->device.flops_efficiency, 0.4, 0.004);
  EXPECT_NEAR(measured->device.bandwidth_efficiency, 0.5, 0.005);
  EXPECT_NEAR(measured->device.step_overhead_s, 0.001, 0.00005);
  EXPECT_EQ(measured->fit.steps, 6);
  EXPECT_EQ(measured->device.hbm_bytes, int64_t{24} * 1000 * 1000 * 1000);
}

// Each bad profile is refused with a message naming the source and where or what.
TEST(DeviceProfile, BadProfilesSayWhatAndWhere) {
  const std::pair<const char*, const char*> cases[] = {
      {"{\"name\": \"x\",\n \"base\": \"A100-40GB\",\n \"peak_flops\": ,}", "p.json:3:"},
      {R"({"name": "x", "base": "A100-40GB", "flops_eficiency": 0.5})",
       "unknown field 'flops_eficiency'"},
      {R"({"name": "x", "base": "V100"})", "field 'base': unknown device 'V100'"},
      {R"({"name": "x", "peak_flops": 1e12})", "field 'hbm_bandwidth' is required"},
      {R"({"name": "x", "base": "H200", "flops_efficiency": 1.5})", "must be in (0, 1]"},
      {R"({"name": "x", "base": "H200", "step_overhead_s": -1})", "step overhead must be >= 0"},
      {R"({"base": "H200"})", "field 'name' must be a non-empty string"},
      {R"({"name": "x", "base": "H200", "model": "paper-7b", "steps": [
          {"batch": [[0, 10]], "seconds": 0.1}, {"batch": [[0, 10]], "seconds": -2},
          {"batch": [[0, 10]], "seconds": 0.1}]})",
       "field 'steps[1].seconds' must be > 0"},
      {R"({"name": "x", "base": "H200", "model": "paper-7b", "steps": [
          {"batch": [[0, 10]], "seconds": 0.1}, {"batch": [[5, 0]], "seconds": 0.2}]})",
       "field 'steps[1].batch[0][1]' must be in [1, 2147483648], got 0"},
      {R"({"name": "x", "base": "H200", "model": "paper-7b", "steps": [
          {"batch": [[4611686018427387904, 10]], "seconds": 0.1}]})",
       "field 'steps[0].batch[0][0]' must be in [0, 2147483648]"},
      {R"({"name": "x", "base": "H200", "steps": [{"batch": [[0, 10]], "seconds": 0.1}]})",
       "field 'model' must name the model"},
      {R"({"name": "x", "base": "H200", "model": "paper-7b", "steps": [
          {"batch": [[0, 10]], "seconds": 0.1}]})",
       "at least 3 measured steps"},
      {R"({"name": "x", "base": "H200", "model": "paper-7b", "flops_efficiency": 0.5,
           "steps": []})",
       "field 'flops_efficiency' is fitted to 'steps'"},
      {R"({"name": "x", "base": "H200", "steps": [{"seconds": 0.1}]})",
       "field 'steps[0]' must be an object with 'seconds' and either"},
      {"[1, 2]", "the top level must be a JSON object"},
  };
  for (const auto& [text, expected] : cases) {
    auto p = ParseDeviceProfile(text, "p.json");
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_EQ(p.status().code(), StatusCode::kParseError) << text;
    EXPECT_NE(p.status().message().find("p.json"), std::string::npos) << p.status().message();
    EXPECT_NE(p.status().message().find(expected), std::string::npos)
        << p.status().message() << "\n  expected: " << expected;
  }
}

TEST(DeviceProfile, ResolvesPresetsAndPaths) {
  EXPECT_EQ(ResolveDevice("H200")->device.hbm_bandwidth, 4.8e12);
  EXPECT_EQ(ResolveDevice("V100").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ResolveDevice("/nonexistent/device.json").status().code(), StatusCode::kIoError);
  const std::string path = ::testing::TempDir() + "/profile.json";
  std::ofstream(path) << R"({"name": "file-device", "base": "H100-80GB", "step_overhead_s": 0.01})";
  auto d = ResolveDevice(path);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->device.name, "file-device");
  EXPECT_EQ(d->device.step_overhead_s, 0.01);
}

}  // namespace
}  // namespace marconi::sim::serving
