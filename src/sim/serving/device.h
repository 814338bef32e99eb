// Accelerator specifications for the serving model: peak throughput, memory bandwidth and
// capacity, and the fractions of the peaks that real kernels achieve.
#ifndef MARCONI_SIM_SERVING_DEVICE_H_
#define MARCONI_SIM_SERVING_DEVICE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "marconi/status.h"

namespace marconi::sim::serving {

struct DeviceSpec {
  std::string name;
  double peak_flops = 0;     // dense BF16 FLOP/s (no structured sparsity)
  double hbm_bandwidth = 0;  // bytes/s
  int64_t hbm_bytes = 0;     // capacity, bytes
  // Achieved fractions of the peaks (assumptions, not measurements: see docs/serving.md). A
  // large GEMM reaches well under the datasheet peak; a streaming kernel most of the bandwidth.
  double flops_efficiency = 0.6;
  double bandwidth_efficiency = 0.8;
  // The share of HBM an engine takes (vLLM's gpu_memory_utilization default); the rest is left
  // to the CUDA context, activations and fragmentation.
  double memory_utilization = 0.9;
  // Seconds added to every step (kernel launches, scheduling, sampling): 0 for the presets; a
  // measured profile fits it.
  double step_overhead_s = 0;
  // Where the numbers come from, for reports: "datasheet preset", or the profile's path and,
  // when fitted, how well the fit reproduces its steps.
  std::string source = "datasheet preset";

  double achieved_flops() const { return peak_flops * flops_efficiency; }
  double achieved_bandwidth() const { return hbm_bandwidth * bandwidth_efficiency; }
};

// "A100-40GB", "H100-80GB" or "H200" (case-sensitive); kNotFound lists the names.
Result<DeviceSpec> DevicePreset(std::string_view name);
std::vector<std::string> DevicePresetNames();
// kInvalidArgument unless every number is finite and positive, every fraction in (0, 1] and the
// step overhead finite and >= 0.
Status ValidateDevice(const DeviceSpec& device);

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_DEVICE_H_
