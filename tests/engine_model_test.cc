// The CPU reference hybrid model: a hit (resume from a cached state) gives exactly the output of a
// full recompute; the chunked scan matches the recurrence; capture by chunk + roll forward matches
// a two-pass prefill; the matrix product kernels agree.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>

#include "engine/gemm.h"
#include "engine/hybrid_model.h"
#include "engine_test_util.h"
#include "test_util.h"

namespace marconi::engine {
namespace {

// The engine's tests stay off the simulator's file helpers (a separate library): plain streams.
std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool WriteBytes(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return static_cast<bool>(out);
}

// Resumes a full prefill of `tokens` at each position of `at` and returns, per position, the
// largest relative difference of the logits (0 = bit-identical, checked with operator==).
std::vector<float> ResumeDiffs(const HybridModel& m, const std::vector<Token>& tokens,
                               const std::vector<int64_t>& at, Kernels k) {
  SequenceState full = m.NewSequence();
  std::vector<Checkpoint> cps;
  const auto logits = m.Prefill(full, tokens, k, at, &cps).value();
  EXPECT_EQ(cps.size(), at.size());
  std::vector<float> diffs;
  for (const Checkpoint& cp : cps) {
    SequenceState resumed = m.Resume(full, cp).value();
    const auto rest = std::span<const Token>(tokens).subspan(static_cast<size_t>(cp.position));
    const auto again = m.Prefill(resumed, rest, k).value();
    diffs.push_back(logits == again ? 0.0f : std::max(MaxRelDiff(logits, again), 1e-30f));
    if (logits == again) {
      EXPECT_EQ(full.recurrent, resumed.recurrent) << "resume at " << cp.position;
      EXPECT_EQ(full.keys, resumed.keys) << "resume at " << cp.position;
    }
  }
  return diffs;
}

const Kernels kExact{ScanKernel::kSequential, MatmulKernel::kReference};

TEST(HybridModel, ResumeIsBitIdenticalWithSequentialScanAndReferenceMatmulsFromAnyPosition) {
  const HybridModel m = Model();
  const std::vector<int64_t> at = {1, 7, 8, 20, 44};
  const auto diffs = ResumeDiffs(m, Prompt(1, 45), at, kExact);
  for (size_t i = 0; i < at.size(); ++i) EXPECT_EQ(diffs[i], 0.0f) << "resume at " << at[i];
}

TEST(HybridModel, ResumeOnAChunkBoundaryIsBitIdenticalWithEveryKernel) {
  const HybridModel m = Model();                    // chunk_size 8
  const std::vector<int64_t> at = {8, 13, 32, 37};  // 13 and 37 inside chunks: rolled forward
  for (ScanKernel scan : {ScanKernel::kSequential, ScanKernel::kChunked}) {
    for (MatmulKernel mm : {MatmulKernel::kReference, MatmulKernel::kBlas}) {
      const auto diffs = ResumeDiffs(m, Prompt(2, 50), at, {scan, mm});
      for (size_t i = 0; i < at.size(); ++i) {
        SCOPED_TRACE("resume at " + std::to_string(at[i]) + ", scan " +
                     std::to_string(static_cast<int>(scan)) + ", matmul " +
                     std::to_string(static_cast<int>(mm)));
        if (at[i] % m.config().chunk_size == 0) {
          EXPECT_EQ(diffs[i], 0.0f);
        } else {
          // The chunk of the resume point is cut differently (scan, or row blocks of the
          // products): the same maths with other roundings.
          EXPECT_LT(diffs[i], 1e-4f);
        }
      }
    }
  }
}

TEST(HybridModel, BlasAndReferenceMatmulsAgreeToRounding) {
  const HybridModel m = Model();
  const auto tokens = Prompt(12, 40);
  for (ScanKernel scan : {ScanKernel::kSequential, ScanKernel::kChunked}) {
    SequenceState a = m.NewSequence(), b = m.NewSequence();
    const auto la = m.Prefill(a, tokens, {scan, MatmulKernel::kReference}).value();
    const auto lb = m.Prefill(b, tokens, {scan, MatmulKernel::kBlas}).value();
    EXPECT_LT(MaxRelDiff(la, lb), 1e-4f);
  }
}

TEST(HybridModel, ChunkedScanMatchesTheRecurrence) {
  const HybridModel m = Model("MMM");
  const auto tokens = Prompt(3, 40);
  SequenceState a = m.NewSequence(), b = m.NewSequence();
  const auto la = m.Prefill(a, tokens, ScanKernel::kSequential).value();
  const auto lb = m.Prefill(b, tokens, ScanKernel::kChunked).value();
  EXPECT_LT(MaxRelDiff(la, lb), 1e-4f);
  for (size_t i = 0; i < a.recurrent.size(); ++i) {
    EXPECT_LT(MaxRelDiff(a.recurrent[i].ssm, b.recurrent[i].ssm), 1e-4f);
    EXPECT_LT(MaxRelDiff(a.recurrent[i].conv, b.recurrent[i].conv), 1e-4f);
  }
  // The first layer's conv inputs come straight from the embeddings: identical in both kernels.
  EXPECT_EQ(a.recurrent[0].conv, b.recurrent[0].conv);
}

TEST(HybridModel, CaptureByRollForwardMatchesTwoPassPrefill) {
  const HybridModel m = Model();
  const auto tokens = Prompt(4, 37);
  const int64_t branch = 19;  // inside the third chunk
  SequenceState one = m.NewSequence();
  std::vector<Checkpoint> rolled;
  const std::vector<int64_t> at = {branch};
  ASSERT_TRUE(m.Prefill(one, tokens, ScanKernel::kChunked, at, &rolled).ok());
  // With reference products, the conv inputs (projections) are computed identically in both.
  SequenceState ref = m.NewSequence();
  std::vector<Checkpoint> ref_rolled;
  const Kernels ref_kernels{ScanKernel::kChunked, MatmulKernel::kReference};
  ASSERT_TRUE(m.Prefill(ref, tokens, ref_kernels, at, &ref_rolled).ok());
  SequenceState ref_two = m.NewSequence();
  ASSERT_TRUE(m.Prefill(ref_two, std::span<const Token>(tokens).first(branch), ref_kernels).ok());
  for (size_t li = 0; li < ref_two.recurrent.size(); ++li)
    EXPECT_EQ(ref_two.recurrent[li].conv, ref_rolled[0].layers[li].conv);
  // Two-pass: prefill to the branch point, read the state, continue.
  SequenceState two = m.NewSequence();
  ASSERT_TRUE(
      m.Prefill(two, std::span<const Token>(tokens).first(branch), ScanKernel::kChunked).ok());
  for (size_t li = 0; li < two.recurrent.size(); ++li) {
    EXPECT_LT(MaxRelDiff(two.recurrent[li].ssm, rolled[0].layers[li].ssm), 1e-5f);
    EXPECT_LT(MaxRelDiff(two.recurrent[li].conv, rolled[0].layers[li].conv), 1e-5f);
  }
  const auto l_two =
      m.Prefill(two, std::span<const Token>(tokens).subspan(branch), ScanKernel::kChunked).value();
  SequenceState fresh = m.NewSequence();
  const auto l_one = m.Prefill(fresh, tokens, ScanKernel::kChunked).value();
  EXPECT_LT(MaxRelDiff(l_one, l_two), 1e-4f);
}

TEST(HybridModel, CheckpointsSerialiseAndBadInputIsRejected) {
  const HybridModel m = Model();
  SequenceState s = m.NewSequence();
  std::vector<Checkpoint> cps;
  const std::vector<int64_t> at = {5};
  ASSERT_TRUE(m.Prefill(s, Prompt(5, 9), ScanKernel::kSequential, at, &cps).ok());
  const std::string bytes = SerializeCheckpoint(cps[0]);
  EXPECT_EQ(bytes.size(), 16 + 6 * 16 + static_cast<size_t>(m.CheckpointBytes()));
  auto back = DeserializeCheckpoint(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->position, 5);
  EXPECT_EQ(back->layers, cps[0].layers);
  EXPECT_FALSE(DeserializeCheckpoint(bytes.substr(0, bytes.size() - 3)).ok());
  EXPECT_FALSE(DeserializeCheckpoint(bytes + "x").ok());
  // A checkpoint of another model, or KV too short for it, is refused rather than read past.
  EXPECT_EQ(Model("MMA").Resume(Model("MMA").NewSequence(), cps[0]).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(m.Resume(m.NewSequence(), cps[0]).ok());
  EXPECT_TRUE(m.Resume(s, cps[0]).ok());

  const SequenceState before = s;
  const std::vector<Token> bad = {1, 300};
  EXPECT_EQ(m.Prefill(s, bad, ScanKernel::kChunked).status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(m.Prefill(s, {}, ScanKernel::kChunked).ok());
  const std::vector<int64_t> outside = {3};  // before the sequence's end
  EXPECT_FALSE(m.Prefill(s, Prompt(6, 4), ScanKernel::kChunked, outside, &cps).ok());
  EXPECT_EQ(s.tokens, before.tokens);
  EXPECT_EQ(s.keys, before.keys);
  HybridConfig c;
  c.pattern = "MAX";
  EXPECT_FALSE(HybridModel::Create(c).ok());
  c.pattern = "MA";
  c.n_kv_heads = 3;
  EXPECT_FALSE(HybridModel::Create(c).ok());
}

TEST(HybridModel, KvRangesSerialiseAndRebuildTheState) {
  const HybridModel m = Model();  // 2 attention layers of 6
  SequenceState full = m.NewSequence();
  std::vector<Checkpoint> cps;
  const std::vector<int64_t> at = {13};
  const auto tokens = Prompt(21, 30);
  const auto logits = m.Prefill(full, tokens, kExact, at, &cps).value();
  // Rebuild the KV of the first 13 tokens from three ranges, then resume.
  SequenceState rebuilt = m.NewSequence();
  for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 5}, {5, 6}, {6, 13}}) {
    const std::string bytes = m.SerializeKv(full, b, e);
    EXPECT_EQ(bytes.size(), 24 + static_cast<size_t>((e - b) * m.KvBytesPerToken()));
    ASSERT_TRUE(m.AppendKv(bytes, rebuilt).ok());
  }
  SequenceState resumed = m.Resume(rebuilt, cps[0]).value();
  const auto rest = std::span<const Token>(tokens).subspan(13);
  EXPECT_EQ(m.Prefill(resumed, rest, kExact).value(), logits);
  // A range that does not continue the state, truncated bytes, trailing bytes: nothing changes.
  const SequenceState before = rebuilt;
  const std::string next = m.SerializeKv(full, 13, 20);
  EXPECT_EQ(m.AppendKv(m.SerializeKv(full, 14, 20), rebuilt).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(m.AppendKv(next.substr(0, next.size() - 1), rebuilt).code(), StatusCode::kParseError);
  EXPECT_EQ(m.AppendKv(next + "x", rebuilt).code(), StatusCode::kParseError);
  EXPECT_EQ(m.AppendKv(next.substr(0, 10), rebuilt).code(), StatusCode::kParseError);
  EXPECT_EQ(rebuilt.keys, before.keys);
  EXPECT_EQ(rebuilt.values, before.values);
  EXPECT_EQ(Model("MAAAM").AppendKv(next, rebuilt).code(), StatusCode::kParseError);  // 3 layers
}

TEST(HybridModel, SafetensorsRoundTripAndErrors) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/weights.safetensors";
  const HybridModel a = Model();
  ASSERT_TRUE(a.SaveSafetensors(path).ok());
  HybridConfig other = a.config();
  other.seed = 99;
  HybridModel b = HybridModel::Create(other).value();
  const auto prompt = Prompt(7, 20);
  auto logits = [&](const HybridModel& m) {
    SequenceState s = m.NewSequence();
    return m.Prefill(s, prompt, ScanKernel::kChunked).value();
  };
  const auto before = logits(b);
  ASSERT_NE(before, logits(a));
  // A failed load leaves the weights as they were.
  const std::string file = ReadBytes(path);
  ASSERT_GT(file.size(), 100u);
  const std::string cut = dir + "/cut.safetensors";
  ASSERT_TRUE(WriteBytes(cut, file.substr(0, file.size() - 100)));
  const Status truncated = b.LoadSafetensors(cut);
  EXPECT_EQ(truncated.code(), StatusCode::kParseError);
  EXPECT_NE(truncated.message().find("data_offsets"), std::string::npos) << truncated.message();
  EXPECT_EQ(logits(b), before);
  HybridConfig wider = a.config();
  wider.d_ff = 96;
  HybridModel c = HybridModel::Create(wider).value();
  const Status shape = c.LoadSafetensors(path);
  EXPECT_NE(shape.message().find("layers.0.w_gate' has shape [128,64], expected [96,64]"),
            std::string::npos)
      << shape.message();
  ASSERT_TRUE(WriteBytes(cut, std::string("\x04\0\0\0\0\0\0\0{]x ", 12)));
  EXPECT_NE(b.LoadSafetensors(cut).message().find("not a JSON object"), std::string::npos);
  EXPECT_EQ(b.LoadSafetensors(dir + "/missing.safetensors").code(), StatusCode::kIoError);
  // A good load reproduces the saved model exactly.
  ASSERT_TRUE(b.LoadSafetensors(path).ok());
  EXPECT_EQ(logits(b), logits(a));
}

// Both kernels against a double-precision brute force on random shapes, strides and transposes;
// the reference kernel's rows do not depend on how many rows a call computes.
TEST(Gemm, BothKernelsMatchBruteForceAndReferenceRowsAreBatchInvariant) {
  auto rng = testing::SeededRng(6);
  for (int round = 0; round < 60; ++round) {
    const int64_t m = testing::Uniform(rng, 1, 40), n = testing::Uniform(rng, 1, 40),
                  k = testing::Uniform(rng, 1, 70);
    const bool trans_b = testing::Uniform(rng, 0, 1) == 1;
    const float beta = static_cast<float>(testing::Uniform(rng, 0, 1));
    const int64_t lda = k + testing::Uniform(rng, 0, 3), ldc = n + testing::Uniform(rng, 0, 3);
    const int64_t ldb = (trans_b ? k : n) + testing::Uniform(rng, 0, 3);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> a(static_cast<size_t>(m * lda)),
        b(static_cast<size_t>((trans_b ? n : k) * ldb)), c0(static_cast<size_t>(m * ldc));
    for (auto* v : {&a, &b, &c0})
      for (float& x : *v) x = u(rng);
    auto want = [&](int64_t i, int64_t j) {
      double acc = beta * c0[static_cast<size_t>(i * ldc + j)];
      for (int64_t kk = 0; kk < k; ++kk) {
        const float bv =
            trans_b ? b[static_cast<size_t>(j * ldb + kk)] : b[static_cast<size_t>(kk * ldb + j)];
        acc += static_cast<double>(a[static_cast<size_t>(i * lda + kk)]) * bv;
      }
      return acc;
    };
    std::vector<float> ref = c0, blas = c0;
    Gemm(MatmulKernel::kReference, trans_b, m, n, k, a.data(), lda, b.data(), ldb, beta, ref.data(),
         ldc);
    Gemm(MatmulKernel::kBlas, trans_b, m, n, k, a.data(), lda, b.data(), ldb, beta, blas.data(),
         ldc);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const size_t at = static_cast<size_t>(i * ldc + j);
        ASSERT_NEAR(ref[at], want(i, j), 1e-4) << "round " << round;
        ASSERT_NEAR(blas[at], want(i, j), 1e-4) << "round " << round;
      }
      for (int64_t j = n; j < ldc; ++j) {  // padding untouched
        ASSERT_EQ(ref[static_cast<size_t>(i * ldc + j)], c0[static_cast<size_t>(i * ldc + j)]);
        ASSERT_EQ(blas[static_cast<size_t>(i * ldc + j)], c0[static_cast<size_t>(i * ldc + j)]);
      }
    }
    // The last rows alone, by the reference kernel: bit-identical to the same rows above.
    const int64_t skip = testing::Uniform(rng, 0, m - 1);
    std::vector<float> tail(c0.begin() + skip * ldc, c0.end());
    Gemm(MatmulKernel::kReference, trans_b, m - skip, n, k, a.data() + skip * lda, lda, b.data(),
         ldb, beta, tail.data(), ldc);
    ASSERT_TRUE(std::equal(tail.begin(), tail.end(), ref.begin() + skip * ldc)) << round;
  }
}

}  // namespace
}  // namespace marconi::engine
