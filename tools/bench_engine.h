// The `marconi bench engine` job: the reference hybrid model's measured prefill costs.
#ifndef MARCONI_TOOLS_BENCH_ENGINE_H_
#define MARCONI_TOOLS_BENCH_ENGINE_H_

#include <CLI/CLI.hpp>

namespace marconi::tools {

void AddBenchCommand(CLI::App& app, int* exit_code);

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_BENCH_ENGINE_H_
