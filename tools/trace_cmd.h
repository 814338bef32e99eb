// The `marconi trace build` and `marconi trace stats` jobs.
#ifndef MARCONI_TOOLS_TRACE_CMD_H_
#define MARCONI_TOOLS_TRACE_CMD_H_

#include <CLI/CLI.hpp>

namespace marconi::tools {

void AddTraceCommand(CLI::App& app, int* exit_code);

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_TRACE_CMD_H_
