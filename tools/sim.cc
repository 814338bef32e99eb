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
};

int Fail(const Status& s) { return ReportError("sim", s); }

int Run(const SimOptions& o) {
  auto model = ModelSpec::FromNameOrFile(o.model);
  if (!model.ok()) return Fail(model.status());
  auto capacity = sim::ParseBytes(o.capacity);
  if (!capacity.ok()) return Fail(capacity.status());
  sim::SimConfig config;
  std::vector<sim::SystemKind> systems;
  if (Status s = ApplySystemsOptions(o.systems, &systems, &config); !s.ok()) return Fail(s);
  if (o.tuner_flags && std::none_of(systems.begin(), systems.end(), sim::IsTuned)) {
    return Fail(Status::InvalidArgument(
        "--tuner-multiplier and --tuner-objective need a tuned system in --systems"));
  }
  if (!o.per_request.empty()) {
    if (Status s = CheckOutputFile("--per-request", o.per_request); !s.ok()) return Fail(s);
  }

  config.model = *model;
  config.capacity_bytes = *capacity;
  config.threads =
      o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  config.tuner.multiplier = o.multiplier;
  config.tuner.objective = o.objective == "flops" ? AlphaTunerConfig::Objective::kFlopsSaved
                                                  : AlphaTunerConfig::Objective::kTokenHitRate;
  // Validated here, not only by the policies that tune: a bad value is never silently ignored.
  if (auto tuner = AlphaTuner::Create(config.tuner); !tuner.ok()) {
    return Fail(Status::InvalidArgument("--tuner-multiplier: " + tuner.status().message()));
  }
  if (!o.roofline.empty()) {
    if (o.roofline.size() != 2) {
      return Fail(Status::InvalidArgument("--roofline takes PEAK_FLOPS,EFFICIENCY"));
    }
    auto t = sim::TtftModel::Roofline(o.roofline[0], o.roofline[1], 0);
    if (!t.ok()) return Fail(t.status());
    config.ttft = *t;
  } else if (!o.ttft_profile.empty()) {
    auto t = sim::TtftModel::FromProfileCsv(o.ttft_profile, !o.ttft_interpolate);
    if (!t.ok()) return Fail(t.status());
    config.ttft = *t;
  }

  Result<sim::Trace> trace = o.trace.empty()
                                 ? Result<sim::Trace>(sim::SyntheticMixed(o.sessions, 1.0, 1))
                                 : sim::ReadTrace(o.trace, {o.skip_bad_lines});
  if (!trace.ok()) return Fail(trace.status());
  WarnTrace("sim", *trace);
  if (o.sps > 0) {
    *trace = sim::Retime(*trace, o.sps);
  }

  // Validate the cache configuration once, before any replay.
  if (Status s = sim::CheckCapacity(*model, *capacity, o.capacity); !s.ok()) return Fail(s);
  std::vector<sim::SystemResult> results;
  std::vector<sim::Summary> rows;
  Progress progress("sim");
  for (sim::SystemKind kind : systems) {
    config.progress = progress.Callback("requests", sim::SystemName(kind));
    auto r = sim::RunSystem(*trace, kind, config);
    if (!r.ok()) return Fail(r.status());
    rows.push_back(sim::Summarize(*r));
    results.push_back(std::move(r).value());
  }
  progress.Finish();
  const sim::ReportContext ctx = sim::ContextOf(*trace, *model, *capacity, config.ttft, o.capacity);
  const std::string text =
      o.format == "json" ? sim::SummaryJson(rows, ctx) : sim::SummaryTable(rows, ctx);
  std::fputs(text.c_str(), stdout);
  if (!o.per_request.empty()) {
    if (Status s = sim::WriteFile(o.per_request, sim::PerRequestCsv(*trace, results)); !s.ok()) {
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
  cmd->add_option("--capacity", o->capacity, "Cache size: 40GB, 1.5GiB, inf")
      ->capture_default_str();
  AddSystemsOptions(cmd, &o->systems, sim::DefaultSystemNames());
  cmd->add_option("--format", o->format, "table or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
  cmd->add_option("--per-request", o->per_request, "Write per-request results (CSV) here");
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
  cmd->callback([o, exit_code, multiplier, objective] {
    o->tuner_flags = multiplier->count() + objective->count() > 0;
    *exit_code = Run(*o);
  });
}

}  // namespace marconi::tools
