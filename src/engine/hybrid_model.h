// A small hybrid (attention + Mamba2) language model executed on the CPU, in fp32, to show that
// resuming a prefill from a cached state gives exactly the output of a full recompute.
//
// Blocks follow a pattern string: 'A' = attention (GQA, rotary positions, KV cache), 'M' = Mamba2
// (SSD: causal depthwise conv1d with its conv state, selective state space recurrence, gated
// RMSNorm). Every block is x += mixer(rmsnorm(x)); x += gated_mlp(rmsnorm(x)). Weights are drawn
// from a seeded generator.
//
// Mamba2 runs in one of two kernels: kSequential (the recurrence, token by token: what decode
// uses) and kChunked (the SSD chunked scan over chunks aligned to absolute positions that are
// multiples of chunk_size, giving the state at every chunk boundary). Matrix products run through
// OpenBLAS (kBlas) or plain loops (kReference), always on row blocks aligned to the same chunk
// boundaries (see gemm.h). Exactness of a resume against a full run:
//   - kSequential + kReference: bit-identical from any position (every value is computed by the
//     same operations in the same order whatever the batch);
//   - any kernels, resuming on a chunk boundary: bit-identical (the same calls on the same data);
//   - otherwise: equal up to float rounding (same maths, other summation orders), about 1e-6
//     relative on the logits of the test models; the tests allow 1e-4.
//
// Not thread-safe; const methods may run concurrently.
#ifndef MARCONI_ENGINE_HYBRID_MODEL_H_
#define MARCONI_ENGINE_HYBRID_MODEL_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/gemm.h"
#include "marconi/status.h"
#include "marconi/types.h"

namespace marconi::engine {

struct HybridConfig {
  std::string pattern = "MMAM";
  int64_t vocab = 256;
  int64_t d_model = 64;
  int64_t d_ff = 128;
  // attention
  int64_t n_heads = 4;
  int64_t n_kv_heads = 2;
  int64_t head_dim = 16;
  double rope_theta = 10000.0;
  // Mamba2
  int64_t ssm_heads = 4;
  int64_t ssm_head_dim = 16;  // d_inner = ssm_heads x ssm_head_dim
  int64_t d_state = 16;
  int64_t n_groups = 1;
  int64_t d_conv = 4;
  int64_t chunk_size = 16;
  uint64_t seed = 1;
};

enum class ScanKernel { kSequential, kChunked };

// How a prefill computes. Implicitly made from a ScanKernel (matrix products through BLAS).
struct Kernels {
  ScanKernel scan = ScanKernel::kChunked;
  MatmulKernel matmul = MatmulKernel::kBlas;
  Kernels() = default;
  Kernels(ScanKernel s, MatmulKernel m = MatmulKernel::kBlas) : scan(s), matmul(m) {}  // NOLINT
};

// The recurrent part of one Mamba2 layer: SSM state [heads][head_dim][d_state] and conv state
// (the last d_conv - 1 conv inputs, [d_conv - 1][conv_dim]).
struct RecurrentState {
  std::vector<float> ssm;
  std::vector<float> conv;
  bool operator==(const RecurrentState&) const = default;
};

// Everything a sequence needs to continue: per layer, KV of all tokens (attention) or the
// recurrent state (Mamba2).
struct SequenceState {
  int64_t tokens = 0;
  std::vector<std::vector<float>> keys, values;  // per layer: [tokens][kv_heads x head_dim]
  std::vector<RecurrentState> recurrent;         // per layer (empty for attention layers)
};

// The recurrent states of every Mamba2 layer after `position` tokens: a checkpoint.
struct Checkpoint {
  int64_t position = 0;
  std::vector<RecurrentState> layers;
};

class HybridModel {
 public:
  // kInvalidArgument names the bad field (sizes <= 0, heads not divisible, unknown pattern char).
  static Result<HybridModel> Create(const HybridConfig& config);

  const HybridConfig& config() const { return config_; }
  // kInvalidArgument "<what> token T at index I is outside the vocabulary of V" for the first
  // token outside [0, vocab); Ok otherwise.
  Status CheckTokens(std::span<const Token> tokens, const std::string& what) const;
  SequenceState NewSequence() const;

  // Appends `tokens` to `state` and returns the logits after the last of them. States after each
  // position in `capture` (absolute, in (state.tokens, state.tokens + tokens.size()], ascending)
  // are appended to `captured`: with kChunked, from the previous chunk boundary's state rolled
  // forward token by token. kInvalidArgument for an empty input, a token outside the vocabulary
  // or a bad capture position; `state` is unchanged then.
  Result<std::vector<float>> Prefill(SequenceState& state, std::span<const Token> tokens,
                                     Kernels kernels, std::span<const int64_t> capture = {},
                                     std::vector<Checkpoint>* captured = nullptr) const;

  // A state that resumes after `checkpoint.position` tokens of `full`: the KV of the first
  // position tokens and the checkpoint's recurrent states. kInvalidArgument when the checkpoint
  // does not fit this model (layer count, state sizes: e.g. bytes from another model) or `full`
  // holds KV for fewer tokens.
  Result<SequenceState> Resume(const SequenceState& full, const Checkpoint& checkpoint) const;

  // Weights in the safetensors format (8-byte little-endian header length, JSON header of
  // {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}, raw data), so that
  // real weights can be used. Names: "embedding", "final_norm", "layers.<i>.<field>" (fields:
  // norm1, norm2, wq, wk, wv, wo, in_proj, conv_w, conv_b, dt_bias, a_log, d_skip, gate_norm,
  // out_proj, w_gate, w_up, w_down; matrices are [out][in]). Loading checks every tensor's
  // presence, dtype and shape against the config; on error (kIoError / kParseError naming the
  // file and tensor) the weights are unchanged.
  Status LoadSafetensors(const std::string& path);
  Status SaveSafetensors(const std::string& path) const;

  // The KV of tokens [begin, end) of `state` as bytes: 8-byte begin, end and attention-layer
  // count, then per attention layer the keys and the values of those tokens (raw fp32, host byte
  // order). Precondition: 0 <= begin < end <= the tokens whose KV `state` holds.
  std::string SerializeKv(const SequenceState& state, int64_t begin, int64_t end) const;
  // Appends such a range to `state`, whose attention layers must hold KV for exactly `begin`
  // tokens. kParseError (truncated, wrong layer count or size) or kInvalidArgument (a range that
  // does not continue the state); `state` is unchanged then. Does not change state.tokens: a
  // prefill must start from a state whose KV and recurrent part agree (see Resume).
  Status AppendKv(std::string_view bytes, SequenceState& state) const;

  // Bytes of one checkpoint (fp32) and of KV per token, to compare with ModelSpec.
  int64_t CheckpointBytes() const;
  int64_t KvBytesPerToken() const;

 private:
  struct Layer {
    char kind = 'M';
    std::vector<float> norm1, norm2;
    std::vector<float> wq, wk, wv, wo;           // attention
    std::vector<float> in_proj, conv_w, conv_b;  // Mamba2
    std::vector<float> dt_bias, a_log, d_skip, gate_norm, out_proj;
    std::vector<float> w_gate, w_up, w_down;  // gated MLP
  };
  HybridModel() = default;
  struct TensorRef {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float>* data;
  };
  std::vector<TensorRef> Tensors();
  // One prefill's fixed arguments; activations are row-major [tokens][width].
  struct Pass {
    SequenceState& s;
    int64_t start, rows;  // absolute position of the first row, number of rows
    Kernels kernels;
    std::span<const int64_t> capture;
    std::vector<Checkpoint>* captured;
  };
  // out[rows][w_rows] = in[rows][w_cols] W^T, issued on row blocks aligned to chunk boundaries.
  std::vector<float> Linear(const Pass& p, const std::vector<float>& in,
                            const std::vector<float>& w, int64_t w_rows, int64_t w_cols) const;
  void Block(const Layer& l, size_t li, const Pass& p, std::vector<float>& x) const;
  // Replace h (the normalised input) by the mixer's output.
  void Attention(const Layer& l, size_t li, const Pass& p, std::vector<float>& h) const;
  void Mamba(const Layer& l, size_t li, const Pass& p, std::vector<float>& h) const;

  HybridConfig config_;
  std::vector<float> embedding_, final_norm_;
  std::vector<Layer> layers_;
};

// Serialisation of a checkpoint (the recurrent states) to bytes and back: 8-byte position and
// layer count, then per layer the SSM and conv vectors, each as an 8-byte length and raw fp32
// values (host byte order). kParseError for truncated or trailing bytes.
std::string SerializeCheckpoint(const Checkpoint& c);
Result<Checkpoint> DeserializeCheckpoint(std::string_view bytes);

}  // namespace marconi::engine

#endif  // MARCONI_ENGINE_HYBRID_MODEL_H_
