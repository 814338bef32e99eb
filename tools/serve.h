// The `marconi serve` job: a trace served through the reference hybrid model, with every policy's
// PrefixCache deciding what real states are stored and reused, against a no-cache baseline.
#ifndef MARCONI_TOOLS_SERVE_H_
#define MARCONI_TOOLS_SERVE_H_

#include <CLI/CLI.hpp>

namespace marconi::tools {

void AddServeCommand(CLI::App& app, int* exit_code);

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_SERVE_H_
