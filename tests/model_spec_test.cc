#include "marconi/model_spec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

namespace marconi {
namespace {

TEST(ModelSpec, PaperNumbers) {
  const ModelSpec m = ModelSpec::Preset("paper-7b").value();
  EXPECT_EQ(m.CountLayers("attention"), 4);
  EXPECT_EQ(m.CountLayers("paper_ssm"), 24);
  EXPECT_EQ(m.CountLayers("mlp"), 28);
  for (const LayerSpec& l : m.layers()) {
    if (std::holds_alternative<PaperSsmLayer>(l)) {
      EXPECT_EQ(LayerStateBytes(l, 4096, 2), 1116160);  // paper: 1,116,160 B per SSM layer
    }
    if (std::holds_alternative<AttentionLayer>(l)) {
      EXPECT_EQ(LayerKvBytesPerToken(l, 2), 16384);  // paper: 16,384 B per token per layer
    }
  }
  EXPECT_EQ(m.StateBytesPerCheckpoint(), 24 * 1116160);
  EXPECT_EQ(m.KvBytesPerToken(), 4 * 16384);
  // Paper: one 10K-token sequence checkpointed every 16 tokens takes 17.4 GB.
  EXPECT_NEAR(m.BytesCheckpointedEvery(10000, 16) / 1e9, 17.4, 0.05);
}

TEST(ModelSpec, PaperFlopFormulas) {
  const ModelSpec m = ModelSpec::Preset("paper-7b").value();
  const double d = 4096, n = 128;
  for (int64_t l : {1, 100, 7000}) {
    const double len = static_cast<double>(l);
    const double attn = 8 * len * d * d + 4 * len * len * d;
    const double ssm = 12 * len * d * d + 16 * len * d * n + 10 * len * d;
    const double mlp = 16 * len * d * d;
    EXPECT_DOUBLE_EQ(m.PrefillFlops(0, l), 4 * attn + 24 * ssm + 28 * mlp);
  }
}

TEST(ModelSpec, PrefillFlopsIsSumOfLayersAndSavingIsDifference) {
  for (const std::string& name : ModelSpec::PresetNames()) {
    SCOPED_TRACE(name);
    const ModelSpec m = ModelSpec::Preset(name).value();
    for (auto [p, l] : {std::pair<int64_t, int64_t>{0, 1}, {100, 50}, {3000, 9000}}) {
      double sum = 0;
      for (const LayerSpec& layer : m.layers()) sum += LayerPrefillFlops(layer, m.d_model(), p, l);
      EXPECT_NEAR(m.PrefillFlops(p, l), sum, 1e-9 * sum);
      const double diff = m.PrefillFlops(0, p + l) - m.PrefillFlops(p, l);
      EXPECT_NEAR(m.FlopsSaved(p, p + l), diff, 1e-9 * m.PrefillFlops(0, p + l));
    }
    // Attention is quadratic: a cached prefix makes the new tokens' attention dearer.
    if (m.CountLayers("attention") > 0) {
      EXPECT_GT(m.PrefillFlops(1000, 10), m.PrefillFlops(0, 10));
    }
    EXPECT_EQ(m.FlopsSaved(0, 500), 0);
  }
}

TEST(ModelSpec, PresetsHaveTheRightKindsOfLayers) {
  EXPECT_EQ(ModelSpec::Preset("llama-2-7b")->StateBytesPerCheckpoint(), 0);
  EXPECT_EQ(ModelSpec::Preset("mamba2-2.7b")->KvBytesPerToken(), 0);
  for (const char* hybrid : {"jamba-1.5-mini", "nemotron-h-8b", "zamba2-7b", "granite-4.0-h-small",
                             "falcon-h1-7b", "qwen3-next-80b-a3b"}) {
    SCOPED_TRACE(hybrid);
    const auto m = ModelSpec::Preset(hybrid);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_GT(m->KvBytesPerToken(), 0);
    EXPECT_GT(m->StateBytesPerCheckpoint(), 0);
  }
  // Nemotron-H-8B: 4 attention layers of 8 KV heads x 128; Mamba2 state 128 x 64 x 128 per layer.
  const ModelSpec nem = ModelSpec::Preset("nemotron-h-8b").value();
  EXPECT_EQ(nem.KvBytesPerToken(), 4 * 2 * 8 * 128 * 2);
  EXPECT_EQ(nem.CountLayers("mamba2"), 24);
  EXPECT_EQ(nem.StateBytesPerCheckpoint(), 24 * (8192 * 128 + (8192 + 2 * 8 * 128) * 3) * 2);
}

TEST(ModelSpec, UnknownPresetListsValidNames) {
  const auto m = ModelSpec::Preset("gpt-5");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("paper-7b"), std::string::npos);
}

TEST(ModelSpec, CreateRejectsBadShapes) {
  EXPECT_FALSE(ModelSpec::Create("x", 0, 2, {MlpLayer{4, true}}).ok());
  EXPECT_FALSE(ModelSpec::Create("x", 8, 0, {MlpLayer{4, true}}).ok());
  EXPECT_FALSE(ModelSpec::Create("x", 8, 2, {}).ok());
  const auto bad_gqa = ModelSpec::Create("x", 8, 2, {AttentionLayer{6, 4, 2}});
  ASSERT_FALSE(bad_gqa.ok());
  EXPECT_NE(bad_gqa.status().message().find("layer 0 (attention)"), std::string::npos);
  const auto negative =
      ModelSpec::Create("x", 8, 2, {MlpLayer{4, true}, Mamba2Layer{-1, 64, 16, 1, 4}});
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("layer 1 (mamba2): num_heads"), std::string::npos);
  EXPECT_FALSE(ModelSpec::Create("x", 8, 2, {MoeLayer{4, 5, 16, 0, true}}).ok());
}

TEST(ModelSpec, LoadsHfConfigs) {
  const auto llama = ModelSpec::FromHfConfigJson(
      R"({"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
          "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
          "torch_dtype": "bfloat16", "rope_theta": 500000.0, "unknown_field": [1, 2]})",
      "llama.json");
  ASSERT_TRUE(llama.ok()) << llama.status().ToString();
  EXPECT_EQ(llama->KvBytesPerToken(), 32 * 2 * 8 * 128 * 2);

  const auto nemotron = ModelSpec::FromHfConfigJson(
      R"({"model_type": "nemotron_h", "hidden_size": 4096, "hybrid_override_pattern": "M-M*-",
          "mamba_num_heads": 128, "mamba_head_dim": 64, "ssm_state_size": 128, "n_groups": 8,
          "conv_kernel": 4, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
          "intermediate_size": 21504})",
      "nemotron.json");
  ASSERT_TRUE(nemotron.ok()) << nemotron.status().ToString();
  EXPECT_EQ(nemotron->CountLayers("mamba2"), 2);
  EXPECT_EQ(nemotron->CountLayers("attention"), 1);
  EXPECT_EQ(nemotron->CountLayers("mlp"), 2);

  const auto qwen = ModelSpec::FromHfConfigJson(
      R"({"model_type": "qwen3_next", "hidden_size": 2048, "num_hidden_layers": 8,
          "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256,
          "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
          "linear_value_head_dim": 128, "num_experts": 512, "num_experts_per_tok": 10,
          "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512})",
      "qwen.json");
  ASSERT_TRUE(qwen.ok()) << qwen.status().ToString();
  EXPECT_EQ(qwen->CountLayers("attention"), 2);
  EXPECT_EQ(qwen->CountLayers("gated_deltanet"), 6);
}

TEST(ModelSpec, HfConfigErrorsNameFieldAndSource) {
  const auto missing = ModelSpec::FromHfConfigJson(
      R"({"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32})", "cfg.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kParseError);
  EXPECT_NE(missing.status().message().find("cfg.json"), std::string::npos);
  EXPECT_NE(missing.status().message().find("num_hidden_layers"), std::string::npos);

  const auto typed =
      ModelSpec::FromHfConfigJson(R"({"model_type": "llama", "hidden_size": "big"})", "t.json");
  ASSERT_FALSE(typed.ok());
  EXPECT_NE(typed.status().message().find("hidden_size"), std::string::npos);

  EXPECT_EQ(ModelSpec::FromHfConfigJson("{not json", "x.json").status().code(),
            StatusCode::kParseError);
  EXPECT_EQ(ModelSpec::FromHfConfigJson("[]", "x.json").status().code(), StatusCode::kParseError);
  const auto unknown =
      ModelSpec::FromHfConfigJson(R"({"model_type": "bert", "hidden_size": 8})", "x.json");
  EXPECT_NE(unknown.status().message().find("unsupported model_type 'bert'"), std::string::npos);
  EXPECT_EQ(ModelSpec::FromHfConfigFile("/nonexistent/config.json").status().code(),
            StatusCode::kIoError);
}

TEST(ModelSpec, FromNameOrFileReadsAFile) {
  const std::string path = ::testing::TempDir() + "/marconi_model_test_config.json";
  {
    std::ofstream out(path);
    out << R"({"model_type": "mamba2", "hidden_size": 768, "num_hidden_layers": 24,
               "num_heads": 24, "head_dim": 64, "state_size": 128, "n_groups": 1})";
  }
  const auto m = ModelSpec::FromNameOrFile(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->CountLayers("mamba2"), 24);
  EXPECT_EQ(ModelSpec::FromNameOrFile("no-such-preset").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace marconi
