// Bad input never crashes, hangs or gives a silently wrong result: it is an error that says what
// is wrong and where (issue 10, item 4). Each test here crashed or passed bad input through
// before its fix.
#include <gtest/gtest.h>
#include <zstd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "marconi/alpha_tuner.h"
#include "marconi/model_spec.h"
#include "sim/file_io.h"
#include "sim/sweep.h"
#include "sim/synthetic.h"
#include "sim/trace.h"
#include "sim/ttft_model.h"
#include "util/read_file.h"

namespace marconi {
namespace {

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Files

std::string TempPath(const std::string& name) { return ::testing::TempDir() + "/" + name; }

void WriteRaw(const std::string& path, const std::string& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
  std::fclose(f);
}

TEST(BadFile, ZstdFrameDeclaringSixtyGigabytesIsAnError) {
  // A zstd frame header declaring 60 GB of content, then one empty raw block: 17 bytes.
  std::string frame = {'\x28', '\xb5', '\x2f', '\xfd', '\xc0', '\x00'};
  uint64_t size = 60'000'000'000ull;
  for (int i = 0; i < 8; ++i) frame += static_cast<char>((size >> (8 * i)) & 0xff);
  frame += std::string{'\x01', '\x00', '\x00'};
  ASSERT_EQ(frame.size(), 17u);
  ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), size);
  const std::string path = TempPath("sixty_gb.jsonl.zst");
  WriteRaw(path, frame);
  const auto r = sim::ReadFile(path);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), path)) << r.status().message();
  const auto t = sim::ReadTrace(path);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(Contains(t.status().message(), path)) << t.status().message();
}

// Compresses `size` zero bytes in a frame that does not declare its size (streamed in pieces).
std::string ZeroBomb(size_t size) {
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  const std::string zeros(1 << 16, '\0');
  std::string out;
  std::string buffer(ZSTD_CStreamOutSize(), '\0');
  for (size_t done = 0; done <= size; done += zeros.size()) {
    const bool last = done + zeros.size() > size;
    ZSTD_inBuffer in{zeros.data(), last ? size - done : zeros.size(), 0};
    for (;;) {
      ZSTD_outBuffer o{buffer.data(), buffer.size(), 0};
      const size_t left = ZSTD_compressStream2(ctx, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
      EXPECT_FALSE(ZSTD_isError(left));
      out.append(buffer.data(), o.pos);
      if (last ? left == 0 : in.pos == in.size) break;
    }
    if (last) break;
  }
  ZSTD_freeCCtx(ctx);
  return out;
}

TEST(BadFile, DecompressionIsCappedWithAClearError) {
  const std::string bomb = ZeroBomb(size_t{4} << 20);
  EXPECT_LT(bomb.size(), 4096u);
  EXPECT_EQ(ZSTD_getFrameContentSize(bomb.data(), bomb.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  const std::string path = TempPath("bomb.jsonl.zst");
  WriteRaw(path, bomb);
  const auto capped = sim::ReadFile(path, size_t{1} << 20);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), StatusCode::kIoError);
  EXPECT_TRUE(Contains(capped.status().message(), path)) << capped.status().message();
  EXPECT_TRUE(Contains(capped.status().message(), "1048576")) << capped.status().message();
  // At or below the cap, the content is all there.
  const auto exact = sim::ReadFile(path, size_t{4} << 20);
  ASSERT_TRUE(exact.ok()) << exact.status().ToString();
  EXPECT_EQ(exact->size(), size_t{4} << 20);
  // The same content in a frame that declares its size, and in several concatenated frames.
  const std::string declared = TempPath("declared.zst");
  ASSERT_TRUE(sim::WriteFile(declared, std::string(size_t{2} << 20, 'a')).ok());
  EXPECT_FALSE(sim::ReadFile(declared, size_t{1} << 20).ok());
  EXPECT_TRUE(sim::ReadFile(declared, size_t{2} << 20).ok());
  const std::string frames = TempPath("frames.zst");
  WriteRaw(frames, bomb + bomb + bomb);
  const auto three = sim::ReadFile(frames, size_t{8} << 20);
  ASSERT_FALSE(three.ok());
  EXPECT_TRUE(Contains(three.status().message(), "8388608")) << three.status().message();
  // Plain files are capped too.
  const std::string plain = TempPath("plain.jsonl");
  WriteRaw(plain, std::string(5000, 'x'));
  EXPECT_FALSE(sim::ReadFile(plain, 4999).ok());
  EXPECT_TRUE(sim::ReadFile(plain, 5000).ok());
  EXPECT_FALSE(internal::ReadWholeFile(plain, 0, 4999).ok());
}

TEST(BadFile, ADirectoryIsAClearErrorEverywhere) {
  const std::string dir = ::testing::TempDir();
  for (const Status& s :
       {internal::ReadWholeFile(dir).status(), sim::ReadFile(dir).status(),
        sim::ReadTrace(dir).status(), sim::TtftModel::FromProfileCsv(dir, true).status(),
        ModelSpec::FromHfConfigFile(dir).status(), ModelSpec::FromNameOrFile(dir).status()}) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kIoError) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "is a directory")) << s.message();
    EXPECT_TRUE(Contains(s.message(), dir)) << s.message();
  }
}

}  // namespace
}  // namespace marconi
