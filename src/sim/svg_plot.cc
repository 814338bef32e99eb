#include "sim/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace marconi::sim {
namespace {

constexpr double kWidth = 760, kHeight = 460;
constexpr double kLeft = 80, kRight = 200, kTop = 50, kBottom = 60;
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"};

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string Px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

// About five round ticks covering [lo, hi].
std::vector<double> Ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 5;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  return t;
}

// Ticks of a log10 axis spanning [lo, hi] (in log units): 1-2-5 multiples of powers of ten, as
// log values; falls back to linear ticks of the log when the range holds fewer than two.
std::vector<double> LogTicks(double lo, double hi) {
  std::vector<double> t;
  for (double decade = std::floor(lo); decade <= hi; decade += 1) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = decade + std::log10(m);
      if (v >= lo - 1e-9 && v <= hi + 1e-9) t.push_back(v);
    }
  }
  return t.size() >= 2 ? t : Ticks(lo, hi);
}

}  // namespace

std::string RenderSvgLinePlot(const PlotSpec& spec) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  auto fx = [&](double x) { return spec.log_x ? std::log10(std::max(x, 1e-300)) : x; };
  for (const auto& s : spec.series) {
    for (auto [x, y] : s.points) {
      x0 = std::min(x0, fx(x)), x1 = std::max(x1, fx(x));
      y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  if (!(x0 <= x1)) x0 = 0, x1 = 1;
  if (!(y0 <= y1)) y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  y0 = std::min(y0, 0.0);  // rates and savings read best from zero
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto sx = [&](double x) { return kLeft + (fx(x) - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return kTop + ph - (y - y0) / (y1 - y0) * ph; };

  std::string o;
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + Num(kWidth) + "\" height=\"" +
       Num(kHeight) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + Px(kLeft + pw / 2) + "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" +
       Escape(spec.title) + "</text>\n";
  // Grid and ticks.
  for (double t : Ticks(y0, y1)) {
    o += "<line x1=\"" + Px(kLeft) + "\" y1=\"" + Px(sy(t)) + "\" x2=\"" + Px(kLeft + pw) +
         "\" y2=\"" + Px(sy(t)) + "\" stroke=\"#e0e0e0\"/>\n";
    o += "<text x=\"" + Px(kLeft - 6) + "\" y=\"" + Px(sy(t) + 4) + "\" text-anchor=\"end\">" +
         Num(t) + "</text>\n";
  }
  for (double t : spec.log_x ? LogTicks(x0, x1) : Ticks(x0, x1)) {
    const double x = kLeft + (t - x0) / (x1 - x0) * pw;
    o += "<line x1=\"" + Px(x) + "\" y1=\"" + Px(kTop) + "\" x2=\"" + Px(x) + "\" y2=\"" +
         Px(kTop + ph) + "\" stroke=\"#e0e0e0\"/>\n";
    o += "<text x=\"" + Px(x) + "\" y=\"" + Px(kTop + ph + 18) + "\" text-anchor=\"middle\">" +
         Num(spec.log_x ? std::pow(10, t) : t) + "</text>\n";
  }
  o += "<rect x=\"" + Px(kLeft) + "\" y=\"" + Px(kTop) + "\" width=\"" + Px(pw) + "\" height=\"" +
       Px(ph) + "\" fill=\"none\" stroke=\"#333\"/>\n";
  o += "<text x=\"" + Px(kLeft + pw / 2) + "\" y=\"" + Px(kHeight - 16) +
       "\" text-anchor=\"middle\">" + Escape(spec.x_label) + "</text>\n";
  o += "<text transform=\"translate(20," + Px(kTop + ph / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + Escape(spec.y_label) + "</text>\n";
  // Series and legend.
  for (size_t i = 0; i < spec.series.size(); ++i) {
    const auto& s = spec.series[i];
    const std::string color = kColors[i % (sizeof(kColors) / sizeof(kColors[0]))];
    std::string path;
    for (auto [x, y] : s.points) {
      if (!path.empty()) path += ' ';
      path += Px(sx(x));
      path += ',';
      path += Px(sy(y));
    }
    o += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\" points=\"" + path +
         "\"/>\n";
    for (auto [x, y] : s.markers ? s.points : std::vector<std::pair<double, double>>{}) {
      o += "<circle cx=\"" + Px(sx(x)) + "\" cy=\"" + Px(sy(y)) + "\" r=\"3\" fill=\"" + color +
           "\"/>\n";
    }
    const double ly = kTop + 10 + 20 * static_cast<double>(i);
    o += "<line x1=\"" + Px(kLeft + pw + 14) + "\" y1=\"" + Px(ly) + "\" x2=\"" +
         Px(kLeft + pw + 36) + "\" y2=\"" + Px(ly) + "\" stroke=\"" + color +
         "\" stroke-width=\"3\"/>\n";
    o += "<text x=\"" + Px(kLeft + pw + 42) + "\" y=\"" + Px(ly + 4) + "\">" + Escape(s.label) +
         "</text>\n";
  }
  o += "</svg>\n";
  return o;
}

}  // namespace marconi::sim
