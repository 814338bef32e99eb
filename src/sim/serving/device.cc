#include "sim/serving/device.h"

#include <cmath>

namespace marconi::sim::serving {
namespace {

// Peaks from NVIDIA's datasheets (dense BF16 Tensor Core FLOP/s: half the "with sparsity"
// figure; HBM bandwidth and capacity of the SXM parts):
//   A100 40GB SXM4: 312 TFLOP/s, 1,555 GB/s, 40 GB (NVIDIA A100 Tensor Core GPU datasheet).
//   H100 80GB SXM5: 989 TFLOP/s, 3.35 TB/s, 80 GB (NVIDIA H100 Tensor Core GPU datasheet).
//   H200 141GB SXM: 989 TFLOP/s, 4.8 TB/s, 141 GB (NVIDIA H200 Tensor Core GPU datasheet).
// Capacities are taken as the datasheets' decimal gigabytes.
const DeviceSpec kPresets[] = {
    {"A100-40GB", 312e12, 1555e9, int64_t{40} * 1000 * 1000 * 1000},
    {"H100-80GB", 989e12, 3.35e12, int64_t{80} * 1000 * 1000 * 1000},
    {"H200", 989e12, 4.8e12, int64_t{141} * 1000 * 1000 * 1000},
};

}  // namespace

Result<DeviceSpec> DevicePreset(std::string_view name) {
  for (const DeviceSpec& d : kPresets) {
    if (d.name == name) return d;
  }
  std::string names;
  for (const std::string& n : DevicePresetNames()) names += (names.empty() ? "" : ", ") + n;
  return Status::NotFound("unknown device '" + std::string(name) + "' (devices: " + names + ")");
}

std::vector<std::string> DevicePresetNames() {
  std::vector<std::string> out;
  for (const DeviceSpec& d : kPresets) out.push_back(d.name);
  return out;
}

Status ValidateDevice(const DeviceSpec& d) {
  const auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  const auto fraction = [](double v) { return std::isfinite(v) && v > 0 && v <= 1; };
  if (!positive(d.peak_flops) || !positive(d.hbm_bandwidth) || d.hbm_bytes <= 0) {
    return Status::InvalidArgument("device " + d.name +
                                   ": peak FLOP/s, bandwidth and capacity must be positive");
  }
  if (!fraction(d.flops_efficiency) || !fraction(d.bandwidth_efficiency) ||
      !fraction(d.memory_utilization)) {
    return Status::InvalidArgument("device " + d.name +
                                   ": efficiencies and memory utilization must be in (0, 1]");
  }
  if (!std::isfinite(d.step_overhead_s) || d.step_overhead_s < 0) {
    return Status::InvalidArgument("device " + d.name + ": the step overhead must be >= 0");
  }
  return Status::Ok();
}

}  // namespace marconi::sim::serving
