#include "sim/file_io.h"

#include <zstd.h>

#include <fstream>
#include <memory>

#include "util/read_file.h"

namespace marconi::sim {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

namespace {

Result<std::string> Decompress(const std::string& compressed, const std::string& path) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  std::string out;
  const unsigned long long frame = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (frame != ZSTD_CONTENTSIZE_UNKNOWN && frame != ZSTD_CONTENTSIZE_ERROR &&
      frame < (1ull << 36)) {
    out.reserve(static_cast<size_t>(frame) + kReadSlack);
  }
  std::string buffer(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  size_t last = 0;
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
    last = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(last)) {
      return Status::ParseError(path + ": corrupt zstd data: " + ZSTD_getErrorName(last));
    }
    out.append(buffer.data(), o.pos);
  }
  // Flush what the decoder still holds.
  while (last != 0) {
    ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
    last = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(last)) {
      return Status::ParseError(path + ": corrupt zstd data: " + ZSTD_getErrorName(last));
    }
    if (o.pos == 0 && last != 0) {
      return Status::ParseError(path + ": truncated zstd data");
    }
    out.append(buffer.data(), o.pos);
  }
  return out;
}

}  // namespace

Result<std::string> ReadFile(const std::string& path) {
  // Spare capacity lets parsers that read a little past the end (simdjson) avoid a copy.
  Result<std::string> data = internal::ReadWholeFile(path, kReadSlack);
  if (!data.ok() || !EndsWith(path, ".zst")) return data;
  return Decompress(*data, path);
}

Status WriteFile(const std::string& path, std::string_view data) {
  std::string compressed;
  std::string_view out = data;
  if (EndsWith(path, ".zst")) {
    compressed.resize(ZSTD_compressBound(data.size()));
    const size_t n =
        ZSTD_compress(compressed.data(), compressed.size(), data.data(), data.size(), 3);
    if (ZSTD_isError(n)) return Status::IoError(path + ": zstd: " + ZSTD_getErrorName(n));
    compressed.resize(n);
    out = compressed;
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status::IoError("cannot create '" + path + "'");
  f.write(out.data(), static_cast<std::streamsize>(out.size()));
  f.close();
  if (!f) return Status::IoError("cannot write '" + path + "'");
  return Status::Ok();
}

}  // namespace marconi::sim
