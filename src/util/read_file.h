// Reading a whole file into memory: one place for the core, the simulator and the engine.
#ifndef MARCONI_UTIL_READ_FILE_H_
#define MARCONI_UTIL_READ_FILE_H_

#include <cstddef>
#include <string>

#include "marconi/status.h"

namespace marconi::internal {

// The largest file ReadWholeFile reads by default: 8 GiB, far above any trace, config or weights
// file marconi uses, and below what a machine that runs it can hold.
inline constexpr size_t kMaxReadBytes = size_t{8} << 30;

// The bytes of `path`, read with one copy, leaving at least `slack` bytes of spare capacity after
// them (for parsers that read a little past the end). kIoError names the path: it cannot be
// opened or read, it is a directory or not a regular file, or it is larger than `max_bytes`.
Result<std::string> ReadWholeFile(const std::string& path, size_t slack = 0,
                                  size_t max_bytes = kMaxReadBytes);

}  // namespace marconi::internal

#endif  // MARCONI_UTIL_READ_FILE_H_
