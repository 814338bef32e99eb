// Built-in models. Shapes follow each family's published config.json; where a family has
// peculiarities the cost model does not express (Zamba2's shared attention blocks, Falcon-H1's
// parallel attention + SSM mixers), the closest layer list with the same costs is used.
#include <algorithm>
#include <functional>
#include <map>

#include "marconi/model_spec.h"

namespace marconi {
namespace {

using Layers = std::vector<LayerSpec>;

// Expands a pattern: one character per layer, looked up in `kinds`.
Layers FromPattern(std::string_view pattern, const std::map<char, LayerSpec>& kinds) {
  Layers layers;
  for (char c : pattern) layers.push_back(kinds.at(c));
  return layers;
}

std::string Repeat(std::string_view unit, int times) {
  std::string s;
  for (int i = 0; i < times; ++i) s += unit;
  return s;
}

Result<ModelSpec> Paper7b() {
  // The Marconi paper's NVIDIA Attention-Mamba2 hybrid 7B: 4 attention, 24 SSM, 28 MLP layers,
  // D = 4096, N = 128, fp16, with the Appendix A formulas.
  const std::map<char, LayerSpec> k = {{'A', AttentionLayer{32, 32, 128}},
                                       {'S', PaperSsmLayer{128, 4}},
                                       {'F', MlpLayer{4 * 4096, false}}};
  return ModelSpec::Create("paper-7b", 4096, 2, FromPattern(Repeat(Repeat("SF", 6) + "AF", 4), k));
}

Result<ModelSpec> Jamba15Mini() {
  // 32 layers: attention at i % 8 == 4, Mamba1 elsewhere; MoE (16 experts, top 2) at odd i.
  const LayerSpec attn = AttentionLayer{32, 8, 128};
  const LayerSpec mamba = Mamba1Layer{8192, 16, 4, 256};
  Layers layers;
  for (int i = 0; i < 32; ++i) {
    layers.push_back(i % 8 == 4 ? attn : mamba);
    layers.push_back(i % 2 == 1 ? LayerSpec{MoeLayer{16, 2, 14336, 0, true}}
                                : LayerSpec{MlpLayer{14336, true}});
  }
  return ModelSpec::Create("jamba-1.5-mini", 4096, 2, std::move(layers));
}

Result<ModelSpec> NemotronH8b() {
  // hybrid_override_pattern: M = Mamba2, * = attention, - = MLP (squared ReLU, not gated).
  const std::map<char, LayerSpec> k = {{'M', Mamba2Layer{128, 64, 128, 8, 4}},
                                       {'*', AttentionLayer{32, 8, 128}},
                                       {'-', MlpLayer{21504, false}}};
  return ModelSpec::Create("nemotron-h-8b", 4096, 2,
                           FromPattern("M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-M-M-M-M-", k));
}

Result<ModelSpec> Zamba2_7b() {
  // 81 Mamba2 layers; a shared attention + MLP block is applied 13 times, each application with
  // its own KV cache (attention over the concatenated 2 x d_model input: 32 heads of 224).
  const std::map<char, LayerSpec> k = {{'M', Mamba2Layer{112, 64, 64, 2, 4}},
                                       {'A', AttentionLayer{32, 32, 224}},
                                       {'F', MlpLayer{14336, true}}};
  return ModelSpec::Create("zamba2-7b", 3584, 2,
                           FromPattern(Repeat("MMMMMAF", 13) + Repeat("M", 81 - 65), k));
}

Result<ModelSpec> Granite40HSmall() {
  // 40 layers, attention at 5, 15, 25, 35, Mamba2 elsewhere; every layer an MoE FFN (72 experts,
  // top 10, d_ff 768) with a shared expert of 8192.
  const LayerSpec attn = AttentionLayer{32, 8, 128};
  const LayerSpec mamba = Mamba2Layer{128, 64, 128, 1, 4};
  const LayerSpec moe = MoeLayer{72, 10, 768, 8192, true};
  Layers layers;
  for (int i = 0; i < 40; ++i) {
    layers.push_back(i % 10 == 5 ? attn : mamba);
    layers.push_back(moe);
  }
  return ModelSpec::Create("granite-4.0-h-small", 4096, 2, std::move(layers));
}

Result<ModelSpec> FalconH1_7b() {
  // 44 layers, each with attention and Mamba2 mixers side by side, then a gated MLP.
  Layers layers;
  for (int i = 0; i < 44; ++i) {
    layers.push_back(AttentionLayer{12, 2, 128});
    layers.push_back(Mamba2Layer{24, 256, 256, 1, 4});
    layers.push_back(MlpLayer{12288, true});
  }
  return ModelSpec::Create("falcon-h1-7b", 3072, 2, std::move(layers));
}

Result<ModelSpec> Qwen3Next80bA3b() {
  // 48 layers: three Gated DeltaNet then one gated full attention, repeated; MoE everywhere
  // (512 experts, 10 active, d_ff 512, shared expert 512).
  const LayerSpec gdn = GatedDeltaNetLayer{16, 32, 128, 128, 4};
  const LayerSpec attn = AttentionLayer{16, 2, 256};
  const LayerSpec moe = MoeLayer{512, 10, 512, 512, true};
  Layers layers;
  for (int i = 0; i < 48; ++i) {
    layers.push_back(i % 4 == 3 ? attn : gdn);
    layers.push_back(moe);
  }
  return ModelSpec::Create("qwen3-next-80b-a3b", 2048, 2, std::move(layers));
}

Result<ModelSpec> Llama2_7b() {
  const std::map<char, LayerSpec> k = {{'A', AttentionLayer{32, 32, 128}},
                                       {'F', MlpLayer{11008, true}}};
  return ModelSpec::Create("llama-2-7b", 4096, 2, FromPattern(Repeat("AF", 32), k));
}

Result<ModelSpec> Mamba2_2_7b() {
  const std::map<char, LayerSpec> k = {{'M', Mamba2Layer{80, 64, 128, 1, 4}}};
  return ModelSpec::Create("mamba2-2.7b", 2560, 2, FromPattern(Repeat("M", 64), k));
}

const std::vector<std::pair<std::string, std::function<Result<ModelSpec>()>>>& Registry() {
  static const auto* registry =
      new std::vector<std::pair<std::string, std::function<Result<ModelSpec>()>>>{
          {"paper-7b", Paper7b},
          {"jamba-1.5-mini", Jamba15Mini},
          {"nemotron-h-8b", NemotronH8b},
          {"zamba2-7b", Zamba2_7b},
          {"granite-4.0-h-small", Granite40HSmall},
          {"falcon-h1-7b", FalconH1_7b},
          {"qwen3-next-80b-a3b", Qwen3Next80bA3b},
          {"llama-2-7b", Llama2_7b},
          {"mamba2-2.7b", Mamba2_2_7b},
      };
  return *registry;
}

}  // namespace

std::vector<std::string> ModelSpec::PresetNames() {
  std::vector<std::string> names;
  for (const auto& [name, make] : Registry()) names.push_back(name);
  return names;
}

Result<ModelSpec> ModelSpec::Preset(std::string_view name) {
  for (const auto& [preset, make] : Registry()) {
    if (preset == name) return make();
  }
  std::string valid;
  for (const auto& n : PresetNames()) valid += (valid.empty() ? "" : ", ") + n;
  return Status::NotFound("unknown model preset '" + std::string(name) + "' (presets: " + valid +
                          ")");
}

}  // namespace marconi
