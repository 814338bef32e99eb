// Fuzzes the .zst reader (sim::DecompressZstd, what sim::ReadFile runs on a .zst file) with a
// 1 MiB cap: any input is content within the cap, or an error naming the source. Content agrees
// with zstd's one-shot decoder.
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_util.h"
#include "sim/file_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kCap = size_t{1} << 20;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto r = marconi::sim::DecompressZstd(in, "fuzz.zst", kCap);
  if (!r.ok()) {
    FUZZ_CHECK(r.status().code() == marconi::StatusCode::kIoError ||
                   r.status().code() == marconi::StatusCode::kParseError,
               r.status().ToString());
    FUZZ_CHECK(marconi::fuzz::StartsWith(r.status().message(), "fuzz.zst"), r.status().message());
  } else {
    FUZZ_CHECK(r->size() <= kCap, "output within the cap");
    FUZZ_CHECK(r->capacity() - r->size() >= marconi::sim::kReadSlack, "spare capacity");
  }
  // zstd's one-shot decoder, with room for one byte more than the cap. Neither accepts a superset
  // of the other's inputs (the one-shot decoder ignores the window size a frame declares, the
  // streaming decoder accepts empty compressed blocks), but when both decode, the content is
  // identical.
  static std::string reference(kCap + 1, '\0');
  const size_t n = ZSTD_decompress(reference.data(), reference.size(), data, size);
  if (r.ok() && !ZSTD_isError(n)) {
    FUZZ_CHECK(std::string_view(reference.data(), n) == *r, "same content as one-shot");
  }
  // When the one-shot decoder decodes within the cap, the streaming reader blames the cap only for
  // a frame that declares more (a legacy-format frame may declare any size and hold less).
  if (!r.ok() && !ZSTD_isError(n) && n <= kCap) {
    FUZZ_CHECK(r.status().code() == marconi::StatusCode::kParseError ||
                   r.status().message().find("frame declares") != std::string::npos,
               r.status().ToString());
  }
  return 0;
}
