// The registry of compared systems: one row per system, from which everything else about it
// derives (its --systems name, help text, how its cache is built, whether and how it tunes alpha,
// whether the sweep plots Marconi's win over it, and its parameters with their defaults).
//
// Adding a system: a SystemKind value, one row in kSystems (systems.cc), and, if it needs new
// admission or eviction behaviour, the policy classes and their case in MakeSystem (replay.cc);
// for an engine emulation, its EngineCache class and factory (sim/engines/engine_cache.h).
// The tests loop over every row.
#ifndef MARCONI_SIM_SYSTEMS_H_
#define MARCONI_SIM_SYSTEMS_H_

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "marconi/status.h"
#include "sim/engines/engine_cache.h"

namespace marconi::sim {

enum class SystemKind {
  kVanilla,
  kVllmPlus,
  kSglangPlus,
  kMarconi,
  kMarconiOneShot,
  kOracle,
  kSparse,
  kTrtllm,
  kLlamacpp,
  kSglang,
  kSglangNoBuffer,
  kSglangLazy,
  kSglangMarconi,
  kVllm,
  kVllmAll,
  kVllmMarconi,
};

// Which states a system stores.
enum class Admission {
  kNone,       // no cache at all
  kJudicious,  // Marconi's: the speculative branch point and the last decoded token
  kBlock,      // a state every block_size tokens
  kSparse,     // sparse placement (relative DP) plus the last decoded token
  kEngine,     // an emulated engine's own rules (SystemSpec::engine)
};

// Which state it evicts first.
enum class Eviction {
  kNone,
  kLru,        // LRU over leaves, the whole path refreshed on access
  kFlopAware,  // Marconi's utility over nodes with <= 1 child, only the node used refreshed
  kEngine,     // an emulated engine's own order (SystemSpec::engine)
};

// How its eviction alpha is chosen.
enum class Tuning {
  kNone,       // no alpha, or alpha 0
  kOnline,     // the alpha tuner, re-tuning after every window
  kOneShot,    // the alpha tuner, once (the paper)
  kHindsight,  // the best fixed alpha of the grid over the whole trace (an upper bound)
};

// A numeric parameter of a system, settable with --set SYSTEM.NAME=VALUE.
struct SystemParam {
  std::string_view name;
  double default_value;
  double min, max;  // the valid range, inclusive
  bool integer;     // the value must be a whole number
  std::string_view help;
};

struct SystemSpec {
  SystemKind kind;
  std::string_view name;  // --systems name; the "system" key of every output
  std::string_view help;
  Admission admission;
  Eviction eviction;
  Tuning tuning;
  // The sweep plots Marconi's win over this system.
  bool baseline;
  std::span<const SystemParam> params;
  // For emulations of a serving engine (admission and eviction kEngine): builds its cache. The
  // replay then serves the trace through it instead of a PrefixCache. Null otherwise.
  EngineFactory engine = nullptr;
  // Run when --systems is not given (vanilla, today's engines, the paper's baselines, Marconi,
  // the oracle); variants and ablations are run on request.
  bool shown_by_default = true;
};

// Every system, in the order reports list them.
std::span<const SystemSpec> Systems();
const SystemSpec& SpecOf(SystemKind kind);
const char* SystemName(SystemKind kind);
// "vanilla, vllm+, ..." for help texts and errors.
std::string SystemNames();
// Whether the system runs the online alpha tuner (kOnline or kOneShot).
bool IsTuned(SystemKind kind);

// The systems run by default, comma-separated: the rows with shown_by_default.
std::string DefaultSystemNames();

// "all", or a comma-separated list of names (repeats ignored); kInvalidArgument names the unknown
// one and lists the systems.
Result<std::vector<SystemKind>> ParseSystems(const std::string& list);

// Parameter values that differ from the registry's defaults, by "system.param".
using SystemOverrides = std::map<std::string, double>;
// Parses one --set item, "SYSTEM.PARAM=VALUE", into `overrides`, checking that the system and
// the parameter exist and that the value is a number in the parameter's range. Returns the system.
Result<SystemKind> ParseSet(const std::string& item, SystemOverrides* overrides);
// The effective value of `param` of `kind`: the override, else the default. The parameter must
// exist (a programming error otherwise: returns the NaN of an unknown name).
double Param(SystemKind kind, std::string_view param, const SystemOverrides& overrides);
// Every parameter of `kind` with its effective value.
std::map<std::string, double> EffectiveParams(SystemKind kind, const SystemOverrides& overrides);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_SYSTEMS_H_
