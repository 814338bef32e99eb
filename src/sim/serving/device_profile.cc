#include "sim/serving/device_profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "sim/serving/step_time.h"
#include "util/json_error_locator.h"
#include "util/read_file.h"

namespace marconi::sim::serving {
namespace {

using Json = nlohmann::json;

// A step reduced to what the roofline needs: its compute time and its memory time at 100% of
// the device's peaks.
struct Reduced {
  double compute = 0, memory = 0, seconds = 0;
};

// The fractions' search range: below 0.5% a device is not doing the work at all.
constexpr double kMinFraction = 0.005;

struct Candidate {
  double loss = std::numeric_limits<double>::infinity();
  double flops = 1, bandwidth = 1, overhead = 0;
};

// The loss of fractions (f, b), with the overhead that minimizes it for them (closed form of a
// weighted least squares in one variable, clamped at 0).
Candidate Evaluate(std::span<const Reduced> steps, double f, double b) {
  double num = 0, den = 0;
  for (const Reduced& s : steps) {
    const double p = std::max(s.compute / f, s.memory / b);
    const double w = 1 / (s.seconds * s.seconds);
    num += (s.seconds - p) * w;
    den += w;
  }
  Candidate c{0, f, b, std::max(0.0, num / den)};
  for (const Reduced& s : steps) {
    const double r = (c.overhead + std::max(s.compute / f, s.memory / b) - s.seconds) / s.seconds;
    c.loss += r * r;
  }
  return c;
}

// The best point of a log grid of n x n fractions over [lo, hi] each; ties keep the larger
// fractions (a fraction the steps do not constrain stays at its largest consistent value).
Candidate Search(std::span<const Reduced> steps, double flo, double fhi, double blo, double bhi,
                 int n) {
  Candidate best;
  for (int i = n - 1; i >= 0; --i) {
    const double f = flo * std::pow(fhi / flo, static_cast<double>(i) / (n - 1));
    for (int j = n - 1; j >= 0; --j) {
      const double b = blo * std::pow(bhi / blo, static_cast<double>(j) / (n - 1));
      const Candidate c = Evaluate(steps, f, b);
      if (c.loss < best.loss) best = c;
    }
  }
  return best;
}

struct FieldError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double Number(const Json& j, const std::string& field) {
  if (!j.is_number()) throw FieldError("field '" + field + "' must be a number");
  const double v = j.get<double>();
  if (!std::isfinite(v)) throw FieldError("field '" + field + "' must be finite");
  return v;
}

// Bounded so that a step's context + tokens, and the FLOPs of a sequence, stay finite and
// exact: ModelSpec's own bound on token counts.
int64_t Integer(const Json& j, const std::string& field, int64_t min,
                int64_t max = ModelSpec::kMaxTokens) {
  if (!j.is_number_integer()) throw FieldError("field '" + field + "' must be an integer");
  if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t{1} << 62) {
    throw FieldError("field '" + field + "' is too large");
  }
  const int64_t v = j.get<int64_t>();
  if (v < min || v > max) {
    throw FieldError("field '" + field + "' must be in [" + std::to_string(min) + ", " +
                     std::to_string(max) + "], got " + std::to_string(v));
  }
  return v;
}

std::vector<MeasuredStep> Steps(const Json& j) {
  if (!j.is_array()) throw FieldError("field 'steps' must be an array");
  // The fit passes over every step some 20,000 times: a profile is a few dozen measurements.
  constexpr size_t kMaxSteps = 10000;
  if (j.size() > kMaxSteps) {
    throw FieldError("field 'steps' has " + std::to_string(j.size()) + " steps, more than " +
                     std::to_string(kMaxSteps));
  }
  std::vector<MeasuredStep> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string at = "steps[" + std::to_string(i) + "]";
    const Json& s = j[i];
    const bool by_batch = s.is_object() && s.contains("batch") && s.size() == 2;
    const bool by_cost =
        s.is_object() && s.contains("flops") && s.contains("bytes") && s.size() == 3;
    if (!s.is_object() || !s.contains("seconds") || !(by_batch || by_cost)) {
      throw FieldError("field '" + at +
                       "' must be an object with 'seconds' and either 'batch' or 'flops' and "
                       "'bytes'");
    }
    MeasuredStep step;
    step.seconds = Number(s["seconds"], at + ".seconds");
    if (step.seconds <= 0) throw FieldError("field '" + at + ".seconds' must be > 0");
    if (by_cost) {
      step.flops = Number(s["flops"], at + ".flops");
      step.bytes = Number(s["bytes"], at + ".bytes");
      if (step.flops <= 0 || step.bytes <= 0) {
        throw FieldError("field '" + at + "': flops and bytes must be > 0");
      }
      out.push_back(std::move(step));
      continue;
    }
    const Json& batch = s["batch"];
    if (!batch.is_array() || batch.empty()) {
      throw FieldError("field '" + at + ".batch' must be a non-empty array of [context, tokens]");
    }
    if (batch.size() > static_cast<size_t>(ModelSpec::kMaxTokens)) {
      throw FieldError("field '" + at + ".batch' is too long");
    }
    for (size_t k = 0; k < batch.size(); ++k) {
      const std::string seq = at + ".batch[" + std::to_string(k) + "]";
      if (!batch[k].is_array() || batch[k].size() != 2) {
        throw FieldError("field '" + seq + "' must be [context, tokens]");
      }
      step.batch.emplace_back(Integer(batch[k][0], seq + "[0]", 0),
                              Integer(batch[k][1], seq + "[1]", 1));
    }
    out.push_back(std::move(step));
  }
  return out;
}

}  // namespace

Result<DeviceFit> FitDevice(const ModelSpec& model, std::span<const MeasuredStep> steps,
                            DeviceSpec* device) {
  if (steps.size() < 3) {
    return Status::InvalidArgument("fitting a device needs at least 3 measured steps, got " +
                                   std::to_string(steps.size()));
  }
  DeviceSpec peak = *device;
  peak.flops_efficiency = peak.bandwidth_efficiency = 1;
  peak.step_overhead_s = 0;
  if (Status s = ValidateDevice(peak); !s.ok()) return s;
  const StepTimeModel time(model, peak);
  std::vector<Reduced> reduced;
  for (size_t i = 0; i < steps.size(); ++i) {
    const MeasuredStep& m = steps[i];
    if (!(m.seconds > 0) || !std::isfinite(m.seconds)) {
      return Status::InvalidArgument("measured step " + std::to_string(i) +
                                     ": needs a duration > 0");
    }
    if (m.batch.empty()) {
      if (!(m.flops > 0) || !(m.bytes > 0) || !std::isfinite(m.flops) || !std::isfinite(m.bytes)) {
        return Status::InvalidArgument("measured step " + std::to_string(i) +
                                       ": needs a batch, or FLOPs and bytes > 0");
      }
      reduced.push_back({m.flops / peak.peak_flops, m.bytes / peak.hbm_bandwidth, m.seconds});
      continue;
    }
    StepCost cost;
    for (const auto& [context, tokens] : m.batch) {
      if (context < 0 || tokens < 1 || context > ModelSpec::kMaxTokens ||
          tokens > ModelSpec::kMaxTokens) {
        return Status::InvalidArgument("measured step " + std::to_string(i) +
                                       ": a sequence needs context in [0, 2^31] and tokens in "
                                       "[1, 2^31]");
      }
      time.Add(context, tokens, &cost);
    }
    reduced.push_back({cost.flops / peak.peak_flops,
                       (static_cast<double>(time.weight_bytes()) + cost.bytes) / peak.hbm_bandwidth,
                       m.seconds});
  }
  // A coarse grid, then three rounds of a finer one around the best point.
  constexpr int kGrid = 121;
  Candidate best = Search(reduced, kMinFraction, 1, kMinFraction, 1, kGrid);
  double span = std::pow(1 / kMinFraction, 2.0 / (kGrid - 1));  // two coarse steps, as a ratio
  for (int round = 0; round < 3; ++round) {
    best = Search(reduced, std::max(kMinFraction, best.flops / span),
                  std::min(1.0, best.flops * span), std::max(kMinFraction, best.bandwidth / span),
                  std::min(1.0, best.bandwidth * span), 41);
    span = std::pow(span, 2.0 / 20);
  }
  device->flops_efficiency = best.flops;
  device->bandwidth_efficiency = best.bandwidth;
  device->step_overhead_s = best.overhead;
  DeviceFit fit;
  fit.steps = static_cast<int64_t>(reduced.size());
  double sum = 0;
  for (const Reduced& s : reduced) {
    const double predicted =
        best.overhead + std::max(s.compute / best.flops, s.memory / best.bandwidth);
    const double r = std::abs(predicted - s.seconds) / s.seconds;
    sum += r * r;
    fit.max_relative_error = std::max(fit.max_relative_error, r);
  }
  fit.rms_relative_error = std::sqrt(sum / static_cast<double>(reduced.size()));
  return fit;
}

Result<DeviceProfile> ParseDeviceProfile(std::string_view text, std::string_view source) {
  const std::string where(source);
  internal::JsonErrorLocator locator;
  if (!Json::sax_parse(text, &locator)) {
    return Status::ParseError(locator.Message(text, where));
  }
  static const char* const kFields[] = {"name",
                                        "base",
                                        "peak_flops",
                                        "hbm_bandwidth",
                                        "hbm_bytes",
                                        "model",
                                        "memory_utilization",
                                        "flops_efficiency",
                                        "step_overhead_s",
                                        "steps",
                                        "bandwidth_efficiency"};
  try {
    const Json j = Json::parse(text);
    if (!j.is_object()) throw FieldError("the top level must be a JSON object");
    for (const auto& [key, value] : j.items()) {
      if (std::find(std::begin(kFields), std::end(kFields), key) == std::end(kFields)) {
        std::string names;
        for (const char* f : kFields) names += std::string(names.empty() ? "" : ", ") + f;
        throw FieldError("unknown field '" + key + "' (fields: " + names + ")");
      }
    }
    DeviceProfile profile;
    DeviceSpec& d = profile.device;
    if (j.contains("base")) {
      if (!j["base"].is_string()) throw FieldError("field 'base' must be a device name");
      auto base = DevicePreset(j["base"].get<std::string>());
      if (!base.ok()) throw FieldError("field 'base': " + base.status().message());
      d = *base;
    } else {
      for (const char* required : {"peak_flops", "hbm_bandwidth", "hbm_bytes"}) {
        if (!j.contains(required)) {
          throw FieldError(std::string("field '") + required +
                           "' is required (or a preset in 'base')");
        }
      }
    }
    if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty()) {
      throw FieldError("field 'name' must be a non-empty string");
    }
    d.name = j["name"].get<std::string>();
    if (j.contains("peak_flops")) d.peak_flops = Number(j["peak_flops"], "peak_flops");
    if (j.contains("hbm_bandwidth")) d.hbm_bandwidth = Number(j["hbm_bandwidth"], "hbm_bandwidth");
    if (j.contains("hbm_bytes")) {
      const double bytes = Number(j["hbm_bytes"], "hbm_bytes");
      if (bytes < 1 || bytes > 0x1p62) throw FieldError("field 'hbm_bytes' must be in [1, 2^62]");
      d.hbm_bytes = static_cast<int64_t>(bytes);
    }
    if (j.contains("memory_utilization")) {
      d.memory_utilization = Number(j["memory_utilization"], "memory_utilization");
    }
    const bool measured = j.contains("steps");
    for (const char* fitted : {"flops_efficiency", "bandwidth_efficiency", "step_overhead_s"}) {
      if (!j.contains(fitted)) continue;
      if (measured) {
        throw FieldError(std::string("field '") + fitted +
                         "' is fitted to 'steps': give one or the other");
      }
    }
    if (j.contains("flops_efficiency")) {
      d.flops_efficiency = Number(j["flops_efficiency"], "flops_efficiency");
    }
    if (j.contains("bandwidth_efficiency")) {
      d.bandwidth_efficiency = Number(j["bandwidth_efficiency"], "bandwidth_efficiency");
    }
    if (j.contains("step_overhead_s")) {
      d.step_overhead_s = Number(j["step_overhead_s"], "step_overhead_s");
    }
    if (j.contains("model") && !measured) {
      throw FieldError("field 'model' names the model the 'steps' were measured with: no steps");
    }
    if (measured) {
      const std::vector<MeasuredStep> steps = Steps(j["steps"]);
      // The steps' model, which steps given by their batch need.
      std::optional<ModelSpec> model;
      if (j.contains("model")) {
        if (!j["model"].is_string()) throw FieldError("field 'model' must be a model name");
        auto m = ModelSpec::FromNameOrFile(j["model"].get<std::string>());
        if (!m.ok()) throw FieldError("field 'model': " + m.status().message());
        model = *m;
      } else if (std::any_of(steps.begin(), steps.end(),
                             [](const MeasuredStep& s) { return !s.batch.empty(); })) {
        throw FieldError("field 'model' must name the model the steps were measured with");
      }
      if (Status s = ValidateDevice(d); !s.ok()) throw FieldError(s.message());
      // Without batches the model is not read: any stands in.
      auto fit = FitDevice(model ? *model : ModelSpec::Preset("paper-7b").value(), steps, &d);
      if (!fit.ok()) throw FieldError("field 'steps': " + fit.status().message());
      profile.fit = *fit;
      char fitted[160];
      std::snprintf(fitted, sizeof fitted,
                    ", fitted to %lld measured steps (relative error rms %.2g%%, max %.2g%%)",
                    static_cast<long long>(fit->steps), 100 * fit->rms_relative_error,
                    100 * fit->max_relative_error);
      d.source = "profile " + where + fitted;
    } else {
      d.source = "profile " + where;
    }
    if (Status s = ValidateDevice(d); !s.ok()) throw FieldError(s.message());
    return profile;
  } catch (const FieldError& e) {
    return Status::ParseError(where + ": " + e.what());
  } catch (const Json::exception& e) {
    return Status::ParseError(where + ": " + e.what());
  }
}

Result<DeviceProfile> LoadDeviceProfile(const std::string& path) {
  auto text = internal::ReadWholeFile(path, 0, size_t{64} << 20);
  if (!text.ok()) return Status::IoError("device profile: " + text.status().message());
  return ParseDeviceProfile(*text, path);
}

Result<DeviceProfile> ResolveDevice(const std::string& name_or_path) {
  const bool path =
      name_or_path.find('/') != std::string::npos ||
      (name_or_path.size() > 5 && name_or_path.compare(name_or_path.size() - 5, 5, ".json") == 0);
  if (path) return LoadDeviceProfile(name_or_path);
  auto preset = DevicePreset(name_or_path);
  if (!preset.ok()) {
    return Status::NotFound(preset.status().message() + ", or a profile: a path to a .json file");
  }
  return DeviceProfile{*preset, {}};
}

}  // namespace marconi::sim::serving
