// The CPU reference hybrid model: a hit (resume from a cached state) gives exactly the output of a
// full recompute; the chunked scan matches the recurrence; capture by chunk + roll forward matches
// a two-pass prefill.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/hybrid_model.h"
#include "test_util.h"

namespace marconi::engine {
namespace {

HybridModel Model(const std::string& pattern = "MAMMAM") {
  HybridConfig c;
  c.pattern = pattern;
  c.chunk_size = 8;
  auto m = HybridModel::Create(c);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

std::vector<Token> Prompt(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::vector<Token> t(n);
  for (Token& x : t) x = static_cast<Token>(rng() % 256);
  return t;
}

float MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0, scale = 1e-6f;
  for (float v : a) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / scale);
  return worst;
}

TEST(HybridModel, ResumeIsBitIdenticalWithTheSequentialKernelFromAnyPosition) {
  const HybridModel m = Model();
  const auto tokens = Prompt(1, 45);
  for (int64_t p : {1, 7, 8, 20, 44}) {
    SequenceState full = m.NewSequence();
    std::vector<Checkpoint> cps;
    const std::vector<int64_t> at = {p};
    const auto logits = m.Prefill(full, tokens, ScanKernel::kSequential, at, &cps).value();
    SequenceState resumed = m.Resume(full, cps.at(0));
    const auto rest = std::span<const Token>(tokens).subspan(static_cast<size_t>(p));
    const auto again = m.Prefill(resumed, rest, ScanKernel::kSequential).value();
    EXPECT_EQ(logits, again) << "resume at " << p;
    EXPECT_EQ(full.recurrent, resumed.recurrent);
    EXPECT_EQ(full.keys, resumed.keys);
  }
}

TEST(HybridModel, ChunkedResumeIsBitIdenticalOnChunkBoundaries) {
  const HybridModel m = Model();
  const auto tokens = Prompt(2, 50);
  SequenceState full = m.NewSequence();
  std::vector<Checkpoint> cps;
  const std::vector<int64_t> at = {8, 13, 32};  // 13 is inside a chunk: rolled forward
  const auto logits = m.Prefill(full, tokens, ScanKernel::kChunked, at, &cps).value();
  ASSERT_EQ(cps.size(), 3u);
  for (const Checkpoint& cp : cps) {
    SequenceState resumed = m.Resume(full, cp);
    const auto again =
        m.Prefill(resumed, std::span<const Token>(tokens).subspan(static_cast<size_t>(cp.position)),
                  ScanKernel::kChunked)
            .value();
    if (cp.position % m.config().chunk_size == 0) {
      EXPECT_EQ(logits, again) << "resume at chunk boundary " << cp.position;
    } else {
      // The first chunk after the resume point is split differently: same maths, other rounding.
      EXPECT_LT(MaxRelDiff(logits, again), 1e-4f) << "resume at " << cp.position;
    }
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
  (void)m.Prefill(one, tokens, ScanKernel::kChunked, at, &rolled).value();
  // Two-pass: prefill to the branch point, read the state, continue.
  SequenceState two = m.NewSequence();
  (void)m.Prefill(two, std::span<const Token>(tokens).first(branch), ScanKernel::kChunked).value();
  for (size_t li = 0; li < two.recurrent.size(); ++li) {
    EXPECT_LT(MaxRelDiff(two.recurrent[li].ssm, rolled[0].layers[li].ssm), 1e-5f);
    EXPECT_EQ(two.recurrent[li].conv, rolled[0].layers[li].conv);
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
  (void)m.Prefill(s, Prompt(5, 9), ScanKernel::kSequential, at, &cps).value();
  const std::string bytes = SerializeCheckpoint(cps[0]);
  EXPECT_EQ(bytes.size(), 16 + 6 * 16 + static_cast<size_t>(m.CheckpointBytes()));
  auto back = DeserializeCheckpoint(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->position, 5);
  EXPECT_EQ(back->layers, cps[0].layers);
  EXPECT_FALSE(DeserializeCheckpoint(bytes.substr(0, bytes.size() - 3)).ok());
  EXPECT_FALSE(DeserializeCheckpoint(bytes + "x").ok());

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

}  // namespace
}  // namespace marconi::engine

#include "engine/driver.h"
#include "marconi/policies.h"

namespace marconi::engine {
namespace {

// Full recompute of a request: prefill everything from scratch, then greedy decoding.
ServedRequest Recompute(const HybridModel& m, std::span<const Token> input, int64_t n_out) {
  SequenceState s = m.NewSequence();
  ServedRequest r;
  r.first_logits = m.Prefill(s, input, ScanKernel::kSequential).value();
  std::vector<float> last = r.first_logits;
  for (int64_t i = 0; i < n_out; ++i) {
    const Token t = static_cast<Token>(std::max_element(last.begin(), last.end()) - last.begin());
    r.output.push_back(t);
    const Token one[] = {t};
    last = m.Prefill(s, one, ScanKernel::kSequential).value();
  }
  return r;
}

TEST(EngineDriver, EveryHitGivesExactlyTheOutputOfAFullRecompute) {
  const HybridModel m = Model();
  const ModelSpec spec = SpecOf(m);
  EXPECT_EQ(spec.StateBytesPerCheckpoint(), m.CheckpointBytes());
  EXPECT_EQ(spec.KvBytesPerToken(), m.KvBytesPerToken());
  PrefixCacheConfig config;
  auto cache =
      PrefixCache::Create(config, spec, MakeJudiciousAdmission(), MakeFlopAwareEviction({}).value())
          .value();
  Driver driver(m, *cache, ScanKernel::kSequential);
  // Requests sharing a system prompt (purely-input reuse) and a conversation (the next turn
  // resumes after the previous output).
  const auto system = Prompt(10, 30);
  std::vector<Token> conversation = Prompt(11, 12);
  int64_t reused = 0;
  for (int r = 0; r < 8; ++r) {
    std::vector<Token> input;
    if (r % 2 == 0) {
      input = system;
      const auto q = Prompt(20 + static_cast<uint64_t>(r), 6);
      input.insert(input.end(), q.begin(), q.end());
    } else {
      const auto msg = Prompt(40 + static_cast<uint64_t>(r), 5);
      conversation.insert(conversation.end(), msg.begin(), msg.end());
      input = conversation;
    }
    auto served = driver.Serve(input, 4, r);
    ASSERT_TRUE(served.ok()) << served.status().ToString();
    const ServedRequest want = Recompute(m, input, 4);
    EXPECT_EQ(served->first_logits, want.first_logits) << "request " << r;
    EXPECT_EQ(served->output, want.output) << "request " << r;
    reused += served->reused_tokens;
    if (r % 2 == 1)
      conversation.insert(conversation.end(), served->output.begin(), served->output.end());
  }
  // The system prompt is hit from its 3rd occurrence; every later turn resumes.
  EXPECT_GT(reused, 3 * 30);
  EXPECT_GT(driver.stored_bytes(), 0);
  EXPECT_TRUE(cache->CheckInvariants().ok());
}

}  // namespace
}  // namespace marconi::engine

#include <fstream>

#include "sim/file_io.h"

namespace marconi::engine {
namespace {

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
  const std::string file = sim::ReadFile(path).value();
  const std::string cut = dir + "/cut.safetensors";
  ASSERT_TRUE(sim::WriteFile(cut, file.substr(0, file.size() - 100)).ok());
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
  ASSERT_TRUE(sim::WriteFile(cut, std::string("\x04\0\0\0\0\0\0\0{]x ", 12)).ok());
  EXPECT_NE(b.LoadSafetensors(cut).message().find("not a JSON object"), std::string::npos);
  EXPECT_EQ(b.LoadSafetensors(dir + "/missing.safetensors").code(), StatusCode::kIoError);
  // A good load reproduces the saved model exactly.
  ASSERT_TRUE(b.LoadSafetensors(path).ok());
  EXPECT_EQ(logits(b), logits(a));
}

}  // namespace
}  // namespace marconi::engine
