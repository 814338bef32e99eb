#include "util/read_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>

namespace marconi::internal {

Result<std::string> ReadWholeFile(const std::string& path, size_t slack, size_t max_bytes) {
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
