// How every `marconi` subcommand reports a failure: "marconi <command>: <code>: <message>" on
// stderr, and an exit code: 2 when the input is at fault (bad argument or file, unknown name,
// unreadable or malformed file), 1 for anything else.
#ifndef MARCONI_TOOLS_REPORT_ERROR_H_
#define MARCONI_TOOLS_REPORT_ERROR_H_

#include <cstdio>

#include "marconi/status.h"

namespace marconi::tools {

inline int ReportError(const char* command, const Status& s) {
  std::fprintf(stderr, "marconi %s: %s\n", command, s.ToString().c_str());
  const StatusCode c = s.code();
  return c == StatusCode::kInvalidArgument || c == StatusCode::kNotFound ||
                 c == StatusCode::kParseError || c == StatusCode::kIoError
             ? 2
             : 1;
}

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_REPORT_ERROR_H_
