// A measured device profile for the serving model (`--device FILE.json`): a device's peaks and
// capacity, and either its achieved fractions and step overhead as numbers, or step times
// measured on it, to which they are fitted. docs/serving.md ("Device profiles") has the format.
#ifndef MARCONI_SIM_SERVING_DEVICE_PROFILE_H_
#define MARCONI_SIM_SERVING_DEVICE_PROFILE_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "marconi/model_spec.h"
#include "marconi/status.h"
#include "sim/serving/device.h"

namespace marconi::sim::serving {

// One step measured on the device and its duration: either its batch, each sequence as
// (context, new tokens) (a prefill chunk after `context` cached or computed tokens, or a decode:
// tokens 1), whose FLOPs and bytes the step time model computes from the model; or, with an
// empty batch, the FLOPs it ran and the bytes it moved (weights included) as measured.
struct MeasuredStep {
  std::vector<std::pair<int64_t, int64_t>> batch;
  double flops = 0, bytes = 0;  // with an empty batch
  double seconds = 0;
};

// How well the fitted roofline reproduces the measured steps: relative errors
// |predicted - measured| / measured.
struct DeviceFit {
  int64_t steps = 0;  // 0: nothing was fitted (the profile gave the fractions)
  double rms_relative_error = 0;
  double max_relative_error = 0;
};

struct DeviceProfile {
  DeviceSpec device;
  DeviceFit fit;
};

// Fits device->flops_efficiency, bandwidth_efficiency (each in [0.005, 1]) and step_overhead_s
// (>= 0) to `steps` measured running `model`, minimizing the sum of squared relative errors of
// the step time model (step_time.h). Deterministic: a coarse grid over the two fractions (the
// overhead in closed form for each pair) refined around the best point. kInvalidArgument with
// fewer than 3 steps, or a step with a non-positive duration, a sequence without new tokens, or
// neither a batch nor positive FLOPs and bytes.
Result<DeviceFit> FitDevice(const ModelSpec& model, std::span<const MeasuredStep> steps,
                            DeviceSpec* device);

// Parses a profile. `source` names the text in messages (a path). The steps' model (a preset or
// a config.json path) is the profile's "model": the fit does not depend on the model simulated.
// kParseError says what and where: SOURCE:LINE:COLUMN for malformed JSON, SOURCE: field
// 'steps[2].seconds' for a bad value.
Result<DeviceProfile> ParseDeviceProfile(std::string_view text, std::string_view source);
Result<DeviceProfile> LoadDeviceProfile(const std::string& path);

// `--device`: a preset name, or a path to a profile (a name with '/' or ending in ".json").
Result<DeviceProfile> ResolveDevice(const std::string& name_or_path);

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_DEVICE_PROFILE_H_
