#include "sim/ttft_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "sim/file_io.h"

namespace marconi::sim {

Result<FittedLine> FitLine(const std::vector<std::pair<double, double>>& points) {
  if (points.size() < 2) return Status::InvalidArgument("a line needs at least 2 points");
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (auto [x, y] : points) sx += x, sy += y, sxx += x * x, sxy += x * y;
  const double k = static_cast<double>(points.size());
  const double den = k * sxx - sx * sx;
  if (den == 0) return Status::InvalidArgument("every point has the same x");
  const double slope = (k * sxy - sx * sy) / den;
  return FittedLine{(sy - slope * sx) / k, slope};
}

TtftModel TtftModel::Linear(double intercept_ms, double ms_per_token) {
  TtftModel m;
  m.a_ = intercept_ms;
  m.b_ = ms_per_token;
  char buf[96];
  std::snprintf(buf, sizeof(buf), "line %.4g ms + %.5g ms/token", intercept_ms, ms_per_token);
  m.source_ = buf;
  return m;
}

Result<TtftModel> TtftModel::FromProfileCsv(const std::string& path, bool fit) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::istringstream in(*text);
  std::string line;
  std::vector<std::pair<double, double>> pts;
  std::vector<int64_t> lines;  // of pts
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    double tokens = 0, ms = 0;
    char extra = 0;
    if (std::sscanf(line.c_str(), "%lf,%lf%c", &tokens, &ms, &extra) != 2) {
      if (n == 1) continue;  // header
      return Status::ParseError(path + ":" + std::to_string(n) +
                                ": expected 'prefill_tokens,ttft_ms', got '" + line + "'");
    }
    if (!std::isfinite(tokens) || !std::isfinite(ms) || tokens < 0 || ms < 0) {
      return Status::ParseError(path + ":" + std::to_string(n) + ": negative or non-finite value");
    }
    pts.push_back({tokens, ms});
    lines.push_back(n);
  }
  if (pts.size() < 2) return Status::ParseError(path + ": a profile needs at least 2 points");
  if (fit) {
    auto fitted = FitLine(pts);
    if (!fitted.ok()) return Status::ParseError(path + ": all profile points have the same length");
    if (fitted->slope < 0) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    ": latency falls with length (least-squares slope %.4g ms/token); a "
                    "prefill profile must not get faster with more tokens",
                    fitted->slope);
      return Status::ParseError(path + buf);
    }
    TtftModel m = Linear(fitted->intercept, fitted->slope);
    m.source_ += " (least squares over " + path + ")";
    return m;
  }
  std::vector<size_t> order(pts.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return pts[a].first < pts[b].first; });
  // Average repeated lengths so that interpolation is a function.
  std::vector<std::pair<double, double>> merged;
  std::vector<int64_t> merged_lines;  // the first line of each merged point
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    double sum = 0;
    while (j < order.size() && pts[order[j]].first == pts[order[i]].first) {
      sum += pts[order[j++]].second;
    }
    merged.push_back({pts[order[i]].first, sum / static_cast<double>(j - i)});
    merged_lines.push_back(lines[order[i]]);
    i = j;
  }
  if (merged.size() < 2) return Status::ParseError(path + ": needs 2 distinct lengths");
  // A latency that falls with length would make a longer prefill look cheaper (and the end
  // segments extrapolate it below zero).
  for (size_t i = 1; i < merged.size(); ++i) {
    if (merged[i].second < merged[i - 1].second) {
      char buf[200];
      std::snprintf(buf, sizeof buf,
                    ": ttft_ms %.6g at %.6g tokens is below %.6g at %.6g tokens (line %lld); a "
                    "prefill profile must not get faster with more tokens",
                    merged[i].second, merged[i].first, merged[i - 1].second, merged[i - 1].first,
                    static_cast<long long>(merged_lines[i - 1]));
      return Status::ParseError(path + ":" + std::to_string(merged_lines[i]) + buf);
    }
  }
  TtftModel m;
  m.kind_ = Kind::kInterpolated;
  m.points_ = std::move(merged);
  m.source_ = "interpolation over " + path;
  return m;
}

Result<TtftModel> TtftModel::Roofline(double peak_flops, double efficiency, double overhead_ms) {
  if (!(peak_flops > 0) || !(efficiency > 0 && efficiency <= 1) || !(overhead_ms >= 0)) {
    return Status::InvalidArgument(
        "roofline TTFT: need peak FLOP/s > 0, efficiency in (0, 1], overhead >= 0");
  }
  TtftModel m;
  m.kind_ = Kind::kRoofline;
  m.a_ = overhead_ms;
  m.b_ = peak_flops * efficiency / 1000.0;  // FLOPs per ms
  char buf[128];
  std::snprintf(buf, sizeof(buf), "roofline %.3g FLOP/s x %.2f + %.3g ms", peak_flops, efficiency,
                overhead_ms);
  m.source_ = buf;
  return m;
}

double TtftModel::Ms(const ModelSpec& model, int64_t cached, int64_t computed) const {
  const double x = static_cast<double>(computed);
  switch (kind_) {
    case Kind::kLinear:
      return std::max(0.0, a_ + b_ * x);  // a fitted line may cross zero below its data
    case Kind::kRoofline:
      return a_ + model.PrefillFlops(cached, computed) / b_;
    case Kind::kInterpolated: {
      auto it = std::lower_bound(points_.begin(), points_.end(), x,
                                 [](const auto& p, double v) { return p.first < v; });
      if (it == points_.begin()) it = points_.begin() + 1;
      if (it == points_.end()) it = points_.end() - 1;
      const auto [x1, y1] = *it;
      const auto [x0, y0] = *(it - 1);
      return std::max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0));
    }
  }
  return 0;
}

std::string TtftModel::Describe() const { return source_; }

}  // namespace marconi::sim
