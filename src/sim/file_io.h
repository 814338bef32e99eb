// Whole-file reading and writing, transparently zstd-compressed when the name ends in ".zst".
#ifndef MARCONI_SIM_FILE_IO_H_
#define MARCONI_SIM_FILE_IO_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "marconi/status.h"

namespace marconi::sim {

// Spare capacity ReadFile leaves after the data (at least simdjson's padding).
inline constexpr size_t kReadSlack = 128;
// The default cap on a file's (decompressed) size: the core's internal::kMaxReadBytes, 8 GiB.
extern const size_t kMaxFileBytes;

// The file's bytes, decompressed if `path` ends in ".zst". kIoError names the path, also when the
// file, or its decompressed content, is larger than `max_bytes` (default 8 GiB: a guard against
// decompression bombs; decompression streams, so memory follows the actual content, never a size
// a frame header declares). A corrupt or truncated zstd stream is a kParseError.
Result<std::string> ReadFile(const std::string& path, size_t max_bytes = kMaxFileBytes);

// Decompresses every zstd frame of `compressed` (the content of `source`, named in errors) as
// ReadFile does: streaming, kIoError beyond `max_bytes`, kParseError for corrupt or truncated
// data. The output has kReadSlack bytes of spare capacity.
Result<std::string> DecompressZstd(std::string_view compressed, const std::string& source,
                                   size_t max_bytes = kMaxFileBytes);

// Writes `data` to `path` (zstd level 3 if it ends in ".zst"). kIoError names the path.
Status WriteFile(const std::string& path, std::string_view data);

bool EndsWith(std::string_view s, std::string_view suffix);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_FILE_IO_H_
