// Reading a whole file into memory: one place for the core, the simulator and the engine.
#ifndef MARCONI_UTIL_READ_FILE_H_
#define MARCONI_UTIL_READ_FILE_H_

#include <sys/stat.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <new>
#include <string>

#include "marconi/status.h"

namespace marconi::internal {

// The largest file ReadWholeFile reads by default: 8 GiB, far above any trace, config or weights
// file marconi uses, and below what a machine that runs it can hold.
inline constexpr size_t kMaxReadBytes = size_t{8} << 30;

// The bytes of `path`, read with one copy, leaving at least `slack` bytes of spare capacity after
// them (for parsers that read a little past the end). kIoError names the path: it cannot be
// opened or read, it is a directory or not a regular file, or it is larger than `max_bytes`.
// Inline: src/util is header-only, so that the simulator and the engine use it without linking
// the core's internals.
inline Result<std::string> ReadWholeFile(const std::string& path, size_t slack = 0,
                                         size_t max_bytes = kMaxReadBytes) {
  // A directory opens and seeks like a file on Linux, to a meaningless size: check first.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::IoError("cannot open '" + path + "': " + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) return Status::IoError("cannot read '" + path + "': is a directory");
  if (!S_ISREG(st.st_mode)) {
    return Status::IoError("cannot read '" + path + "': not a regular file");
  }
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Status::IoError("cannot open '" + path + "'");
  const std::streamoff size = in.tellg();
  if (size < 0) return Status::IoError("cannot size '" + path + "'");
  if (static_cast<unsigned long long>(size) > max_bytes) {
    return Status::IoError("cannot read '" + path + "': " + std::to_string(size) +
                           " bytes, more than the limit of " + std::to_string(max_bytes));
  }
  std::string data;
  try {
    data.reserve(static_cast<size_t>(size) + slack);
  } catch (const std::bad_alloc&) {
    return Status::IoError("cannot read '" + path + "': out of memory for " + std::to_string(size) +
                           " bytes");
  }
  data.resize(static_cast<size_t>(size));
  in.seekg(0);
  in.read(data.data(), size);
  if (!in) return Status::IoError("cannot read '" + path + "'");
  return data;
}

}  // namespace marconi::internal

#endif  // MARCONI_UTIL_READ_FILE_H_
