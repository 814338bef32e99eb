// The marconi command line.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "demo.h"
#include "marconi/model_spec.h"

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

  CLI11_PARSE(app, argc, argv);

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
