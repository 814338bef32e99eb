// The options that choose and configure the compared systems, shared by `sim` and `sweep`:
// --systems (alias --policy), --set SYSTEM.PARAM=VALUE and --recency. Everything they accept and
// say comes from the registry (src/sim/systems.h).
#ifndef MARCONI_TOOLS_SYSTEMS_OPTIONS_H_
#define MARCONI_TOOLS_SYSTEMS_OPTIONS_H_

#include <CLI/CLI.hpp>
#include <algorithm>
#include <string>
#include <vector>

#include "marconi/policies.h"
#include "sim/replay.h"
#include "sim/systems.h"

namespace marconi::tools {

struct SystemsOptions {
  std::string systems;
  std::vector<std::string> set;
  std::string recency{RecencyName(FlopAwareEvictionConfig{}.recency)};
  CLI::Option* recency_option = nullptr;
};

inline void AddSystemsOptions(CLI::App* cmd, SystemsOptions* o, const std::string& defaults) {
  o->systems = defaults;
  std::string help = "Systems, comma-separated, or all:";
  for (const sim::SystemSpec& s : sim::Systems()) {
    help += "\n  " + std::string(s.name) + ": " + std::string(s.help);
    for (const sim::SystemParam& p : s.params) {
      char def[32];
      std::snprintf(def, sizeof def, "%g", p.default_value);
      help += "\n      " + std::string(s.name) + "." + std::string(p.name) + " (default " + def +
              "): " + std::string(p.help);
    }
  }
  cmd->add_option("--systems,--policy", o->systems, help)->capture_default_str();
  cmd->add_option("--set", o->set,
                  "A system's parameter, SYSTEM.PARAM=VALUE (repeatable; see --systems)")
      ->take_all();
  o->recency_option =
      cmd->add_option("--recency", o->recency,
                      "FLOP-aware eviction's recency: inverse-requests (1 / requests since the "
                      "last access, as the authors' simulator) or linear-time (trace time)")
          ->capture_default_str();
}

// Parses the options into `kinds` and `config` (params, recency). kInvalidArgument for an unknown
// system or parameter, a value out of range, a --set for a system that is not run, or --recency
// without a FLOP-aware system.
inline Status ApplySystemsOptions(const SystemsOptions& o, std::vector<sim::SystemKind>* kinds,
                                  sim::SimConfig* config) {
  auto parsed = sim::ParseSystems(o.systems);
  if (!parsed.ok()) return parsed.status();
  *kinds = *parsed;
  for (const std::string& item : o.set) {
    auto set = sim::ParseSet(item, &config->params);
    if (!set.ok()) return set.status();
    if (std::find(kinds->begin(), kinds->end(), *set) == kinds->end()) {
      return Status::InvalidArgument("--set '" + item + "': " + sim::SystemName(*set) +
                                     " is not among the systems run (--systems)");
    }
  }
  const bool flop_aware = std::any_of(kinds->begin(), kinds->end(), [](sim::SystemKind k) {
    return sim::SpecOf(k).eviction == sim::Eviction::kFlopAware;
  });
  if (o.recency_option != nullptr && o.recency_option->count() > 0 && !flop_aware) {
    return Status::InvalidArgument(
        "--recency needs a system with FLOP-aware eviction in --systems");
  }
  auto recency = ParseRecency(o.recency);
  if (!recency.ok()) return recency.status();
  config->recency = *recency;
  return Status::Ok();
}

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_SYSTEMS_OPTIONS_H_
