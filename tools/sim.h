// The `marconi sim` job: every policy side by side on one trace.
#ifndef MARCONI_TOOLS_SIM_H_
#define MARCONI_TOOLS_SIM_H_

#include <CLI/CLI.hpp>

namespace marconi::tools {

// Registers the `sim` subcommand; its callback runs the simulation and sets *exit_code.
void AddSimCommand(CLI::App& app, int* exit_code);

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_SIM_H_
