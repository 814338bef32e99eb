#include "sim/file_io.h"

#include <zstd.h>

#include <fstream>
#include <memory>
#include <new>

#include "util/read_file.h"

namespace marconi::sim {

const size_t kMaxFileBytes = internal::kMaxReadBytes;

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

namespace {

std::string LimitMessage(const std::string& path, size_t max_bytes) {
  return path + ": decompresses to more than the limit of " + std::to_string(max_bytes) + " bytes";
}

}  // namespace

// Streams every frame of `compressed` through one decoder, never holding more than `max_bytes`
// of output: neither a frame header's declared size nor a small bomb can make it allocate more.
Result<std::string> DecompressZstd(std::string_view compressed, const std::string& path,
                                   size_t max_bytes) {
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) return Status::IoError(path + ": cannot create a zstd decoder");
  std::string out;
  // A declared size is a hint only (the frame may lie): reserve it when within the limit.
  const unsigned long long frame = ZSTD_getFrameContentSize(compressed.data(), compressed.size());
  if (frame != ZSTD_CONTENTSIZE_UNKNOWN && frame != ZSTD_CONTENTSIZE_ERROR) {
    if (frame > max_bytes) {
      return Status::IoError(path + ": zstd frame declares " + std::to_string(frame) +
                             " bytes, more than the limit of " + std::to_string(max_bytes));
    }
    if (frame <= compressed.size() * 64 + (1u << 20)) {
      out.reserve(static_cast<size_t>(frame) + kReadSlack);
    }
  }
  std::string buffer(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{compressed.data(), compressed.size(), 0};
  size_t last = 0;
  size_t frame_in = 0, frame_out = 0;  // where the current frame starts, in input and output
  try {
    // Until all input is consumed and the decoder has flushed the last frame (last == 0).
    while (in.pos < in.size || last != 0) {
      ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
      const size_t before = in.pos;
      last = ZSTD_decompressStream(ctx.get(), &o, &in);
      if (ZSTD_isError(last)) {
        return Status::ParseError(path + ": corrupt zstd data: " + ZSTD_getErrorName(last));
      }
      if (o.pos > max_bytes - out.size()) return Status::IoError(LimitMessage(path, max_bytes));
      out.append(buffer.data(), o.pos);
      if (in.pos == in.size && o.pos == 0 && in.pos == before && last != 0) {
        return Status::ParseError(path + ": truncated zstd data");
      }
      if (last == 0) {
        // A frame ended (the decoder stops at each frame's end). The streaming decoder does not
        // check the content size a frame declares (the one-shot decoder does): check it here.
        const unsigned long long declared =
            ZSTD_getFrameContentSize(compressed.data() + frame_in, compressed.size() - frame_in);
        const size_t produced = out.size() - frame_out;
        if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ZSTD_CONTENTSIZE_ERROR &&
            declared != produced) {
          return Status::ParseError(path + ": corrupt zstd data: a frame declares " +
                                    std::to_string(declared) + " bytes but holds " +
                                    std::to_string(produced));
        }
        frame_in = in.pos;
        frame_out = out.size();
      }
    }
    // Leave the spare capacity ReadFile promises, so that parsers need no padded copy.
    if (out.capacity() - out.size() < kReadSlack) out.reserve(out.size() + kReadSlack);
  } catch (const std::bad_alloc&) {
    return Status::IoError(path + ": out of memory after decompressing " +
                           std::to_string(out.size()) + " bytes");
  }
  return out;
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  // Spare capacity lets parsers that read a little past the end (simdjson) avoid a copy.
  Result<std::string> data = internal::ReadWholeFile(path, kReadSlack, max_bytes);
  if (!data.ok() || !EndsWith(path, ".zst")) return data;
  return DecompressZstd(*data, path, max_bytes);
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
