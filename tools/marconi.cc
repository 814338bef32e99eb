// The marconi command line.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "bench_engine.h"
#include "engine/gemm.h"
#include "marconi/model_spec.h"
#include "place.h"
#include "serve.h"
#include "sim.h"
#include "sweep.h"
#include "trace_cmd.h"

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // The reference model allocates its activations per prefill (megabytes per layer). With glibc's
  // defaults they are mmapped or trimmed away after every call and page-faulted back in by the
  // next, which cost ~15% of `marconi bench engine`'s prefill time. Keep freed memory instead.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  // See SetBlasThreads: the reference model's products are too small to share.
  if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr) marconi::engine::SetBlasThreads(1);
  CLI::App app{"marconi: prefix caching for hybrid (attention + SSM) LLMs"};
  app.require_subcommand(1);
  int exit_code = 0;

  marconi::tools::AddSimCommand(app, &exit_code);
  marconi::tools::AddSweepCommand(app, &exit_code);
  marconi::tools::AddTraceCommand(app, &exit_code);
  marconi::tools::AddBenchCommand(app, &exit_code);
  marconi::tools::AddServeCommand(app, &exit_code);

  std::string model_name = "paper-7b";
  auto* model_cmd = app.add_subcommand("model", "Describe a model's cache costs");
  model_cmd->add_option("model", model_name, "Model preset or path to a config.json")
      ->capture_default_str();
  bool list = false;
  model_cmd->add_flag("--list", list, "List the presets");

  marconi::tools::PlaceOptions place;
  auto* place_cmd = app.add_subcommand(
      "place", "Sparse checkpoint placement: checkpoints per request against prefill saved");
  auto* place_trace =
      place_cmd
          ->add_option("--trace", place.trace,
                       "Trace (Marconi JSONL, plain or .zst); default: synthetic doc-QA")
          ->check(CLI::ExistingFile);
  place_cmd->add_option("--model", place.model, "Model preset or config.json")
      ->capture_default_str();
  place_cmd->add_option("--chunk", place.chunk, "Checkpoint granularity in tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  place_cmd->add_option("--budgets", place.budgets, "Checkpoint budgets per entry")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{4096}));
  place_cmd->add_option("--format", place.format, "table, csv or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "csv", "json"}));
  place_cmd->add_option("-o,--output", place.output,
                        "Write csv/json here instead of stdout (needs --format csv or json)");
  place_cmd->add_option("--svg", place.svg, "Write a Pareto plot (SVG) here");
  place_cmd->add_flag("--attention-aware", place.attention_aware,
                      "Weigh recompute by the model's FLOPs (quadratic attention) in the DP");
  place_cmd
      ->add_flag("--skip-bad-lines", place.skip_bad_lines,
                 "Skip malformed trace lines (counted) instead of failing")
      ->needs(place_trace);

  // An unknown command name: CLI11 would only say "A subcommand is required".
  CLI::App* at = &app;
  std::string path = "marconi";
  bool help = false;
  auto names_of = [](CLI::App* a) {
    std::string names;
    for (CLI::App* s : a->get_subcommands([](CLI::App*) { return true; })) {
      names += (names.empty() ? "" : ", ") + s->get_name();
    }
    return names;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    help = help || arg == "-h" || arg == "--help";
    if (arg.empty() || arg[0] == '-') continue;
    const auto subs = at->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) break;  // a command's own arguments from here on
    CLI::App* next = nullptr;
    for (CLI::App* s : subs) {
      if (s->get_name() == arg) next = s;
    }
    if (next == nullptr) {
      std::fprintf(stderr, "%s: unknown command '%s' (commands: %s)\n", path.c_str(), arg.c_str(),
                   names_of(at).c_str());
      return 2;
    }
    at = next;
    path += " " + arg;
  }
  if (!help && !names_of(at).empty()) {
    std::fprintf(stderr, "%s: a command is required (commands: %s); --help describes them\n",
                 path.c_str(), names_of(at).c_str());
    return 2;
  }
  // Parse errors are bad input: exit 2 (CLI11_PARSE would exit with CLI11's own codes, 105 for a
  // missing file); --help exits 0. The subcommands' callbacks run inside parse().
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints the help, or the error and a hint
    return code == 0 ? 0 : 2;
  } catch (const std::exception& e) {  // a bug or an exhausted resource: not the input's fault
    std::fprintf(stderr, "marconi: internal error: %s\n", e.what());
    return 1;
  }

  if (*place_cmd) return marconi::tools::RunPlace(place);
  if (*model_cmd) {
    if (list) {
      for (const auto& name : marconi::ModelSpec::PresetNames()) std::printf("%s\n", name.c_str());
      return 0;
    }
    auto model = marconi::ModelSpec::FromNameOrFile(model_name);
    if (!model.ok()) {
      std::fprintf(stderr, "marconi model: %s\n", model.status().ToString().c_str());
      return 2;
    }
    std::printf("%s", model->Describe().c_str());
  }
  return exit_code;
}
