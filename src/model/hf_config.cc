// Loading a ModelSpec from a Hugging Face config.json. Only the fields that determine costs are
// read; everything else is ignored so that newer configs keep loading.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <vector>

#include "marconi/model_spec.h"
#include "util/json_error_locator.h"
#include "util/read_file.h"

namespace marconi {
namespace {

using Json = nlohmann::json;

// Thrown inside this file only and turned into a Status at the boundary.
struct FieldError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Every integer read is a size, a count or a layer index: bounding each one keeps every product
// computed here (at most two of them) far within int64; ModelSpec::Create bounds the results.
int64_t Int(const Json& j, const char* key, int64_t max = ModelSpec::kMaxDimension) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    throw FieldError(std::string("missing required field '") + key + "'");
  }
  if (!it->is_number_integer()) {
    throw FieldError(std::string("field '") + key + "' must be an integer, got " + it->dump());
  }
  // A non-negative literal is stored unsigned: compare it as such, never wrapped to int64.
  const bool in_range = it->is_number_unsigned()
                            ? it->get<uint64_t>() <= static_cast<uint64_t>(max)
                            : it->get<int64_t>() >= 0 && it->get<int64_t>() <= max;
  if (!in_range) {
    throw FieldError(std::string("field '") + key + "' must be in 0.." + std::to_string(max) +
                     ", got " + it->dump());
  }
  return it->get<int64_t>();
}

int64_t IntOr(const Json& j, const char* key, int64_t fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return Int(j, key);
}

// A field used as a divisor (or a size that must not be 0).
int64_t Positive(int64_t v, const char* key) {
  if (v <= 0)
    throw FieldError(std::string("field '") + key + "' must be > 0, got " + std::to_string(v));
  return v;
}

// A layer count: bounded so that a config cannot make the loader allocate without limit.
int64_t LayerCount(const Json& j, const char* key) { return Int(j, key, ModelSpec::kMaxLayers); }

std::string StrOr(const Json& j, const char* key, std::string fallback) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return fallback;
  return it->get<std::string>();
}

int64_t DtypeBytes(const Json& j) {
  const std::string t = StrOr(j, "torch_dtype", StrOr(j, "dtype", "bfloat16"));
  if (t == "float32") return 4;
  if (t == "float8" || t == "int8") return 1;
  return 2;
}

AttentionLayer Attention(const Json& j, int64_t d_model) {
  const int64_t heads = Positive(Int(j, "num_attention_heads"), "num_attention_heads");
  const int64_t kv = IntOr(j, "num_key_value_heads", heads);
  const int64_t head_dim = IntOr(j, "head_dim", d_model / heads);
  return AttentionLayer{heads, kv, head_dim};
}

Mamba2Layer Mamba2(const Json& j, int64_t d_model, const char* heads_key, const char* head_dim_key,
                   const char* state_key, const char* groups_key, const char* conv_key) {
  Mamba2Layer m;
  m.d_state = Int(j, state_key);
  m.n_groups = IntOr(j, groups_key, 1);
  m.d_conv = IntOr(j, conv_key, 4);
  m.head_dim = Positive(IntOr(j, head_dim_key, 64), head_dim_key);
  const int64_t expand = IntOr(j, "expand", 2);
  m.num_heads = IntOr(j, heads_key, expand * d_model / m.head_dim);
  return m;
}

std::vector<LayerSpec> Transformer(const Json& j, int64_t d_model) {
  const int64_t n = LayerCount(j, "num_hidden_layers");
  std::vector<LayerSpec> layers;
  for (int64_t i = 0; i < n; ++i) {
    layers.push_back(Attention(j, d_model));
    layers.push_back(MlpLayer{Int(j, "intermediate_size"), true});
  }
  return layers;
}

std::vector<LayerSpec> PureMamba2(const Json& j, int64_t d_model) {
  const int64_t n = LayerCount(j, "num_hidden_layers");
  std::vector<LayerSpec> layers;
  for (int64_t i = 0; i < n; ++i) {
    layers.push_back(
        Mamba2(j, d_model, "num_heads", "head_dim", "state_size", "n_groups", "conv_kernel"));
  }
  return layers;
}

std::vector<LayerSpec> Jamba(const Json& j, int64_t d_model) {
  const int64_t n = LayerCount(j, "num_hidden_layers");
  const int64_t attn_period = IntOr(j, "attn_layer_period", 8);
  const int64_t attn_offset = IntOr(j, "attn_layer_offset", 4);
  const int64_t expert_period = IntOr(j, "expert_layer_period", 2);
  const int64_t expert_offset = IntOr(j, "expert_layer_offset", 1);
  const int64_t d_ff = Int(j, "intermediate_size");
  const int64_t d_inner = IntOr(j, "mamba_expand", 2) * d_model;
  const int64_t dt_rank = IntOr(j, "mamba_dt_rank", (d_model + 15) / 16);
  std::vector<LayerSpec> layers;
  for (int64_t i = 0; i < n; ++i) {
    if (attn_period > 0 && i % attn_period == attn_offset) {
      layers.push_back(Attention(j, d_model));
    } else {
      layers.push_back(
          Mamba1Layer{d_inner, Int(j, "mamba_d_state"), IntOr(j, "mamba_d_conv", 4), dt_rank});
    }
    if (expert_period > 0 && i % expert_period == expert_offset && IntOr(j, "num_experts", 1) > 1) {
      layers.push_back(
          MoeLayer{Int(j, "num_experts"), Int(j, "num_experts_per_tok"), d_ff, 0, true});
    } else {
      layers.push_back(MlpLayer{d_ff, true});
    }
  }
  return layers;
}

std::vector<LayerSpec> NemotronH(const Json& j, int64_t d_model) {
  const std::string pattern = StrOr(j, "hybrid_override_pattern", "");
  if (pattern.empty()) throw FieldError("missing required field 'hybrid_override_pattern'");
  if (pattern.size() > static_cast<size_t>(ModelSpec::kMaxLayers)) {
    throw FieldError("field 'hybrid_override_pattern' has " + std::to_string(pattern.size()) +
                     " layers, more than the limit of " + std::to_string(ModelSpec::kMaxLayers));
  }
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i < pattern.size(); ++i) {
    switch (pattern[i]) {
      case 'M':
        layers.push_back(Mamba2(j, d_model, "mamba_num_heads", "mamba_head_dim", "ssm_state_size",
                                "n_groups", "conv_kernel"));
        break;
      case '*':
        layers.push_back(Attention(j, d_model));
        break;
      case '-':
        layers.push_back(MlpLayer{Int(j, "intermediate_size"), false});
        break;
      case 'E':
        layers.push_back(MoeLayer{Int(j, "n_routed_experts"), Int(j, "num_experts_per_tok"),
                                  Int(j, "moe_intermediate_size"),
                                  IntOr(j, "moe_shared_expert_intermediate_size", 0), false});
        break;
      default:
        throw FieldError("hybrid_override_pattern: unknown layer character '" +
                         std::string(1, pattern[i]) + "' at position " + std::to_string(i));
    }
  }
  return layers;
}

std::vector<LayerSpec> Zamba2(const Json& j, int64_t d_model) {
  const int64_t n = LayerCount(j, "num_hidden_layers");
  const Json types = j.value("layers_block_type", Json::array());
  std::vector<LayerSpec> layers;
  for (int64_t i = 0; i < n; ++i) {
    layers.push_back(Mamba2(j, d_model, "n_mamba_heads", "mamba_headdim", "mamba_d_state",
                            "mamba_ngroups", "mamba_d_conv"));
    const bool hybrid = i < static_cast<int64_t>(types.size()) && types[i] == "hybrid";
    if (hybrid) {
      // The shared block attends over the concatenation of the hidden state and the embedding.
      const int64_t heads = Positive(Int(j, "num_attention_heads"), "num_attention_heads");
      layers.push_back(
          AttentionLayer{heads, IntOr(j, "num_key_value_heads", heads), 2 * d_model / heads});
      layers.push_back(MlpLayer{Int(j, "intermediate_size"), true});
    }
  }
  return layers;
}

std::vector<LayerSpec> GraniteHybrid(const Json& j, int64_t d_model) {
  const Json types = j.value("layer_types", Json::array());
  if (!types.is_array() || types.empty()) throw FieldError("missing required field 'layer_types'");
  if (types.size() > static_cast<size_t>(ModelSpec::kMaxLayers)) {
    throw FieldError("field 'layer_types' has " + std::to_string(types.size()) +
                     " layers, more than the limit of " + std::to_string(ModelSpec::kMaxLayers));
  }
  const int64_t experts = IntOr(j, "num_local_experts", 0);
  std::vector<LayerSpec> layers;
  for (const Json& t : types) {
    if (t == "attention") {
      layers.push_back(Attention(j, d_model));
    } else if (t == "mamba") {
      layers.push_back(Mamba2(j, d_model, "mamba_n_heads", "mamba_d_head", "mamba_d_state",
                              "mamba_n_groups", "mamba_d_conv"));
    } else {
      throw FieldError("layer_types: unknown layer type " + t.dump());
    }
    if (experts > 0) {
      layers.push_back(MoeLayer{experts, Int(j, "num_experts_per_tok"), Int(j, "intermediate_size"),
                                IntOr(j, "shared_intermediate_size", 0), true});
    } else {
      layers.push_back(
          MlpLayer{IntOr(j, "shared_intermediate_size", Int(j, "intermediate_size")), true});
    }
  }
  return layers;
}

std::vector<LayerSpec> FalconH1(const Json& j, int64_t d_model) {
  const int64_t n = LayerCount(j, "num_hidden_layers");
  std::vector<LayerSpec> layers;
  for (int64_t i = 0; i < n; ++i) {
    layers.push_back(Attention(j, d_model));
    layers.push_back(Mamba2(j, d_model, "mamba_n_heads", "mamba_d_head", "mamba_d_state",
                            "mamba_n_groups", "mamba_d_conv"));
    layers.push_back(MlpLayer{Int(j, "intermediate_size"), true});
  }
  return layers;
}

std::vector<LayerSpec> Qwen3Next(const Json& j, int64_t d_model) {
  const int64_t n = LayerCount(j, "num_hidden_layers");
  const int64_t interval = IntOr(j, "full_attention_interval", 4);
  std::vector<LayerSpec> layers;
  for (int64_t i = 0; i < n; ++i) {
    if (interval > 0 && (i + 1) % interval == 0) {
      layers.push_back(Attention(j, d_model));
    } else {
      layers.push_back(
          GatedDeltaNetLayer{Int(j, "linear_num_key_heads"), Int(j, "linear_num_value_heads"),
                             Int(j, "linear_key_head_dim"), Int(j, "linear_value_head_dim"),
                             IntOr(j, "linear_conv_kernel_dim", 4)});
    }
    layers.push_back(MoeLayer{Int(j, "num_experts"), Int(j, "num_experts_per_tok"),
                              Int(j, "moe_intermediate_size"),
                              IntOr(j, "shared_expert_intermediate_size", 0), true});
  }
  return layers;
}

}  // namespace

Result<ModelSpec> ModelSpec::FromHfConfigJson(std::string_view json_text, std::string_view source) {
  const std::string where(source);
  internal::JsonErrorLocator locator;
  if (!Json::sax_parse(json_text, &locator)) {
    return Status::ParseError(locator.Message(json_text, where));
  }
  Json j;
  try {
    j = Json::parse(json_text);
  } catch (const Json::exception& e) {
    return Status::ParseError(where + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return Status::ParseError(where + ": top level must be a JSON object");
  const std::string type = StrOr(j, "model_type", "");
  try {
    const int64_t d_model = Int(j, "hidden_size");
    std::vector<LayerSpec> layers;
    if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3") {
      layers = Transformer(j, d_model);
    } else if (type == "mamba2") {
      layers = PureMamba2(j, d_model);
    } else if (type == "jamba") {
      layers = Jamba(j, d_model);
    } else if (type == "nemotron_h") {
      layers = NemotronH(j, d_model);
    } else if (type == "zamba2") {
      layers = Zamba2(j, d_model);
    } else if (type == "granitemoehybrid") {
      layers = GraniteHybrid(j, d_model);
    } else if (type == "falcon_h1") {
      layers = FalconH1(j, d_model);
    } else if (type == "qwen3_next") {
      layers = Qwen3Next(j, d_model);
    } else {
      return Status::ParseError(
          where + ": unsupported model_type '" + type +
          "' (supported: llama, mistral, qwen2, qwen3, mamba2, jamba, nemotron_h, zamba2, "
          "granitemoehybrid, falcon_h1, qwen3_next)");
    }
    Result<ModelSpec> spec = Create(type, d_model, DtypeBytes(j), std::move(layers));
    if (!spec.ok()) return Status::ParseError(where + ": " + spec.status().message());
    return spec;
  } catch (const FieldError& e) {
    return Status::ParseError(where + ": " + e.what());
  } catch (const Json::exception& e) {
    return Status::ParseError(where + ": " + e.what());
  }
}

Result<ModelSpec> ModelSpec::FromHfConfigFile(const std::string& path) {
  Result<std::string> text = internal::ReadWholeFile(path);
  if (!text.ok()) return Status::IoError("model config: " + text.status().message());
  return FromHfConfigJson(*text, path);
}

Result<ModelSpec> ModelSpec::FromNameOrFile(const std::string& name_or_path) {
  Result<ModelSpec> preset = Preset(name_or_path);
  const bool looks_like_path = name_or_path.find('/') != std::string::npos ||
                               name_or_path.find(".json") != std::string::npos;
  if (preset.ok() || !looks_like_path) return preset;
  return FromHfConfigFile(name_or_path);
}

}  // namespace marconi
