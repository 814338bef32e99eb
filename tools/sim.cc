#include "sim.h"

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <thread>

#include "cli_util.h"
#include "marconi/alpha_tuner.h"
#include "progress.h"
#include "report_error.h"
#include "serving_options.h"
#include "sim/file_io.h"
#include "sim/replay.h"
#include "sim/report.h"
#include "sim/synthetic.h"
#include "systems_options.h"

namespace marconi::tools {
namespace {

struct SimOptions {
  std::string trace;
  std::string model = "paper-7b";
  std::string capacity = "5GB";
  std::string format = "table";
  std::string per_request;
  std::string ttft_profile;
  bool ttft_interpolate = false;
  std::vector<double> roofline;
  double sps = 0;
  int sessions = 80;
  int threads = 0;
  bool skip_bad_lines = false;
  double multiplier = 5;
  std::string objective = "hit";
  bool tuner_flags = false;  // --tuner-multiplier or --tuner-objective given
  SystemsOptions systems;
  bool serving = false;
  sim::ServingOptions serving_options;
  bool capacity_given = false;
  bool systems_given = false;
};

int Fail(const Status& s) { return ReportError("sim", s); }

int Run(const SimOptions& o) {
  if (!o.per_request.empty()) {
    if (Status s = CheckOutputFile("--per-request", o.per_request); !s.ok()) return Fail(s);
  }
  sim::SimRequest request;
  request.trace = o.trace;
  request.sessions = o.sessions;
  request.sps = o.sps;
  request.skip_bad_lines = o.skip_bad_lines;
  request.model = o.model;
  request.capacity = o.capacity;
  request.systems = ChoiceOf(o.systems);
  if (o.tuner_flags) {
    request.tuner_multiplier = o.multiplier;
    request.tuner_objective = o.objective;
  }
  request.threads = o.threads;
  if (o.serving) {
    request.serving = o.serving_options;
    request.serving->capacity_is_budget = o.capacity_given;
    // Without --systems: the defaults the serving model serves (Simulate picks them).
    if (!o.systems_given) request.systems.systems.clear();
  }
  if (!o.roofline.empty()) {
    if (o.roofline.size() != 2) {
      return Fail(Status::InvalidArgument("--roofline takes PEAK_FLOPS,EFFICIENCY"));
    }
    auto t = sim::TtftModel::Roofline(o.roofline[0], o.roofline[1], 0);
    if (!t.ok()) return Fail(t.status());
    request.ttft = *t;
  } else if (!o.ttft_profile.empty()) {
    auto t = sim::TtftModel::FromProfileCsv(o.ttft_profile, !o.ttft_interpolate);
    if (!t.ok()) return Fail(t.status());
    request.ttft = *t;
  }
  Progress progress("sim");
  request.progress = [&](const std::string& system) {
    return progress.Callback("requests", system);
  };
  auto run = sim::Simulate(request);
  if (!run.ok()) return Fail(run.status());
  progress.Finish();
  WarnTrace("sim", run->trace);
  std::string text;
  if (o.serving) {
    text = o.format == "json" ? sim::serving::ServingJson(run->serving_rows, run->serving_context)
                              : sim::serving::ServingTable(run->serving_rows, run->serving_context);
  } else {
    text = o.format == "json" ? sim::SummaryJson(run->rows, run->context)
                              : sim::SummaryTable(run->rows, run->context);
  }
  std::fputs(text.c_str(), stdout);
  if (!o.per_request.empty()) {
    std::vector<std::string> names, routers;
    for (const sim::SystemResult& r : run->results) names.push_back(r.system);
    for (const sim::serving::ServingSummary& s : run->serving_rows) routers.push_back(s.router);
    const std::string csv = o.serving ? sim::serving::ServingPerRequestCsv(
                                            run->trace, names, run->serving_requests, routers)
                                      : sim::PerRequestCsv(run->trace, run->results);
    if (Status s = sim::WriteFile(o.per_request, csv); !s.ok()) {
      return Fail(s);
    }
  }
  return 0;
}

}  // namespace

void AddSimCommand(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<SimOptions>();
  auto* cmd = app.add_subcommand(
      "sim", "Replay a trace (default: a built-in synthetic workload) through every system");
  auto* trace = cmd->add_option("--trace", o->trace, "Trace: Marconi JSONL, plain or .zst")
                    ->check(CLI::ExistingFile);
  cmd->add_option("--model", o->model, "Model preset or config.json")->capture_default_str();
  auto* capacity = cmd->add_option("--capacity", o->capacity,
                                   "Cache size: 40GB, 1.5GiB, inf (with --serving: the memory "
                                   "shared by running requests and the cache; default: the "
                                   "device's HBM x 0.9 minus the weights)")
                       ->capture_default_str();
  AddSystemsOptions(cmd, &o->systems, sim::DefaultSystemNames());
  cmd->add_option("--format", o->format, "table or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
  cmd->add_option("--per-request", o->per_request,
                  "Write per-request results (CSV) here (with --serving: queue, prefill, TTFT, "
                  "TPOT and end-to-end times)");
  auto* profile =
      cmd->add_option("--ttft-profile", o->ttft_profile,
                      "Prefill profile CSV (prefill_tokens,ttft_ms), fitted by least squares");
  cmd->add_flag("--ttft-interpolate", o->ttft_interpolate,
                "Interpolate the profile instead of fitting a line")
      ->needs(profile);
  cmd->add_option("--roofline", o->roofline, "TTFT from FLOPs: PEAK_FLOPS,EFFICIENCY")
      ->delimiter(',')
      ->excludes(profile);
  cmd->add_option("--sps", o->sps, "Re-time sessions to start at this rate (sessions/s)")
      ->check(Positive());
  cmd->add_option("--sessions", o->sessions, "Sessions of the synthetic workload")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000))
      ->excludes(trace);
  cmd->add_option("--threads", o->threads, "Threads for alpha replays (0: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--skip-bad-lines", o->skip_bad_lines, "Skip and count malformed trace lines")
      ->needs(trace);
  auto* multiplier =
      cmd->add_option("--tuner-multiplier", o->multiplier,
                      "Tuning window, in multiples of the requests before the first eviction")
          ->capture_default_str()
          ->check(Positive());
  auto* objective =
      cmd->add_option("--tuner-objective", o->objective, "hit (token hit rate) or flops")
          ->capture_default_str()
          ->check(CLI::IsMember({"hit", "flops"}));
  auto* serving = cmd->add_flag(
      "--serving", o->serving,
      "Serve the trace through an event-driven continuous-batching engine on a device "
      "(docs/serving.md): queueing, TTFT, TPOT, goodput, preemptions");
  AddServingOptions(cmd, &o->serving_options, serving);
  cmd->callback([o, exit_code, multiplier, objective, capacity, cmd] {
    o->systems_given = cmd->get_option("--systems")->count() > 0;
    o->tuner_flags = multiplier->count() + objective->count() > 0;
    o->capacity_given = capacity->count() > 0;
    *exit_code = Run(*o);
  });
}

}  // namespace marconi::tools
