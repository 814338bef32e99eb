// Request traces in the Marconi JSONL format: one request a line,
//   {"session_id", "turn_id", "ts", "num_input_tokens", "num_output_tokens",
//    "input_tokens": [...], "output_tokens": [...]}
// plain or zstd-compressed (".zst").
#ifndef MARCONI_SIM_TRACE_H_
#define MARCONI_SIM_TRACE_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "marconi/status.h"
#include "marconi/types.h"

namespace marconi::sim {

struct TraceRequest {
  std::string session_id;
  int64_t turn_id = 0;
  double ts = 0;  // arrival, seconds
  std::vector<Token> input;
  std::vector<Token> output;
  int64_t line = 0;  // 1-based line in the source file (0 when built in memory)
};

struct Trace {
  std::string source;
  std::vector<TraceRequest> requests;  // sorted by ts (stable)
  int64_t skipped_lines = 0;           // malformed lines skipped (skip_bad_lines)
  int64_t reordered_requests = 0;      // requests that came before an earlier-ts line in the file
  int64_t input_tokens() const;
};

// An order and arrival times over a trace's requests: replay step k serves
// trace.requests[order[k]] at ts[k]. Replays at several arrival rates share one copy of the
// tokens this way (marconi sweep) instead of one re-timed copy of the trace each.
struct Schedule {
  std::vector<size_t> order;
  std::vector<double> ts;  // non-decreasing
};

struct TraceReadOptions {
  bool skip_bad_lines = false;  // skip and count malformed lines instead of failing
};

// Parses JSONL `text`; `source` names it in errors ("FILE:LINE: what"). Blank lines are ignored,
// and so is a UTF-8 byte order mark at the very start of the text (one elsewhere is an error).
// Required per line: ts (finite number), input_tokens (non-empty array of int32). Optional:
// session_id (string or integer; default: the line number), turn_id (integer), output_tokens,
// num_input_tokens / num_output_tokens (non-negative; must equal the length of the array, an
// absent output_tokens counting as empty). Unknown fields are ignored. An empty trace (no
// request) is a kParseError, and so is a session whose turns are not in time order in the file
// (naming both lines). Requests of different sessions out of time order are sorted by ts (stable)
// and counted in reordered_requests.
Result<Trace> ParseTrace(const std::string& text, const std::string& source,
                         const TraceReadOptions& options = {});
Result<Trace> ReadTrace(const std::string& path, const TraceReadOptions& options = {});

// JSONL of `trace` in the same format (input with num_* fields); `WriteTrace` compresses for .zst.
std::string FormatTrace(const Trace& trace);
// Sorts the requests by time; requests at the same time keep their order.
void SortByTime(Trace* trace);
Status WriteTrace(const std::string& path, const Trace& trace);

// Streams requests to a trace file (zstd-compressed for ".zst") without holding the trace:
// each request's input is given as pieces that are concatenated on the fly.
class TraceWriter {
 public:
  static Result<std::unique_ptr<TraceWriter>> Open(const std::string& path);
  ~TraceWriter();
  Status Write(const std::string& session_id, int64_t turn_id, double ts,
               const std::vector<std::span<const Token>>& input, std::span<const Token> output);
  // Flushes and closes; an error here means the file is incomplete.
  Status Close();
  int64_t requests() const { return requests_; }

 private:
  TraceWriter() = default;
  Status Flush(bool end);
  std::string path_;
  std::FILE* file_ = nullptr;
  void* zstd_ = nullptr;  // ZSTD_CCtx*, when compressing
  std::string buffer_;
  int64_t requests_ = 0;
};

}  // namespace marconi::sim

#endif  // MARCONI_SIM_TRACE_H_
