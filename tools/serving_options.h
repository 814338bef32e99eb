// The serving model's options, shared by `sim --serving` and `sweep --serving`: device, batching,
// SLO, arrivals, replicas and routers (the routers' names and help come from their table,
// src/sim/serving/router.h). Every one of them needs --serving.
#ifndef MARCONI_TOOLS_SERVING_OPTIONS_H_
#define MARCONI_TOOLS_SERVING_OPTIONS_H_

#include <CLI/CLI.hpp>
#include <string>

#include "sim/serving/router.h"
#include "sim/simulate.h"

namespace marconi::tools {

inline void AddServingOptions(CLI::App* cmd, sim::ServingOptions* o, CLI::Option* serving) {
  cmd->add_option("--device", o->device,
                  "A100-40GB, H100-80GB, H200, or a device profile (a .json path; docs/serving.md)")
      ->capture_default_str()
      ->needs(serving);
  cmd->add_option("--max-running", o->max_running, "Running requests at most")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->needs(serving);
  cmd->add_option("--token-budget", o->token_budget,
                  "Tokens per step (decodes + prefill chunks), >= --max-running")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->needs(serving);
  cmd->add_option("--chunk", o->chunk, "Prefill chunk per request per step")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->needs(serving);
  cmd->add_flag("--closed-loop", o->closed_loop,
                "A session's next turn arrives its trace gap after the previous one finished")
      ->needs(serving);
  cmd->add_option("--slo", o->slo, "Goodput SLO: ttft=2s,tpot=100ms")
      ->capture_default_str()
      ->needs(serving);
  cmd->add_option("--replicas", o->replicas,
                  "Replicas, each a device with its own cache and memory budget, fed by --router")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->needs(serving);
  std::string help = "Router of arriving requests to replicas: all, or some of (comma-separated)";
  for (const sim::serving::RouterSpec& r : sim::serving::Routers()) {
    help += std::string("\n  ") + r.name + ": " + r.help;
  }
  cmd->add_option("--router", o->router, help)->capture_default_str()->needs(serving);
}

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_SERVING_OPTIONS_H_
