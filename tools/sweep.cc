#include "sweep.h"

#include <cstdio>
#include <memory>
#include <thread>

#include "cli_util.h"
#include "progress.h"
#include "report_error.h"
#include "serving_options.h"
#include "sim/file_io.h"
#include "sim/serving/sweep.h"
#include "sim/sweep.h"
#include "sim/synthetic.h"
#include "systems_options.h"

namespace marconi::tools {
namespace {

struct SweepOptions {
  std::string trace;
  std::vector<std::string> models = {"paper-7b"};
  std::vector<std::string> capacities = {"2GB", "3GB", "5GB", "7GB", "10GB"};
  std::vector<double> sps;
  std::string out = "sweep-out";
  std::string ttft_profile;
  int threads = 0;
  int sessions = 80;
  bool skip_bad_lines = false;
  SystemsOptions systems;
  bool serving = false;
  sim::ServingOptions serving_options;
  bool capacities_given = false;
};

int Fail(const Status& s) { return ReportError("sweep", s); }

// --serving: serving.csv and the TTFT p95 and goodput plots against the arrival rate, instead of
// sweep.csv (docs/serving.md).
int RunServing(const SweepOptions& o, const sim::SweepSpec& spec,
               sim::serving::ServingSweepSpec* serving, const sim::Trace& trace) {
  serving->models = spec.models;
  // Without --capacities: the device's budget (0).
  serving->budgets = o.capacities_given ? spec.capacities : std::vector<int64_t>{0};
  serving->sessions_per_second = spec.sessions_per_second;
  serving->systems = spec.systems;
  serving->base = spec.base;
  serving->threads = spec.threads;
  Progress progress("sweep");
  auto cells = sim::serving::RunServingSweep(trace, *serving, progress.Callback("runs"));
  progress.Finish();
  if (!cells.ok()) return Fail(cells.status());
  const std::string csv_path = o.out + "/serving.csv";
  auto plots = sim::serving::WriteServingSweepPlots(*cells, o.out);
  if (!plots.ok()) return Fail(plots.status());
  if (Status s = sim::WriteFile(csv_path, sim::serving::ServingSweepCsv(*cells)); !s.ok()) {
    return Fail(s);
  }
  std::printf("%zu serving runs over %s (%zu requests) on %d threads\nwrote %s\n", cells->size(),
              trace.source.c_str(), trace.requests.size(), spec.threads, csv_path.c_str());
  for (const std::string& p : *plots) std::printf("wrote %s\n", p.c_str());
  return 0;
}

int Run(const SweepOptions& o) {
  if (Status s = CheckOutputDir("--out", o.out); !s.ok()) return Fail(s);
  sim::SweepSpec spec;
  for (const std::string& m : o.models) {
    auto model = ModelSpec::FromNameOrFile(m);
    if (!model.ok()) return Fail(model.status());
    spec.models.push_back(*model);
  }
  for (const std::string& c : o.capacities) {
    auto bytes = sim::ParseBytes(c);
    if (!bytes.ok()) return Fail(bytes.status());
    for (const ModelSpec& m : spec.models) {
      if (Status s = sim::CheckCapacity(m, *bytes, c); !s.ok()) return Fail(s);
    }
    spec.capacities.push_back(*bytes);
  }
  sim::SystemsChoice choice = ChoiceOf(o.systems);
  if (Status s = sim::ApplySystemsChoice(choice, &spec.systems, &spec.base); !s.ok()) {
    return Fail(s);
  }
  sim::serving::ServingSweepSpec serving;
  if (o.serving) {
    if (Status s = sim::ApplyServingOptions(o.serving_options, &serving.serving, &serving.slo,
                                            &serving.routers);
        !s.ok()) {
      return Fail(s);
    }
  }
  Result<sim::Trace> trace = o.trace.empty()
                                 ? Result<sim::Trace>(sim::SyntheticMixed(o.sessions, 1.0, 1))
                                 : sim::ReadTrace(o.trace, {o.skip_bad_lines});
  if (!trace.ok()) return Fail(trace.status());
  WarnTrace("sweep", *trace);
  spec.sessions_per_second = o.sps;
  if (spec.sessions_per_second.empty()) {
    spec.sessions_per_second =
        o.trace.empty() ? std::vector<double>{0.5, 1, 2} : std::vector<double>{0};
  }
  if (!o.ttft_profile.empty()) {
    auto t = sim::TtftModel::FromProfileCsv(o.ttft_profile, true);
    if (!t.ok()) return Fail(t.status());
    spec.base.ttft = *t;
  }
  spec.threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (o.serving) return RunServing(o, spec, &serving, *trace);
  Progress progress("sweep");
  auto cells = sim::RunSweep(*trace, spec, progress.Callback("runs"));
  progress.Finish();
  if (!cells.ok()) return Fail(cells.status());
  const std::string csv_path = o.out + "/sweep.csv";
  auto plots = sim::WriteSweepPlots(*cells, o.out);
  if (!plots.ok()) return Fail(plots.status());
  if (Status s = sim::WriteFile(csv_path, sim::SweepCsv(*cells)); !s.ok()) return Fail(s);
  std::printf("%zu runs over %s (%zu requests) on %d threads\nwrote %s\n", cells->size(),
              trace->source.c_str(), trace->requests.size(), spec.threads, csv_path.c_str());
  for (const std::string& p : *plots) std::printf("wrote %s\n", p.c_str());
  return 0;
}

}  // namespace

void AddSweepCommand(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<SweepOptions>();
  auto* cmd = app.add_subcommand(
      "sweep", "Run a grid of models x capacities x arrival rates x systems; CSV and SVG plots");
  auto* trace = cmd->add_option("--trace", o->trace, "Trace (default: the synthetic workload)")
                    ->check(CLI::ExistingFile);
  cmd->add_option("--models", o->models, "Model presets or config.json files")
      ->delimiter(',')
      ->capture_default_str();
  auto* capacities = cmd->add_option("--capacities", o->capacities,
                                     "Cache sizes (with --serving: memory budgets shared by "
                                     "running requests and the cache; "
                                     "default: the device's)")
                         ->delimiter(',')
                         ->capture_default_str();
  cmd->add_option("--sps", o->sps,
                  "Session arrival rates (sessions/s; 0 keeps the trace's times); default "
                  "0.5,1,2 for the synthetic workload, 0 for a trace")
      ->delimiter(',')
      ->check(NonNegative());
  AddSystemsOptions(cmd, &o->systems, sim::DefaultSystemNames());
  cmd->add_option("-o,--out", o->out, "Output directory")->capture_default_str();
  cmd->add_option("--ttft-profile", o->ttft_profile, "Prefill profile CSV (least-squares line)");
  cmd->add_option("--threads", o->threads, "Concurrent runs (0: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--sessions", o->sessions, "Sessions of the synthetic workload")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000))
      ->excludes(trace);
  cmd->add_flag("--skip-bad-lines", o->skip_bad_lines, "Skip and count malformed trace lines")
      ->needs(trace);
  auto* serving = cmd->add_flag(
      "--serving", o->serving,
      "Serve through the serving model (docs/serving.md) at each rate of --sps: serving.csv "
      "(TTFT p50/p95, queue p95, goodput, throughput) and plots of TTFT p95 and goodput against "
      "the arrival rate, instead of sweep.csv");
  AddServingOptions(cmd, &o->serving_options, serving);
  cmd->callback([o, exit_code, capacities, cmd] {
    o->capacities_given = capacities->count() > 0;
    *exit_code = Run(*o);
  });
}

}  // namespace marconi::tools
