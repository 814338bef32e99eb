#include "util/read_file.h"

#include <fstream>

namespace marconi::internal {

Result<std::string> ReadWholeFile(const std::string& path, size_t slack) {
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
