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
#include "sim/simulate.h"
#include "sim/systems.h"

namespace marconi::tools {

struct SystemsOptions {
  std::string systems;
  std::vector<std::string> set;
  std::string recency{RecencyName(FlopAwareEvictionConfig{}.recency)};
  CLI::Option* recency_option = nullptr;
  bool leave_last_token = false;
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
  cmd->add_flag("--leave-last-token", o->leave_last_token,
                "Systems built on the cache core resume a whole-input hit before its last token, "
                "as engines do (the engine emulations always do)");
}

// The options as the simulator's SystemsChoice (an unset --recency stays unset).
inline sim::SystemsChoice ChoiceOf(const SystemsOptions& o) {
  sim::SystemsChoice c{o.systems, o.set, std::nullopt, o.leave_last_token};
  if (o.recency_option != nullptr && o.recency_option->count() > 0) c.recency = o.recency;
  return c;
}

// Parses the options into `kinds` and `config` (sim::ApplySystemsChoice).
inline Status ApplySystemsOptions(const SystemsOptions& o, std::vector<sim::SystemKind>* kinds,
                                  sim::SimConfig* config) {
  return sim::ApplySystemsChoice(ChoiceOf(o), kinds, config);
}

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_SYSTEMS_OPTIONS_H_
