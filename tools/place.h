// The `marconi place` job: the sparse-placement Pareto experiment.
#ifndef MARCONI_TOOLS_PLACE_H_
#define MARCONI_TOOLS_PLACE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace marconi::tools {

struct PlaceOptions {
  std::string trace;  // empty: the built-in synthetic doc-QA workload
  std::string model = "paper-7b";
  int64_t chunk = 64;
  std::vector<int64_t> budgets = {1, 2, 4, 8, 16, 32};
  std::string format = "table";  // table | csv | json
  std::string output;            // file for csv/json; empty = stdout
  std::string svg;               // optional plot
  bool attention_aware = false;
  bool skip_bad_lines = false;
};

int RunPlace(const PlaceOptions& options);

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_PLACE_H_
