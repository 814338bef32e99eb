// ModelSpec: the layers of a (hybrid) model and what caching them costs and saves.
//
// A model is an ordered list of layers. Each layer kind knows its KV bytes per token (attention),
// its recurrent-state bytes per checkpoint (SSM state + convolution state), and its prefill FLOPs.
// FLOPs count 2 per multiply-accumulate. Attention follows the Marconi paper's convention (no
// causal halving): L new queries with P tokens already cached attend to all P + L keys.
//
// Thread safety: a ModelSpec is immutable after creation; all const methods may be called
// concurrently.
#ifndef MARCONI_MODEL_SPEC_H_
#define MARCONI_MODEL_SPEC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "marconi/status.h"

namespace marconi {

// Grouped-query attention: KV cache of num_kv_heads x head_dim keys and values per token.
struct AttentionLayer {
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
};

// Mamba (selective scan, S6): d_inner channels, each with a d_state state; conv of width d_conv.
struct Mamba1Layer {
  int64_t d_inner = 0;
  int64_t d_state = 0;
  int64_t d_conv = 4;
  int64_t dt_rank = 0;
};

// Mamba2 (SSD): num_heads x head_dim channels (= d_inner), n_groups groups of B/C of d_state.
struct Mamba2Layer {
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t d_state = 0;
  int64_t n_groups = 1;
  int64_t d_conv = 4;
};

// Gated DeltaNet (Qwen3-Next linear attention): per value head a key_head_dim x value_head_dim
// state matrix; a causal conv over the q, k, v channels.
struct GatedDeltaNetLayer {
  int64_t num_key_heads = 0;
  int64_t num_value_heads = 0;
  int64_t key_head_dim = 0;
  int64_t value_head_dim = 0;
  int64_t conv_kernel = 4;
};

// The Marconi paper's Appendix A SSM formula, kept exactly so results compare with the paper:
// FLOPs 12 L D^2 + 16 L D N + 10 L D; state D N + (2D + 2N) x d_conv elements.
struct PaperSsmLayer {
  int64_t d_state = 0;
  int64_t d_conv = 4;
};

// Feed-forward block: d_model -> d_ff -> d_model, gated (SwiGLU, three matrices) or not (two).
struct MlpLayer {
  int64_t d_ff = 0;
  bool gated = true;
};

// Mixture of experts: a router over num_experts, num_active experts of expert_d_ff each per token,
// plus an always-active shared expert of shared_d_ff (0 = none).
struct MoeLayer {
  int64_t num_experts = 0;
  int64_t num_active = 0;
  int64_t expert_d_ff = 0;
  int64_t shared_d_ff = 0;
  bool gated = true;
};

using LayerSpec = std::variant<AttentionLayer, Mamba1Layer, Mamba2Layer, GatedDeltaNetLayer,
                               PaperSsmLayer, MlpLayer, MoeLayer>;

// "attention", "mamba1", "mamba2", "gated_deltanet", "paper_ssm", "mlp" or "moe".
std::string_view LayerKindName(const LayerSpec& layer);
// True for layers with a recurrent state (Mamba1, Mamba2, GatedDeltaNet, PaperSsm).
bool IsRecurrent(const LayerSpec& layer);

// Per-layer costs. d_model and dtype_bytes are the model's. For sizes whose byte counts do not fit
// in int64 (never for a layer of a model that ModelSpec::Create accepts) the byte counts saturate
// at INT64_MAX instead of overflowing.
int64_t LayerKvBytesPerToken(const LayerSpec& layer, int64_t dtype_bytes);
int64_t LayerStateBytes(const LayerSpec& layer, int64_t d_model, int64_t dtype_bytes);
// FLOPs to prefill `new_tokens` tokens when `cached_tokens` precede them in the cache.
double LayerPrefillFlops(const LayerSpec& layer, int64_t d_model, int64_t cached_tokens,
                         int64_t new_tokens);

class ModelSpec {
 public:
  // Bounds that keep every cost exact and free of overflow. A model that Create accepts has at
  // most kMaxLayers layers, every size (and d_model) in 1..kMaxDimension, KV bytes per token and
  // state bytes per checkpoint of at most kMaxBytesPerTokenOrCheckpoint each. Hence for any
  // token (and checkpoint) count up to kMaxTokens, (KvBytesPerToken() + StateBytesPerCheckpoint())
  // times that count stays below 2^62, and PrefillFlops(P, L) is finite and exact in its closed
  // form for P, L <= kMaxTokens. Real models are orders of magnitude below every bound.
  static constexpr int64_t kMaxTokens = int64_t{1} << 31;
  static constexpr int64_t kMaxLayers = int64_t{1} << 16;
  static constexpr int64_t kMaxDimension = int64_t{1} << 24;
  static constexpr int64_t kMaxBytesPerTokenOrCheckpoint = int64_t{1} << 30;

  // Validates and builds a model. Errors (kInvalidArgument) name the offending layer and field:
  // d_model outside 1..kMaxDimension, dtype_bytes not in 1..8, no layers or more than
  // kMaxLayers, any size outside 1..kMaxDimension, num_heads not a multiple of num_kv_heads, more
  // active experts than experts, KV bytes per token or state bytes per checkpoint above
  // kMaxBytesPerTokenOrCheckpoint.
  static Result<ModelSpec> Create(std::string name, int64_t d_model, int64_t dtype_bytes,
                                  std::vector<LayerSpec> layers);

  // A built-in model by name (see PresetNames()); kNotFound lists the valid names.
  static Result<ModelSpec> Preset(std::string_view name);
  static std::vector<std::string> PresetNames();

  // A model from a Hugging Face config.json of a supported family (model_type llama, mistral,
  // qwen2, qwen3, mamba2, jamba, nemotron_h, zamba2, granitemoehybrid, falcon_h1, qwen3_next).
  // Unknown fields are ignored; a missing or mistyped required field is a kParseError naming the
  // field and `source` (a file name used in messages).
  static Result<ModelSpec> FromHfConfigJson(std::string_view json_text, std::string_view source);
  // Reads `path` and parses it as above; kIoError when the file cannot be read.
  static Result<ModelSpec> FromHfConfigFile(const std::string& path);
  // A preset name, or else a path to a config.json.
  static Result<ModelSpec> FromNameOrFile(const std::string& name_or_path);

  const std::string& name() const { return name_; }
  int64_t d_model() const { return d_model_; }
  int64_t dtype_bytes() const { return dtype_bytes_; }
  const std::vector<LayerSpec>& layers() const { return layers_; }
  int64_t CountLayers(std::string_view kind) const;

  // Bytes of KV cache one token occupies, over all attention layers.
  int64_t KvBytesPerToken() const { return kv_bytes_per_token_; }
  // Bytes of one checkpoint: the recurrent (SSM + conv) state of every recurrent layer.
  int64_t StateBytesPerCheckpoint() const { return state_bytes_; }
  // FLOPs to prefill `new_tokens` after `cached_tokens` already cached. Exact sum over layers,
  // computed in closed form: linear_flops_per_token() * L + attention_pair_flops() * L * (P + L).
  double PrefillFlops(int64_t cached_tokens, int64_t new_tokens) const;
  // FLOPs saved when `hit_tokens` of an `input_tokens`-long prefill are served from the cache:
  // PrefillFlops(0, input) - PrefillFlops(hit, input - hit). Requires 0 <= hit <= input.
  double FlopsSaved(int64_t hit_tokens, int64_t input_tokens) const;
  // Bytes a request of `tokens` tokens occupies when checkpointed every `block` tokens (the
  // fine-grained scheme of engines: KV of all tokens + one state per full block).
  double BytesCheckpointedEvery(int64_t tokens, int64_t block) const;

  double linear_flops_per_token() const { return linear_flops_; }
  double attention_pair_flops() const { return pair_flops_; }

  // A multi-line human-readable summary of layers and costs.
  std::string Describe() const;

 private:
  std::string name_;
  int64_t d_model_ = 0;
  int64_t dtype_bytes_ = 2;
  std::vector<LayerSpec> layers_;
  int64_t kv_bytes_per_token_ = 0;
  int64_t state_bytes_ = 0;
  double linear_flops_ = 0;
  double pair_flops_ = 0;
};

}  // namespace marconi

#endif  // MARCONI_MODEL_SPEC_H_
