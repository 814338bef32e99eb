// Reading a whole file into memory: one place for the core, the simulator and the engine.
#ifndef MARCONI_UTIL_READ_FILE_H_
#define MARCONI_UTIL_READ_FILE_H_

#include <cstddef>
#include <string>

#include "marconi/status.h"

namespace marconi::internal {

// The bytes of `path`, read with one copy, leaving at least `slack` bytes of spare capacity after
// them (for parsers that read a little past the end). kIoError names the path.
Result<std::string> ReadWholeFile(const std::string& path, size_t slack = 0);

}  // namespace marconi::internal

#endif  // MARCONI_UTIL_READ_FILE_H_
