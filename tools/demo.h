// The `marconi demo` job: a built-in synthetic workload served by the baselines and Marconi.
#ifndef MARCONI_TOOLS_DEMO_H_
#define MARCONI_TOOLS_DEMO_H_

#include <cstdint>
#include <string>

namespace marconi::tools {

struct DemoOptions {
  std::string model = "paper-7b";
  int64_t capacity_bytes = 0;  // 0: a size that makes the policies compete
  int sessions = 60;
  uint64_t seed = 1;
};

// Runs the demo and prints a comparison table; returns the process exit code.
int RunDemo(const DemoOptions& options);

// Parses "123", "40GB", "1.5GiB", "512MB", "inf" into bytes; -1 on error.
int64_t ParseBytes(const std::string& text);

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_DEMO_H_
