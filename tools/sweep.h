// The `marconi sweep` job: a grid of runs in parallel, CSV and plots.
#ifndef MARCONI_TOOLS_SWEEP_H_
#define MARCONI_TOOLS_SWEEP_H_

#include <CLI/CLI.hpp>

namespace marconi::tools {

void AddSweepCommand(CLI::App& app, int* exit_code);

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_SWEEP_H_
