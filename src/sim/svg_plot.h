// A small SVG line-chart writer: axes with round ticks, one coloured series per label, a legend.
// Deterministic output (fixed number formatting), so plots can be compared byte for byte.
#ifndef MARCONI_SIM_SVG_PLOT_H_
#define MARCONI_SIM_SVG_PLOT_H_

#include <string>
#include <utility>
#include <vector>

namespace marconi::sim {

struct PlotSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;  // drawn in the given order
  bool markers = true;                            // a dot at every point
};

struct PlotSpec {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_x = false;  // log10 x axis (all x must be > 0)
  std::vector<PlotSeries> series;
};

std::string RenderSvgLinePlot(const PlotSpec& spec);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_SVG_PLOT_H_
