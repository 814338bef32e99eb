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

namespace marconi {
namespace {

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// config.json

TEST(BadConfig, NumberTooLargeForADoubleNamesFileFieldAndLine) {
  const auto top = ModelSpec::FromHfConfigJson(
      "{\"model_type\": \"llama\",\n \"hidden_size\": 4096,\n \"rope_theta\": 1e400}", "cfg.json");
  ASSERT_FALSE(top.ok());
  EXPECT_EQ(top.status().code(), StatusCode::kParseError);
  EXPECT_TRUE(Contains(top.status().message(), "cfg.json:3:")) << top.status().message();
  EXPECT_TRUE(Contains(top.status().message(), "'rope_theta'")) << top.status().message();

  const auto nested = ModelSpec::FromHfConfigJson(
      R"({"model_type": "llama", "rope_scaling": {"type": "yarn", "factor": -1e999}})", "n.json");
  ASSERT_FALSE(nested.ok());
  EXPECT_TRUE(Contains(nested.status().message(), "'rope_scaling.factor'"))
      << nested.status().message();

  const auto in_array =
      ModelSpec::FromHfConfigJson(R"({"model_type": "llama", "eos": [1, 2, [3e500]]})", "a.json");
  ASSERT_FALSE(in_array.ok());
  EXPECT_TRUE(Contains(in_array.status().message(), "'eos[2][0]'")) << in_array.status().message();

  // A syntax error between members names no field (not the previous one).
  const auto between = ModelSpec::FromHfConfigJson("{\"a\": 1,\n !}", "b.json");
  ASSERT_FALSE(between.ok());
  EXPECT_TRUE(Contains(between.status().message(), "b.json:2:")) << between.status().message();
  EXPECT_FALSE(Contains(between.status().message(), "field 'a'")) << between.status().message();
}

TEST(BadConfig, IntegerBeyondInt64IsAnErrorNotAWrappedValue) {
  const auto r = ModelSpec::FromHfConfigJson(
      R"({"model_type": "mamba2", "hidden_size": 18446744073709551615, "num_hidden_layers": 2,
          "state_size": 16})",
      "u.json");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "'hidden_size'")) << r.status().message();
}

TEST(BadConfig, Zamba2ZeroAttentionHeadsIsAnErrorNamingTheField) {
  const auto r = ModelSpec::FromHfConfigJson(
      R"({"model_type": "zamba2", "hidden_size": 256, "num_hidden_layers": 2,
          "num_attention_heads": 0, "mamba_d_state": 16, "intermediate_size": 512,
          "layers_block_type": ["hybrid", "mamba"]})",
      "z.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kParseError);
  EXPECT_TRUE(Contains(r.status().message(), "z.json")) << r.status().message();
  EXPECT_TRUE(Contains(r.status().message(), "'num_attention_heads'")) << r.status().message();
}

TEST(BadConfig, HugeLayerCountIsAnErrorNotAnAllocation) {
  const auto r = ModelSpec::FromHfConfigJson(
      R"({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2000000000,
          "state_size": 16})",
      "l.json");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "'num_hidden_layers'")) << r.status().message();
}

// One valid config per family; every integer field in turn is set to extreme values. Each load
// must either fail with a message naming the source, or give a model whose costs are finite and
// non-negative for every token count up to kMaxTokens (no overflow: UBSan checks it too).
TEST(BadConfig, ExtremeValuesOfEveryFieldNeverOverflow) {
  const char* bases[] = {
      R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128})",
      R"({"model_type": "mamba2", "hidden_size": 64, "num_hidden_layers": 2, "num_heads": 2,
          "head_dim": 64, "state_size": 16, "n_groups": 1, "expand": 2, "conv_kernel": 4})",
      R"({"model_type": "jamba", "hidden_size": 64, "num_hidden_layers": 4,
          "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2,
          "expert_layer_offset": 1, "intermediate_size": 128, "mamba_expand": 2,
          "mamba_dt_rank": 4, "mamba_d_state": 16, "mamba_d_conv": 4, "num_experts": 4,
          "num_experts_per_tok": 2, "num_attention_heads": 4, "num_key_value_heads": 2})",
      R"({"model_type": "nemotron_h", "hidden_size": 64, "hybrid_override_pattern": "M-*E",
          "mamba_num_heads": 2, "mamba_head_dim": 32, "ssm_state_size": 16, "n_groups": 1,
          "conv_kernel": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
          "intermediate_size": 128, "n_routed_experts": 4, "num_experts_per_tok": 2,
          "moe_intermediate_size": 32, "moe_shared_expert_intermediate_size": 32})",
      R"({"model_type": "zamba2", "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 4, "mamba_d_state": 16,
          "n_mamba_heads": 2, "mamba_headdim": 64, "mamba_ngroups": 1, "mamba_d_conv": 4,
          "intermediate_size": 128, "layers_block_type": ["hybrid", "mamba"]})",
      R"({"model_type": "granitemoehybrid", "hidden_size": 64,
          "layer_types": ["mamba", "attention"], "num_attention_heads": 4,
          "num_key_value_heads": 2, "mamba_n_heads": 2, "mamba_d_head": 64,
          "mamba_d_state": 16, "mamba_n_groups": 1, "mamba_d_conv": 4, "num_local_experts": 4,
          "num_experts_per_tok": 2, "intermediate_size": 32, "shared_intermediate_size": 64})",
      R"({"model_type": "falcon_h1", "hidden_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
          "mamba_n_heads": 2, "mamba_d_head": 64, "mamba_d_state": 16, "mamba_n_groups": 1,
          "mamba_d_conv": 4, "intermediate_size": 128})",
      R"({"model_type": "qwen3_next", "hidden_size": 64, "num_hidden_layers": 4,
          "full_attention_interval": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "head_dim": 16, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
          "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_conv_kernel_dim": 4,
          "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
          "shared_expert_intermediate_size": 32})",
  };
  const char* values[] = {"0",
                          "-1",
                          "3",
                          "65536",
                          "4294967296",
                          "1099511627776",
                          "4611686018427387904",
                          "9223372036854775807",
                          "-9223372036854775808",
                          "18446744073709551615"};
  int loaded = 0, rejected = 0;
  for (const char* base : bases) {
    const nlohmann::json j = nlohmann::json::parse(base);
    ASSERT_TRUE(ModelSpec::FromHfConfigJson(base, "base.json").ok()) << base;
    for (const auto& [key, v] : j.items()) {
      if (!v.is_number_integer()) continue;
      for (const char* value : values) {
        nlohmann::json changed = j;
        changed[key] = "@@";
        std::string text = changed.dump();
        text.replace(text.find("\"@@\""), 4, value);
        const auto r = ModelSpec::FromHfConfigJson(text, "x.json");
        if (!r.ok()) {
          ++rejected;
          EXPECT_TRUE(Contains(r.status().message(), "x.json")) << r.status().message();
          continue;
        }
        ++loaded;
        SCOPED_TRACE(text);
        EXPECT_GE(r->KvBytesPerToken(), 0);
        EXPECT_GE(r->StateBytesPerCheckpoint(), 0);
        EXPECT_GT(r->KvBytesPerToken() + r->StateBytesPerCheckpoint(), 0);
        // The cache multiplies these by token and checkpoint counts up to kMaxTokens.
        int64_t product = 0;
        EXPECT_FALSE(__builtin_mul_overflow(r->KvBytesPerToken() + r->StateBytesPerCheckpoint(),
                                            int64_t{1} << 31, &product));
        const double f = r->PrefillFlops(int64_t{1} << 31, int64_t{1} << 31);
        EXPECT_TRUE(std::isfinite(f) && f > 0) << f;
        EXPECT_GT(r->linear_flops_per_token(), 0);
        EXPECT_GE(r->attention_pair_flops(), 0);
        EXPECT_GE(r->FlopsSaved(int64_t{1} << 30, int64_t{1} << 31), 0);
      }
    }
  }
  std::printf("loaded %d, rejected %d variants\n", loaded, rejected);
  EXPECT_GT(loaded, 0);
  EXPECT_GT(rejected, 0);
}

// ---------------------------------------------------------------------------------------------
// ModelSpec::Create

TEST(BadModelSpec, FieldsBeyondTheBoundAreErrorsNamingFieldAndBound) {
  const auto head_dim = ModelSpec::Create("x", 8, 2, {AttentionLayer{1, 1, int64_t{1} << 62}});
  ASSERT_FALSE(head_dim.ok());  // KV bytes per token were 2 * 2^62 * 2 = 0 (mod 2^64)
  EXPECT_TRUE(Contains(head_dim.status().message(), "layer 0 (attention): head_dim"))
      << head_dim.status().message();
  EXPECT_TRUE(Contains(head_dim.status().message(), "16777216")) << head_dim.status().message();

  const auto d_model = ModelSpec::Create("x", int64_t{1} << 40, 2, {PaperSsmLayer{16, 4}});
  ASSERT_FALSE(d_model.ok());
  EXPECT_TRUE(Contains(d_model.status().message(), "d_model")) << d_model.status().message();

  // Every field within its bound, but a state that no cache could multiply by kMaxTokens.
  const int64_t big = int64_t{1} << 20;
  const auto state = ModelSpec::Create("x", 8, 8, {GatedDeltaNetLayer{1, big, big, big, 4}});
  ASSERT_FALSE(state.ok());
  EXPECT_TRUE(Contains(state.status().message(), "state bytes")) << state.status().message();
}

TEST(BadModelSpec, LayerCountIsBounded) {
  std::vector<LayerSpec> layers(70000, MlpLayer{4, true});
  const auto r = ModelSpec::Create("x", 8, 2, std::move(layers));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "70000 layers")) << r.status().message();
}

// Random layers with sizes drawn log-uniformly from 1..2^62: whatever Create accepts has
// non-negative costs that the cache can multiply by up to kMaxTokens without overflow.
TEST(BadModelSpec, RandomHugeShapesNeverOverflow) {
  const uint64_t seed = 20261123;
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  auto size = [&] {
    // Half the draws within the field bound (2^24), where only the byte bounds can reject.
    const int bits = std::uniform_int_distribution<int>(0, rng() % 2 ? 62 : 23)(rng);
    return std::max<int64_t>(1, static_cast<int64_t>(rng() >> (64 - bits - 1)) >> 1);
  };
  int accepted = 0, rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<LayerSpec> layers;
    const int n = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int i = 0; i < n; ++i) {
      switch (std::uniform_int_distribution<int>(0, 6)(rng)) {
        case 0: {
          const int64_t kv = size();
          layers.push_back(
              AttentionLayer{kv * std::uniform_int_distribution<int64_t>(1, 4)(rng), kv, size()});
          break;
        }
        case 1:
          layers.push_back(Mamba1Layer{size(), size(), size(), size()});
          break;
        case 2:
          layers.push_back(Mamba2Layer{size(), size(), size(), size(), size()});
          break;
        case 3:
          layers.push_back(GatedDeltaNetLayer{size(), size(), size(), size(), size()});
          break;
        case 4:
          layers.push_back(PaperSsmLayer{size(), size()});
          break;
        case 5:
          layers.push_back(MlpLayer{size(), true});
          break;
        default: {
          const int64_t e = size();
          layers.push_back(MoeLayer{e, std::max<int64_t>(1, e / 2), size(), size(), true});
        }
      }
    }
    const auto r = ModelSpec::Create("r", size(), 8, std::move(layers));
    if (!r.ok()) {
      ++rejected;
      continue;
    }
    ++accepted;
    ASSERT_GE(r->KvBytesPerToken(), 0);
    ASSERT_GE(r->StateBytesPerCheckpoint(), 0);
    int64_t product = 0;
    ASSERT_FALSE(__builtin_mul_overflow(r->KvBytesPerToken() + r->StateBytesPerCheckpoint(),
                                        int64_t{1} << 31, &product));
    const double f = r->PrefillFlops(int64_t{1} << 31, int64_t{1} << 31);
    ASSERT_TRUE(std::isfinite(f) && f > 0) << "trial " << trial << ": " << f;
    ASSERT_GT(r->linear_flops_per_token(), 0) << "trial " << trial;
  }
  std::printf("accepted %d, rejected %d\n", accepted, rejected);
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
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

// Found by fuzz/fuzz_zstd: the streaming decoder accepted a frame whose header declares 256 KiB
// and whose only block is empty (zstd's one-shot decoder rejects it).
TEST(BadFile, ZstdFrameHoldingLessThanItDeclaresIsCorrupt) {
  std::string frame = {'\x28', '\xb5', '\x2f', '\xfd', '\xc0', '\x01'};
  for (int i = 0; i < 8; ++i) frame += static_cast<char>(((uint64_t{256} << 10) >> (8 * i)) & 0xff);
  frame += std::string{'\x01', '\x00', '\x00'};
  ASSERT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), 256u << 10);
  const auto r = sim::DecompressZstd(frame, "short.zst");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kParseError);
  EXPECT_TRUE(Contains(r.status().message(), "short.zst: corrupt zstd data"))
      << r.status().message();
  // The same frame declaring its true size (0) is fine, and so are both after a good frame.
  std::string empty = frame;
  std::fill(empty.begin() + 6, empty.begin() + 14, '\0');
  EXPECT_TRUE(sim::DecompressZstd(empty, "empty.zst").ok());
  EXPECT_FALSE(sim::DecompressZstd(empty + frame, "two.zst").ok());
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
}

TEST(BadFile, ADirectoryIsAClearErrorEverywhere) {
  const std::string dir = ::testing::TempDir();
  for (const Status& s :
       {sim::ReadFile(dir).status(), sim::ReadTrace(dir).status(),
        sim::TtftModel::FromProfileCsv(dir, true).status(),
        ModelSpec::FromHfConfigFile(dir).status(), ModelSpec::FromNameOrFile(dir).status()}) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kIoError) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "is a directory")) << s.message();
    EXPECT_TRUE(Contains(s.message(), dir)) << s.message();
  }
}

// ---------------------------------------------------------------------------------------------
// TTFT models: never a NaN or infinite time

TEST(BadTtft, RooflineNeedsFiniteValuesThatDoNotUnderflow) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(sim::TtftModel::Roofline(1, 1e-320, 0).ok());  // 0 FLOPs per ms: NaN times
  EXPECT_FALSE(sim::TtftModel::Roofline(inf, 1, 0).ok());     // every time 0
  EXPECT_FALSE(sim::TtftModel::Roofline(1e15, 0.5, inf).ok());
  const auto ok = sim::TtftModel::Roofline(1e15, 0.5, 2);
  ASSERT_TRUE(ok.ok());
  const ModelSpec model = ModelSpec::Preset("paper-7b").value();
  EXPECT_TRUE(std::isfinite(ok->Ms(model, 0, ModelSpec::kMaxTokens)));
}

TEST(BadTtft, HugeProfilesAreErrorsNotNanLines) {
  // Sums of squares overflowed: the fitted line was NaN, silently.
  EXPECT_FALSE(sim::FitLine({{1e200, 1}, {2e200, 2}, {3e200, 3}}).ok());
  const std::string huge = TempPath("huge_profile.csv");
  WriteRaw(huge, "prefill_tokens,ttft_ms\n100,20\n1e300,30\n");
  for (bool fit : {true, false}) {
    const auto r = sim::TtftModel::FromProfileCsv(huge, fit);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kParseError);
    EXPECT_TRUE(Contains(r.status().message(), huge + ":3:")) << r.status().message();
  }
  // Interpolating between 0 and 1e-300 tokens gave an infinite slope.
  const std::string tiny = TempPath("tiny_profile.csv");
  WriteRaw(tiny, "prefill_tokens,ttft_ms\n0,20\n1e-300,30\n");
  const auto r = sim::TtftModel::FromProfileCsv(tiny, false);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), tiny + ":3:")) << r.status().message();
}

// ---------------------------------------------------------------------------------------------
// Tuner window

TEST(BadTuner, MultiplierBeyondTheBoundIsAnError) {
  for (double bad : {1e300, 1e7, std::numeric_limits<double>::infinity(), std::nan(""), 0.0}) {
    AlphaTunerConfig config;
    config.multiplier = bad;
    const auto t = AlphaTuner::Create(config);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_TRUE(Contains(t.status().message(), "multiplier")) << t.status().message();
  }
  AlphaTunerConfig config;
  config.multiplier = AlphaTuner::kMaxMultiplier;
  EXPECT_TRUE(AlphaTuner::Create(config).ok());
}

// ---------------------------------------------------------------------------------------------
// Sweep arrival rates

TEST(BadSweep, NonFiniteOrNegativeArrivalRatesAreErrors) {
  const sim::Trace trace = sim::SyntheticMixed(2, 1.0, 5);
  sim::SweepSpec spec;
  spec.models = {ModelSpec::Preset("paper-7b").value()};
  spec.capacities = {1'000'000'000};
  spec.systems = sim::ParseSystems("vanilla").value();
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity(), -1.0}) {
    spec.sessions_per_second = {1, bad};
    const auto r = sim::RunSweep(trace, spec);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(r.status().message(), "sessions per second")) << r.status().message();
  }
  spec.sessions_per_second = {1};
  auto cells = sim::RunSweep(trace, spec).value();
  cells[0].sessions_per_second = std::nan("");
  const auto plots = sim::WriteSweepPlots(cells, TempPath("nan_sweep"));
  ASSERT_FALSE(plots.ok());
  EXPECT_EQ(plots.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace marconi
