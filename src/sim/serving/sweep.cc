#include "sim/serving/sweep.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>

#include "sim/file_io.h"
#include "sim/report.h"
#include "sim/svg_plot.h"
#include "sim/synthetic.h"
#include "util/parallel_for.h"

namespace marconi::sim::serving {

Result<std::vector<ServingSweepCell>> RunServingSweep(
    const Trace& trace, const ServingSweepSpec& spec,
    const std::function<void(size_t, size_t)>& progress) {
  if (spec.models.empty() || spec.budgets.empty() || spec.sessions_per_second.empty() ||
      spec.systems.empty() || spec.routers.empty()) {
    return Status::InvalidArgument("sweep --serving: every dimension needs at least one value");
  }
  for (double sps : spec.sessions_per_second) {
    if (!std::isfinite(sps) || sps < 0) {
      return Status::InvalidArgument(
          "sweep: sessions per second must be finite and >= 0 (0: the trace's times), got " +
          std::to_string(sps));
    }
  }
  // Every cell's settings are checked before any runs.
  for (const ModelSpec& m : spec.models) {
    for (int64_t b : spec.budgets) {
      for (const std::string& router : spec.routers) {
        ServingConfig c = spec.serving;
        c.budget_bytes = b;
        c.router = router;
        if (auto budget = ServingBudget(c, m); !budget.ok()) return budget.status();
      }
    }
  }
  struct Job {
    size_t model, budget, system, router;
  };
  std::vector<Job> jobs;
  for (size_t m = 0; m < spec.models.size(); ++m) {
    for (size_t b = 0; b < spec.budgets.size(); ++b) {
      for (size_t s = 0; s < spec.systems.size(); ++s) {
        for (size_t r = 0; r < spec.routers.size(); ++r) jobs.push_back({m, b, s, r});
      }
    }
  }
  const size_t total = jobs.size() * spec.sessions_per_second.size();
  std::atomic<size_t> done{0};
  std::mutex progress_mutex;
  std::vector<ServingSweepCell> cells;
  for (double sps : spec.sessions_per_second) {
    const Trace retimed = sps > 0 ? Retime(trace, sps) : Trace{};
    const Trace& t = sps > 0 ? retimed : trace;
    std::vector<Result<ServingSweepCell>> out(jobs.size(), Status::Unimplemented("not run"));
    internal::ParallelFor(
        jobs.size(), static_cast<size_t>(std::max(1, spec.threads)), [&](size_t i) {
          const Job& j = jobs[i];
          SimConfig config = spec.base;
          config.model = spec.models[j.model];
          config.threads = 1;  // parallelism is across cells
          config.progress = nullptr;
          ServingConfig serving = spec.serving;
          serving.budget_bytes = spec.budgets[j.budget];
          serving.router = spec.routers[j.router];
          auto r = RunServing(t, spec.systems[j.system], config, serving);
          if (!r.ok()) {
            char where[64];
            std::snprintf(where, sizeof where, "%g sessions/s", sps);
            out[i] = Status(r.status().code(), config.model.name() + ", " + where + ", " +
                                                   SystemName(spec.systems[j.system]) + "/" +
                                                   serving.router + ": " + r.status().message());
          } else {
            ServingSweepCell cell;
            cell.model = config.model.name();
            cell.device = serving.device.name;
            cell.budget_bytes = spec.budgets[j.budget];
            cell.sessions_per_second = sps;
            cell.summary = SummarizeServing(*r, spec.slo);
            out[i] = std::move(cell);
          }
          const size_t d = ++done;
          if (progress) {
            std::lock_guard<std::mutex> lock(progress_mutex);
            progress(d, total);
          }
        });
    for (auto& r : out) {
      if (!r.ok()) return r.status();
      cells.push_back(std::move(r).value());
    }
  }
  return cells;
}

std::string ServingSweepCsv(const std::vector<ServingSweepCell>& cells) {
  std::string o = "model,device,budget_bytes,sessions_per_second,system,router";
  for (const ServingField& f : ServingFields()) {
    if (f.csv) o += std::string(",") + f.name;
  }
  o += "\n";
  char buf[512];
  for (const ServingSweepCell& c : cells) {
    const ServingSummary& s = c.summary;
    std::snprintf(buf, sizeof buf, "%s,%s,%lld,%g,%s,%s", c.model.c_str(), c.device.c_str(),
                  static_cast<long long>(s.budget_bytes), c.sessions_per_second, s.system.c_str(),
                  s.router.c_str());
    o += buf;
    for (const ServingField& f : ServingFields()) {
      if (f.csv) o += "," + FormatServingField(f, s);
    }
    o += "\n";
  }
  return o;
}

Result<std::vector<std::string>> WriteServingSweepPlots(const std::vector<ServingSweepCell>& cells,
                                                        const std::string& directory) {
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) return Status::IoError("cannot create '" + directory + "': " + ec.message());
  // Groups by (model, budget), series by system (and router when several), in first-appearance
  // order; points in increasing arrival rate.
  std::vector<std::pair<std::string, int64_t>> groups;
  std::vector<std::string> routers;
  for (const ServingSweepCell& c : cells) {
    const std::pair<std::string, int64_t> key{c.model, c.budget_bytes};
    if (std::find(groups.begin(), groups.end(), key) == groups.end()) groups.push_back(key);
    if (std::find(routers.begin(), routers.end(), c.summary.router) == routers.end()) {
      routers.push_back(c.summary.router);
    }
  }
  const auto series_of = [&](const ServingSweepCell& c) {
    return routers.size() > 1 ? c.summary.system + "/" + c.summary.router : c.summary.system;
  };
  std::vector<std::string> written;
  for (const auto& [model, budget] : groups) {
    std::vector<const ServingSweepCell*> g;
    std::vector<std::string> names;
    for (const ServingSweepCell& c : cells) {
      if (c.model != model || c.budget_bytes != budget) continue;
      g.push_back(&c);
      if (std::find(names.begin(), names.end(), series_of(c)) == names.end()) {
        names.push_back(series_of(c));
      }
    }
    const std::string device = g.front()->device;
    const std::string where = model + ", " + device + ", budget " +
                              (budget > 0 ? FormatBytes(budget) : std::string("the device's"));
    PlotSpec ttft{"TTFT p95 vs arrival rate (" + where + ")",
                  "arrival rate (sessions/s)",
                  "TTFT p95 (s)",
                  false,
                  {}};
    PlotSpec goodput{"Goodput vs arrival rate (" + where + ")",
                     "arrival rate (sessions/s)",
                     "goodput (requests/s within the SLO)",
                     false,
                     {}};
    for (const std::string& name : names) {
      std::vector<const ServingSweepCell*> points;
      for (const ServingSweepCell* c : g) {
        // Rate 0 (the trace's times) has no place on a rate axis.
        if (series_of(*c) == name && c->sessions_per_second > 0) points.push_back(c);
      }
      std::sort(points.begin(), points.end(), [](const auto* a, const auto* b) {
        return a->sessions_per_second < b->sessions_per_second;
      });
      PlotSeries t{name, {}}, p{name, {}};
      for (const ServingSweepCell* c : points) {
        t.points.push_back({c->sessions_per_second, c->summary.ttft_ms.p95 / 1000});
        p.points.push_back({c->sessions_per_second, c->summary.goodput_req_s});
      }
      if (!t.points.empty()) {
        ttft.series.push_back(std::move(t));
        goodput.series.push_back(std::move(p));
      }
    }
    if (ttft.series.empty()) continue;
    const std::string slug =
        model + "_" + device + (budget > 0 ? "_" + std::to_string(budget) : std::string());
    for (const auto& [name, spec] :
         {std::pair<std::string, const PlotSpec*>{"ttft_p95_vs_sps_" + slug + ".svg", &ttft},
          {"goodput_vs_sps_" + slug + ".svg", &goodput}}) {
      const std::string path = directory + "/" + name;
      if (Status s = WriteFile(path, RenderSvgLinePlot(*spec)); !s.ok()) return s;
      written.push_back(path);
    }
  }
  return written;
}

}  // namespace marconi::sim::serving
