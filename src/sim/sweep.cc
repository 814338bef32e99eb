#include "sim/sweep.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>

#include "sim/file_io.h"
#include "sim/svg_plot.h"
#include "sim/synthetic.h"
#include "util/parallel_for.h"

namespace marconi::sim {

Result<std::vector<SweepCell>> RunSweep(const Trace& trace, const SweepSpec& spec,
                                        const std::function<void(size_t, size_t)>& progress) {
  if (spec.models.empty() || spec.capacities.empty() || spec.sessions_per_second.empty() ||
      spec.systems.empty()) {
    return Status::InvalidArgument("sweep: every dimension needs at least one value");
  }
  for (double sps : spec.sessions_per_second) {
    if (!std::isfinite(sps) || sps < 0) {
      return Status::InvalidArgument(
          "sweep: sessions per second must be finite and >= 0 (0: the trace's times), got " +
          std::to_string(sps));
    }
  }
  // One schedule per arrival rate over the one trace (only the order and times differ: the
  // tokens are shared), read-only by the cells. 0 keeps the trace's own order and times.
  std::vector<Schedule> schedules;
  for (double sps : spec.sessions_per_second) {
    if (sps > 0) {
      schedules.push_back(RetimeSchedule(trace, sps));
    } else {
      Schedule own;
      for (size_t i = 0; i < trace.requests.size(); ++i) {
        own.order.push_back(i);
        own.ts.push_back(trace.requests[i].ts);
      }
      schedules.push_back(std::move(own));
    }
  }
  struct Job {
    size_t model, capacity, sps, policy;
  };
  std::vector<Job> jobs;
  for (size_t m = 0; m < spec.models.size(); ++m) {
    for (size_t s = 0; s < spec.sessions_per_second.size(); ++s) {
      for (size_t c = 0; c < spec.capacities.size(); ++c) {
        for (size_t p = 0; p < spec.systems.size(); ++p) jobs.push_back({m, c, s, p});
      }
    }
  }
  std::vector<Result<SweepCell>> out(jobs.size(), Status::Unimplemented("not run"));
  std::atomic<size_t> done{0};
  std::mutex progress_mutex;
  internal::ParallelFor(jobs.size(), static_cast<size_t>(std::max(1, spec.threads)), [&](size_t i) {
    const Job& j = jobs[i];
    SimConfig config = spec.base;
    config.model = spec.models[j.model];
    config.capacity_bytes = spec.capacities[j.capacity];
    config.threads = 1;         // parallelism is across cells
    config.progress = nullptr;  // progress is per cell (RunSweep's own callback)
    auto r = RunSystem(trace, schedules[j.sps], spec.systems[j.policy], config);
    if (!r.ok()) {
      out[i] = Status(r.status().code(),
                      config.model.name() + ", " + FormatBytes(config.capacity_bytes) + ", " +
                          SystemName(spec.systems[j.policy]) + ": " + r.status().message());
    } else {
      SweepCell cell;
      cell.model = config.model.name();
      cell.capacity_bytes = config.capacity_bytes;
      cell.sessions_per_second = spec.sessions_per_second[j.sps];
      cell.summary = Summarize(*r);
      for (const auto& rec : r->records) cell.ttft_ms.push_back(rec.ttft_ms);
      out[i] = std::move(cell);
    }
    const size_t d = ++done;
    if (progress) {
      std::lock_guard<std::mutex> lock(progress_mutex);
      progress(d, jobs.size());
    }
  });
  std::vector<SweepCell> cells;
  for (auto& r : out) {
    if (!r.ok()) return r.status();
    cells.push_back(std::move(r).value());
  }
  return cells;
}

std::string SweepCsv(const std::vector<SweepCell>& cells) {
  std::string o =
      "model,capacity_bytes,sessions_per_second,system,requests,input_tokens,hit_tokens,"
      "token_hit_rate,request_hit_rate,flops_saved_fraction,ttft_ms_p5,ttft_ms_p50,ttft_ms_p95,"
      "ttft_ms_mean,peak_bytes,peak_kv_bytes,peak_state_bytes,checkpoints_admitted,evictions,"
      "alpha,attention_hit_tokens,tokens_lost_no_state\n";
  char buf[512];
  for (const SweepCell& c : cells) {
    const Summary& s = c.summary;
    std::snprintf(
        buf, sizeof(buf),
        "%s,%lld,%g,%s,%lld,%lld,%lld,%.6f,%.6f,%.6f,%.3f,%.3f,%.3f,%.3f,%lld,%lld,%lld,%lld,"
        "%lld,%.2f,%lld,%lld\n",
        c.model.c_str(), static_cast<long long>(c.capacity_bytes), c.sessions_per_second,
        s.system.c_str(), static_cast<long long>(s.requests),
        static_cast<long long>(s.input_tokens), static_cast<long long>(s.hit_tokens),
        s.token_hit_rate, s.request_hit_rate, s.flops_saved_fraction, s.ttft_ms_p5, s.ttft_ms_p50,
        s.ttft_ms_p95, s.ttft_ms_mean, static_cast<long long>(s.peak_bytes),
        static_cast<long long>(s.peak_kv_bytes), static_cast<long long>(s.peak_state_bytes),
        static_cast<long long>(s.checkpoints_admitted), static_cast<long long>(s.evictions),
        s.alpha, static_cast<long long>(s.attention_hit_tokens),
        static_cast<long long>(s.tokens_lost_no_state));
    o += buf;
  }
  return o;
}

namespace {

// Whether the registry marks `name` as a baseline the win plot compares Marconi with.
bool IsBaseline(const std::string& name) {
  for (const SystemSpec& spec : Systems()) {
    if (spec.name == name) return spec.baseline;
  }
  return false;
}

std::string Slug(const std::string& model, double sps) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "_sps%g", sps);
  return model + (sps > 0 ? buf : "");
}

std::string SpsLabel(double sps) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g sessions/s", sps);
  return sps > 0 ? buf : "trace arrivals";
}

}  // namespace

Result<std::vector<std::string>> WriteSweepPlots(const std::vector<SweepCell>& cells,
                                                 const std::string& directory) {
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) return Status::IoError("cannot create '" + directory + "': " + ec.message());
  // Group cells by (model, sps) in first-appearance order (a NaN rate would match no group).
  std::vector<std::pair<std::string, double>> groups;
  for (const SweepCell& c : cells) {
    if (!std::isfinite(c.sessions_per_second)) {
      return Status::InvalidArgument("sweep plots: sessions per second of a cell is not finite");
    }
    const std::pair<std::string, double> key{c.model, c.sessions_per_second};
    if (std::find(groups.begin(), groups.end(), key) == groups.end()) groups.push_back(key);
  }
  std::vector<std::string> written;
  auto write = [&](const std::string& name, const PlotSpec& spec) -> Status {
    const std::string path = directory + "/" + name;
    if (Status s = WriteFile(path, RenderSvgLinePlot(spec)); !s.ok()) return s;
    written.push_back(path);
    return Status::Ok();
  };
  for (const auto& [model, sps] : groups) {
    std::vector<const SweepCell*> g;
    for (const SweepCell& c : cells) {
      if (c.model == model && c.sessions_per_second == sps) g.push_back(&c);
    }
    std::vector<std::string> policies;
    std::vector<int64_t> capacities;
    for (const SweepCell* c : g) {
      if (std::find(policies.begin(), policies.end(), c->summary.system) == policies.end()) {
        policies.push_back(c->summary.system);
      }
      if (std::find(capacities.begin(), capacities.end(), c->capacity_bytes) == capacities.end()) {
        capacities.push_back(c->capacity_bytes);
      }
    }
    std::sort(capacities.begin(), capacities.end());
    auto find = [&](const std::string& policy, int64_t cap) -> const SweepCell* {
      for (const SweepCell* c : g) {
        if (c->summary.system == policy && c->capacity_bytes == cap) return c;
      }
      return nullptr;
    };
    const std::string where = model + ", " + SpsLabel(sps);
    PlotSpec hit{"Token hit rate vs cache size (" + where + ")",
                 "cache size (GB)",
                 "token hit rate (%)",
                 false,
                 {}};
    for (const std::string& p : policies) {
      PlotSeries s{p, {}};
      for (int64_t cap : capacities) {
        if (const SweepCell* c = find(p, cap); c && cap != PrefixCacheConfig::kUnlimited) {
          s.points.push_back({static_cast<double>(cap) / 1e9, 100 * c->summary.token_hit_rate});
        }
      }
      hit.series.push_back(std::move(s));
    }
    if (Status s = write("hit_rate_vs_capacity_" + Slug(model, sps) + ".svg", hit); !s.ok()) {
      return s;
    }
    PlotSpec win{"Marconi's token hit rate over each baseline (" + where + ")",
                 "cache size (GB)",
                 "relative win (%)",
                 false,
                 {}};
    for (const std::string& base : policies) {
      if (!IsBaseline(base)) continue;
      PlotSeries s{"vs " + base, {}};
      for (int64_t cap : capacities) {
        const SweepCell* m = find(SystemName(SystemKind::kMarconi), cap);
        const SweepCell* b = find(base, cap);
        if (m && b && b->summary.token_hit_rate > 0 && cap != PrefixCacheConfig::kUnlimited) {
          s.points.push_back({static_cast<double>(cap) / 1e9,
                              100 * (m->summary.token_hit_rate / b->summary.token_hit_rate - 1)});
        }
      }
      if (!s.points.empty()) win.series.push_back(std::move(s));
    }
    if (!win.series.empty()) {
      if (Status s = write("marconi_win_" + Slug(model, sps) + ".svg", win); !s.ok()) return s;
    }
    const int64_t mid = capacities[capacities.size() / 2];
    PlotSpec cdf{"TTFT CDF at " + FormatBytes(mid) + " (" + where + ")",
                 "time to first token (ms)",
                 "requests (%)",
                 false,
                 {}};
    for (const std::string& p : policies) {
      const SweepCell* c = find(p, mid);
      if (!c || c->ttft_ms.empty()) continue;
      std::vector<double> v = c->ttft_ms;
      std::sort(v.begin(), v.end());
      PlotSeries s{p, {}, false};
      const size_t steps = std::min<size_t>(v.size(), 200);  // enough points for a smooth curve
      for (size_t k = 0; k <= steps; ++k) {
        const size_t i = std::min(v.size() - 1, k * (v.size() - 1) / std::max<size_t>(steps, 1));
        s.points.push_back(
            {v[i], 100.0 * static_cast<double>(i + 1) / static_cast<double>(v.size())});
      }
      cdf.series.push_back(std::move(s));
    }
    if (Status s = write("ttft_cdf_" + Slug(model, sps) + ".svg", cdf); !s.ok()) return s;
  }
  return written;
}

}  // namespace marconi::sim
