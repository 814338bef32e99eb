// Reading a whole file into memory: one place for the core, the simulator and the engine.
#ifndef MARCONI_UTIL_READ_FILE_H_
#define MARCONI_UTIL_READ_FILE_H_

#include <cstddef>
#include <fstream>
#include <string>

#include "marconi/status.h"

namespace marconi::internal {

// The bytes of `path`, read with one copy, leaving at least `slack` bytes of spare capacity after
// them (for parsers that read a little past the end). kIoError names the path. Inline: src/util is
// header-only, so that the simulator and the engine use it without linking the core's internals.
inline Result<std::string> ReadWholeFile(const std::string& path, size_t slack = 0) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Status::IoError("cannot open '" + path + "'");
  const std::streamoff size = in.tellg();
  if (size < 0) return Status::IoError("cannot size '" + path + "'");
  std::string data;
  data.reserve(static_cast<size_t>(size) + slack);
  data.resize(static_cast<size_t>(size));
  in.seekg(0);
  in.read(data.data(), size);
  if (!in) return Status::IoError("cannot read '" + path + "'");
  return data;
}

}  // namespace marconi::internal

#endif  // MARCONI_UTIL_READ_FILE_H_
