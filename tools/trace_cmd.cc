#include "trace_cmd.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <utility>
#include <vector>

#include "cli_util.h"
#include "progress.h"
#include "report_error.h"
#include "sim/trace_builder.h"
#include "sim/trace_stats.h"

namespace marconi::tools {
namespace {

struct BuildArgs {
  std::string input, workload, tokenizer, output;
  sim::BuildOptions options;
  // Workload-specific flags given on the command line, and the workloads they apply to.
  struct Specific {
    std::string flag;
    std::vector<sim::Workload> workloads;
  };
  std::vector<Specific> given;
};

int Fail(const char* what, const Status& s) {
  return ReportError((std::string("trace ") + what).c_str(), s);
}

int RunBuild(BuildArgs a) {
  const auto t0 = std::chrono::steady_clock::now();
  auto workload = sim::ParseWorkload(a.workload);
  if (!workload.ok()) return Fail("build", workload.status());
  a.options.workload = *workload;
  for (const BuildArgs::Specific& g : a.given) {
    if (std::find(g.workloads.begin(), g.workloads.end(), *workload) == g.workloads.end()) {
      return Fail("build",
                  Status::InvalidArgument(g.flag + " does not apply to --workload " + a.workload));
    }
  }
  if (Status s = CheckOutputFile("--output", a.output); !s.ok()) return Fail("build", s);
  auto encoder = sim::LoadSentencePiece(a.tokenizer);
  if (!encoder.ok()) return Fail("build", encoder.status());
  auto writer = sim::TraceWriter::Open(a.output);
  if (!writer.ok()) return Fail("build", writer.status());
  Progress progress("trace build");
  a.options.progress = progress.Callback("sessions tokenised");
  auto report = sim::BuildTrace(a.input, a.options, *encoder, **writer);
  progress.Finish();
  if (!report.ok()) {
    // The half-written file is removed just below and the build's error is the one to report:
    // a failure to close it adds nothing.
    (void)(*writer)->Close();
    std::remove(a.output.c_str());  // no half-written trace left behind
    return Fail("build", report.status());
  }
  if (Status s = (*writer)->Close(); !s.ok()) return Fail("build", s);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "%s: %lld requests from %lld sessions (%lld records read), %lld input and %lld output "
      "tokens, in %.2f s\n",
      a.output.c_str(), static_cast<long long>(report->requests),
      static_cast<long long>(report->sessions), static_cast<long long>(report->records),
      static_cast<long long>(report->input_tokens), static_cast<long long>(report->output_tokens),
      secs);
  return 0;
}

}  // namespace

void AddTraceCommand(CLI::App& app, int* exit_code) {
  auto* trace = app.add_subcommand("trace", "Build request traces from datasets; describe traces");
  trace->require_subcommand(1);

  auto a = std::make_shared<BuildArgs>();
  auto* build = trace->add_subcommand(
      "build", "Tokenise a normalised dataset (.jsonl[.zst]) into a Marconi trace");
  build->add_option("input", a->input, "Dataset: chat, agent, docqa or system-prompt records")
      ->required()
      ->check(CLI::ExistingFile);
  build->add_option("--workload", a->workload, "chat, agent, docqa or sysprompt")->required();
  build->add_option("--tokenizer", a->tokenizer, "SentencePiece model (e.g. llama2.model)")
      ->required()
      ->check(CLI::ExistingFile);
  build->add_option("-o,--output", a->output, "Trace to write (.jsonl or .jsonl.zst)")->required();
  auto& o = a->options;
  build->add_option("--sessions", o.sessions, "Sessions, documents or prompts")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  build->add_option("--sps", o.sps, "Sessions per second (sysprompt: requests per second)")
      ->capture_default_str()
      ->check(Positive());
  auto* art =
      build->add_option("--art", o.art, "Mean seconds between agent steps / document questions")
          ->capture_default_str()
          ->check(Positive());
  build->add_option("--seed", o.seed, "Seed of the selection and arrivals")->capture_default_str();
  build->add_option("--max-tokens", o.max_tokens, "Input cap in tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  auto* max_steps = build->add_option("--max-steps", o.max_steps, "Agent steps per run")
                        ->capture_default_str()
                        ->check(CLI::Range(1, 1000000));
  auto* min_turns = build
                        ->add_option("--min-turns", o.min_turns,
                                     "Chat: minimum assistant replies per conversation")
                        ->capture_default_str()
                        ->check(CLI::Range(1, 1000000));
  auto* collapse =
      build->add_flag("--collapse-old-outputs", o.collapse_old_outputs,
                      "Agent: collapse tool outputs older than the 5 latest (SWE-agent's history)");
  auto* queries =
      build
          ->add_option("--queries", o.queries_path, "Sysprompt: chat dataset of first-turn queries")
          ->check(CLI::ExistingFile);
  auto* per_prompt = build
                         ->add_option("--queries-per-prompt", o.queries_per_prompt,
                                      "Sysprompt: requests per prompt")
                         ->capture_default_str()
                         ->check(CLI::Range(1, 1000000));
  auto* zipf = build->add_option("--zipf", o.zipf, "Sysprompt: popularity exponent")
                   ->capture_default_str()
                   ->check(NonNegative());
  build->add_option("--threads", o.threads, "Tokenisation threads (0: all cores)")
      ->check(CLI::Range(0, 1024));
  using W = sim::Workload;
  const std::vector<std::pair<CLI::Option*, std::vector<W>>> specific = {
      {art, {W::kAgent, W::kDocQa}}, {max_steps, {W::kAgent}},   {collapse, {W::kAgent}},
      {min_turns, {W::kChat}},       {queries, {W::kSysprompt}}, {per_prompt, {W::kSysprompt}},
      {zipf, {W::kSysprompt}}};
  build->callback([a, exit_code, specific] {
    a->given.clear();
    for (const auto& [opt, workloads] : specific) {
      if (opt->count() > 0) a->given.push_back({opt->get_name(), workloads});
    }
    *exit_code = RunBuild(*a);
  });

  auto path = std::make_shared<std::string>();
  auto skip = std::make_shared<bool>(false);
  auto* stats = trace->add_subcommand("stats", "Requests, token distributions, optimal hit rate");
  stats->add_option("trace", *path, "Trace (.jsonl or .jsonl.zst)")
      ->required()
      ->check(CLI::ExistingFile);
  stats->add_flag("--skip-bad-lines", *skip, "Skip and count malformed lines");
  stats->callback([path, skip, exit_code] {
    auto t = sim::ReadTrace(*path, {*skip});
    if (!t.ok()) {
      *exit_code = Fail("stats", t.status());
      return;
    }
    WarnTrace("trace stats", *t);
    auto computed = sim::ComputeTraceStats(*t);
    if (!computed.ok()) {
      *exit_code = Fail("stats", computed.status());
      return;
    }
    std::fputs(sim::FormatTraceStats(*computed, *path).c_str(), stdout);
    *exit_code = 0;
  });
}

}  // namespace marconi::tools
