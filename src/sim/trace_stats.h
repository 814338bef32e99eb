// What a trace offers a prefix cache, before simulating it.
#ifndef MARCONI_SIM_TRACE_STATS_H_
#define MARCONI_SIM_TRACE_STATS_H_

#include <string>
#include <vector>

#include "sim/trace.h"

namespace marconi::sim {

struct Distribution {
  double p5 = 0, p50 = 0, p95 = 0, mean = 0, max = 0;
};

struct TraceStats {
  int64_t requests = 0;
  int64_t sessions = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  Distribution input, output;  // tokens per request
  // Sum over requests of the longest common prefix of its input with any earlier request's
  // input + output: the hit tokens of an unbounded cache holding a state at every token.
  int64_t optimal_hit_tokens = 0;
  double optimal_hit_rate = 0;
  // Requests by that overlap depth: {"0", "1-1K", "1K-2K", ..., ">32K"} with counts.
  std::vector<std::pair<std::string, int64_t>> overlap_depths;
};

// Errors only for a trace that a cache rejects (an empty input, a decreasing timestamp): never
// for one that ReadTrace returned.
Result<TraceStats> ComputeTraceStats(const Trace& trace);
std::string FormatTraceStats(const TraceStats& stats, const std::string& source);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_TRACE_STATS_H_
