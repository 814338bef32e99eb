// Shared pieces of the `marconi` subcommands: readable number checks, output paths checked before
// a long run, trace warnings.
#ifndef MARCONI_TOOLS_CLI_UTIL_H_
#define MARCONI_TOOLS_CLI_UTIL_H_

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "marconi/status.h"
#include "sim/trace.h"

namespace marconi::tools {

// A number > 0 (strict) or >= 0, finite. CLI11's PositiveNumber / NonNegativeNumber print their
// bounds with 300 digits; these say "--sps: must be > 0, not '0'".
inline CLI::Validator NumberAbove(double bound, bool strict) {
  char num[32];
  std::snprintf(num, sizeof num, "%g", bound);
  const std::string rule = std::string(strict ? "> " : ">= ") + num;
  return CLI::Validator(
      [bound, strict, rule](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || !std::isfinite(v)) {
          return "must be a number " + rule + ", not '" + s + "'";
        }
        if (strict ? !(v > bound) : !(v >= bound)) return "must be " + rule + ", not '" + s + "'";
        return std::string();
      },
      rule);
}
inline CLI::Validator Positive() { return NumberAbove(0, true); }
inline CLI::Validator NonNegative() { return NumberAbove(0, false); }

// Checks, before a run, that `path` can be written: opened for appending (an existing file is left
// as it is; a new one is created, then removed). kInvalidArgument names the flag and the path.
inline Status CheckOutputFile(const char* flag, const std::string& path) {
  std::error_code ec;
  const bool existed = std::filesystem::exists(path, ec);
  if (existed && std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument(std::string(flag) + ": '" + path + "' is a directory");
  }
  std::FILE* f = std::fopen(path.c_str(), "ab");
  if (f == nullptr) {
    return Status::InvalidArgument(std::string(flag) + ": cannot write '" + path + "'");
  }
  std::fclose(f);
  if (!existed) std::filesystem::remove(path, ec);
  return Status::Ok();
}

// The same for an output directory: created if missing, and a file in it must be writable.
inline Status CheckOutputDir(const char* flag, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir, ec)) {
    return Status::InvalidArgument(std::string(flag) + ": cannot create directory '" + dir + "'");
  }
  const std::string probe = dir + "/.marconi-write-check";
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (f == nullptr) {
    return Status::InvalidArgument(std::string(flag) + ": cannot write in '" + dir + "'");
  }
  std::fclose(f);
  std::filesystem::remove(probe, ec);
  return Status::Ok();
}

// Warns once on stderr about what reading `trace` changed: requests of different sessions sorted
// by timestamp (ReadTrace refuses turns of one session out of order).
inline void WarnTrace(const char* command, const sim::Trace& trace) {
  if (trace.reordered_requests > 0) {
    std::fprintf(stderr,
                 "marconi %s: warning: %s: %lld requests were out of timestamp order (across "
                 "sessions) and were sorted by ts\n",
                 command, trace.source.c_str(), static_cast<long long>(trace.reordered_requests));
  }
}

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_CLI_UTIL_H_
