// The marconi command line.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "demo.h"
#include "marconi/model_spec.h"
#include "place.h"

int main(int argc, char** argv) {
  CLI::App app{"marconi: prefix caching for hybrid (attention + SSM) LLMs"};
  app.require_subcommand(1);

  marconi::tools::DemoOptions demo;
  std::string capacity;
  auto* demo_cmd = app.add_subcommand(
      "demo", "Serve a built-in synthetic workload with vLLM+, SGLang+ and Marconi; compare");
  demo_cmd->add_option("--model", demo.model, "Model preset or path to a config.json")
      ->capture_default_str();
  demo_cmd->add_option("--capacity", capacity, "Cache size, e.g. 20GB, 1.5GiB, inf");
  demo_cmd->add_option("--sessions", demo.sessions, "Number of sessions")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  demo_cmd->add_option("--seed", demo.seed, "Workload seed")->capture_default_str();

  std::string model_name = "paper-7b";
  auto* model_cmd = app.add_subcommand("model", "Describe a model's cache costs");
  model_cmd->add_option("model", model_name, "Model preset or path to a config.json")
      ->capture_default_str();
  bool list = false;
  model_cmd->add_flag("--list", list, "List the presets");

  marconi::tools::PlaceOptions place;
  auto* place_cmd = app.add_subcommand(
      "place", "Sparse checkpoint placement: checkpoints per request against prefill saved");
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
  place_cmd->add_option("-o,--output", place.output, "Write csv/json here instead of stdout");
  place_cmd->add_option("--svg", place.svg, "Write a Pareto plot (SVG) here");
  place_cmd->add_flag("--attention-aware", place.attention_aware,
                      "Weigh recompute by the model's FLOPs (quadratic attention) in the DP");
  place_cmd->add_flag("--skip-bad-lines", place.skip_bad_lines,
                      "Skip malformed trace lines (counted) instead of failing");

  CLI11_PARSE(app, argc, argv);

  if (*place_cmd) return marconi::tools::RunPlace(place);

  if (*demo_cmd) {
    if (!capacity.empty()) {
      demo.capacity_bytes = marconi::tools::ParseBytes(capacity);
      if (demo.capacity_bytes <= 0) {
        std::fprintf(stderr, "marconi demo: --capacity '%s' is not a size (try 20GB or inf)\n",
                     capacity.c_str());
        return 2;
      }
    }
    return marconi::tools::RunDemo(demo);
  }
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
  return 0;
}
