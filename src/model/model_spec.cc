// Cost formulas per layer kind. Every formula counts 2 FLOPs per multiply-accumulate and is
// written as lin * L + pair * L * (P + L), so the model's total has the same closed form.
#include "marconi/model_spec.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace marconi {
namespace {

template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

struct Coefficients {
  double lin = 0;   // FLOPs per new token
  double pair = 0;  // FLOPs per (new query, key) pair
};

double D(int64_t v) { return static_cast<double>(v); }

// int64 arithmetic that saturates at INT64_MAX (or INT64_MIN) instead of overflowing.
constexpr int64_t kSaturated = std::numeric_limits<int64_t>::max();
int64_t Mul(int64_t a, int64_t b) {
  int64_t r = 0;
  if (!__builtin_mul_overflow(a, b, &r)) return r;
  return (a < 0) != (b < 0) ? std::numeric_limits<int64_t>::min() : kSaturated;
}
int64_t Add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (!__builtin_add_overflow(a, b, &r)) return r;
  return a < 0 ? std::numeric_limits<int64_t>::min() : kSaturated;
}

Coefficients LayerCoefficients(const LayerSpec& layer, int64_t d_model) {
  const double d = D(d_model);
  return std::visit(
      Overloaded{
          [&](const AttentionLayer& a) {
            const double q = D(a.num_heads) * D(a.head_dim);
            const double kv = D(a.num_kv_heads) * D(a.head_dim);
            // Q and O projections (2 d q each), K and V projections (2 d kv each); QK^T and AV.
            return Coefficients{4 * d * q + 4 * d * kv, 4 * q};
          },
          [&](const Mamba1Layer& m) {
            const double di = D(m.d_inner), n = D(m.d_state), r = D(m.dt_rank);
            // in_proj (d -> 2 di), conv, x_proj (di -> r + 2n), dt_proj (r -> di), selective
            // scan (~6 di n: discretise, update, read out), gating, out_proj (di -> d).
            return Coefficients{2 * d * 2 * di + 2 * D(m.d_conv) * di + 2 * di * (r + 2 * n) +
                                    2 * r * di + 6 * di * n + 5 * di + 2 * di * d,
                                0};
          },
          [&](const Mamba2Layer& m) {
            const double di = D(m.num_heads) * D(m.head_dim), n = D(m.d_state);
            const double conv_dim = di + 2 * D(m.n_groups) * n;
            // in_proj (d -> z, x, B, C, dt), conv over x, B, C, SSD recurrence (~6 di n),
            // gated norm, out_proj.
            return Coefficients{2 * d * (2 * di + 2 * D(m.n_groups) * n + D(m.num_heads)) +
                                    2 * D(m.d_conv) * conv_dim + 6 * di * n + 5 * di + 2 * di * d,
                                0};
          },
          [&](const GatedDeltaNetLayer& g) {
            const double kd = D(g.num_key_heads) * D(g.key_head_dim);
            const double vd = D(g.num_value_heads) * D(g.value_head_dim);
            const double state = D(g.num_value_heads) * D(g.key_head_dim) * D(g.value_head_dim);
            // in_proj (q, k, v, z, beta, alpha), conv over q, k, v, delta-rule update and
            // read-out (~8 elements of work per state entry), gated norm, out_proj.
            return Coefficients{2 * d * (2 * kd + 2 * vd + 2 * D(g.num_value_heads)) +
                                    2 * D(g.conv_kernel) * (2 * kd + vd) + 8 * state + 5 * vd +
                                    2 * vd * d,
                                0};
          },
          [&](const PaperSsmLayer& s) {
            const double n = D(s.d_state);
            return Coefficients{12 * d * d + 16 * d * n + 10 * d, 0};
          },
          [&](const MlpLayer& m) {
            return Coefficients{2 * d * D(m.d_ff) * (m.gated ? 3 : 2), 0};
          },
          [&](const MoeLayer& m) {
            const double mats = m.gated ? 3 : 2;
            return Coefficients{2 * d * D(m.num_experts) +
                                    D(m.num_active) * 2 * d * D(m.expert_d_ff) * mats +
                                    2 * d * D(m.shared_d_ff) * mats,
                                0};
          },
      },
      layer);
}

Status Positive(int64_t v, size_t index, std::string_view layer, std::string_view field) {
  if (v > 0 && v <= ModelSpec::kMaxDimension) return Status::Ok();
  std::ostringstream m;
  m << "layer " << index << " (" << layer << "): " << field << " must be in 1.."
    << ModelSpec::kMaxDimension << ", got " << v;
  return Status::InvalidArgument(m.str());
}

Status ValidateLayer(const LayerSpec& layer, size_t i) {
  const std::string_view k = LayerKindName(layer);
  auto all = [&](std::initializer_list<std::pair<int64_t, const char*>> fields) -> Status {
    for (const auto& [v, f] : fields) {
      if (Status s = Positive(v, i, k, f); !s.ok()) return s;
    }
    return Status::Ok();
  };
  return std::visit(
      Overloaded{
          [&](const AttentionLayer& a) -> Status {
            if (Status s = all({{a.num_heads, "num_heads"},
                                {a.num_kv_heads, "num_kv_heads"},
                                {a.head_dim, "head_dim"}});
                !s.ok())
              return s;
            if (a.num_heads % a.num_kv_heads != 0) {
              return Status::InvalidArgument(
                  "layer " + std::to_string(i) + " (attention): num_heads " +
                  std::to_string(a.num_heads) + " is not a multiple of num_kv_heads " +
                  std::to_string(a.num_kv_heads));
            }
            return Status::Ok();
          },
          [&](const Mamba1Layer& m) {
            return all({{m.d_inner, "d_inner"},
                        {m.d_state, "d_state"},
                        {m.d_conv, "d_conv"},
                        {m.dt_rank, "dt_rank"}});
          },
          [&](const Mamba2Layer& m) {
            return all({{m.num_heads, "num_heads"},
                        {m.head_dim, "head_dim"},
                        {m.d_state, "d_state"},
                        {m.n_groups, "n_groups"},
                        {m.d_conv, "d_conv"}});
          },
          [&](const GatedDeltaNetLayer& g) {
            return all({{g.num_key_heads, "num_key_heads"},
                        {g.num_value_heads, "num_value_heads"},
                        {g.key_head_dim, "key_head_dim"},
                        {g.value_head_dim, "value_head_dim"},
                        {g.conv_kernel, "conv_kernel"}});
          },
          [&](const PaperSsmLayer& s) {
            return all({{s.d_state, "d_state"}, {s.d_conv, "d_conv"}});
          },
          [&](const MlpLayer& m) {
            return all({{m.d_ff, "d_ff"}});
          },
          [&](const MoeLayer& m) -> Status {
            if (Status s = all({{m.num_experts, "num_experts"},
                                {m.num_active, "num_active"},
                                {m.expert_d_ff, "expert_d_ff"}});
                !s.ok())
              return s;
            if (m.num_active > m.num_experts || m.shared_d_ff < 0 ||
                m.shared_d_ff > ModelSpec::kMaxDimension) {
              return Status::InvalidArgument("layer " + std::to_string(i) +
                                             " (moe): num_active must be <= num_experts and "
                                             "shared_d_ff in 0..16777216");
            }
            return Status::Ok();
          },
      },
      layer);
}

}  // namespace

std::string_view LayerKindName(const LayerSpec& layer) {
  static constexpr std::string_view kNames[] = {"attention", "mamba1", "mamba2", "gated_deltanet",
                                                "paper_ssm", "mlp",    "moe"};
  return kNames[layer.index()];
}

bool IsRecurrent(const LayerSpec& layer) {
  return std::holds_alternative<Mamba1Layer>(layer) || std::holds_alternative<Mamba2Layer>(layer) ||
         std::holds_alternative<GatedDeltaNetLayer>(layer) ||
         std::holds_alternative<PaperSsmLayer>(layer);
}

int64_t LayerKvBytesPerToken(const LayerSpec& layer, int64_t dtype_bytes) {
  if (const auto* a = std::get_if<AttentionLayer>(&layer)) {
    return Mul(Mul(2, Mul(a->num_kv_heads, a->head_dim)), dtype_bytes);  // K and V
  }
  return 0;
}

int64_t LayerStateBytes(const LayerSpec& layer, int64_t d_model, int64_t dtype_bytes) {
  // Convolution states keep the last (d_conv - 1) inputs of each channel, except the paper's
  // formula, which counts d_conv of them.
  return std::visit(
      Overloaded{
          [](const AttentionLayer&) -> int64_t { return 0; },
          [&](const Mamba1Layer& m) -> int64_t {
            return Mul(Add(Mul(m.d_inner, m.d_state), Mul(m.d_inner, Add(m.d_conv, -1))),
                       dtype_bytes);
          },
          [&](const Mamba2Layer& m) -> int64_t {
            const int64_t di = Mul(m.num_heads, m.head_dim);
            const int64_t conv_dim = Add(di, Mul(2, Mul(m.n_groups, m.d_state)));
            return Mul(Add(Mul(di, m.d_state), Mul(conv_dim, Add(m.d_conv, -1))), dtype_bytes);
          },
          [&](const GatedDeltaNetLayer& g) -> int64_t {
            const int64_t state = Mul(Mul(g.num_value_heads, g.key_head_dim), g.value_head_dim);
            const int64_t conv_dim = Add(Mul(2, Mul(g.num_key_heads, g.key_head_dim)),
                                         Mul(g.num_value_heads, g.value_head_dim));
            return Mul(Add(state, Mul(conv_dim, Add(g.conv_kernel, -1))), dtype_bytes);
          },
          [&](const PaperSsmLayer& s) -> int64_t {
            return Mul(Add(Mul(d_model, s.d_state),
                           Mul(Add(Mul(2, d_model), Mul(2, s.d_state)), s.d_conv)),
                       dtype_bytes);
          },
          [](const MlpLayer&) -> int64_t { return 0; },
          [](const MoeLayer&) -> int64_t { return 0; },
      },
      layer);
}

double LayerPrefillFlops(const LayerSpec& layer, int64_t d_model, int64_t cached_tokens,
                         int64_t new_tokens) {
  const Coefficients c = LayerCoefficients(layer, d_model);
  const double l = D(new_tokens);
  return c.lin * l + c.pair * l * (D(cached_tokens) + l);
}

Result<ModelSpec> ModelSpec::Create(std::string name, int64_t d_model, int64_t dtype_bytes,
                                    std::vector<LayerSpec> layers) {
  if (d_model <= 0 || d_model > kMaxDimension) {
    return Status::InvalidArgument("model '" + name + "': d_model must be in 1.." +
                                   std::to_string(kMaxDimension) + ", got " +
                                   std::to_string(d_model));
  }
  if (dtype_bytes < 1 || dtype_bytes > 8) {
    return Status::InvalidArgument("model '" + name + "': dtype_bytes must be in 1..8, got " +
                                   std::to_string(dtype_bytes));
  }
  if (layers.empty()) return Status::InvalidArgument("model '" + name + "': no layers");
  if (layers.size() > static_cast<size_t>(kMaxLayers)) {
    return Status::InvalidArgument("model '" + name + "': " + std::to_string(layers.size()) +
                                   " layers, more than the limit of " + std::to_string(kMaxLayers));
  }
  ModelSpec m;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (Status s = ValidateLayer(layers[i], i); !s.ok()) {
      return Status::InvalidArgument("model '" + name + "': " + s.message());
    }
    // Sizes are now at most kMaxDimension, but their products can still exceed int64: Add and
    // Mul saturate, and the bound below rejects what saturated.
    m.kv_bytes_per_token_ =
        Add(m.kv_bytes_per_token_, LayerKvBytesPerToken(layers[i], dtype_bytes));
    m.state_bytes_ = Add(m.state_bytes_, LayerStateBytes(layers[i], d_model, dtype_bytes));
    const std::pair<const char*, int64_t> totals[] = {
        {"KV bytes per token", m.kv_bytes_per_token_},
        {"state bytes per checkpoint", m.state_bytes_}};
    for (const auto& [what, bytes] : totals) {
      if (bytes > kMaxBytesPerTokenOrCheckpoint) {
        return Status::InvalidArgument("model '" + name + "': " + what + " exceed the limit of " +
                                       std::to_string(kMaxBytesPerTokenOrCheckpoint) +
                                       " at layer " + std::to_string(i) + " (" +
                                       std::string(LayerKindName(layers[i])) + ")");
      }
    }
    const Coefficients c = LayerCoefficients(layers[i], d_model);
    m.linear_flops_ += c.lin;
    m.pair_flops_ += c.pair;
  }
  // Finite by the bounds above (at most ~2^130); checked so that no caller ever sees inf.
  if (!std::isfinite(m.PrefillFlops(kMaxTokens, kMaxTokens))) {
    return Status::InvalidArgument("model '" + name + "': prefill FLOPs overflow a double");
  }
  m.name_ = std::move(name);
  m.d_model_ = d_model;
  m.dtype_bytes_ = dtype_bytes;
  m.layers_ = std::move(layers);
  return m;
}

int64_t ModelSpec::CountLayers(std::string_view kind) const {
  int64_t n = 0;
  for (const LayerSpec& l : layers_) n += LayerKindName(l) == kind ? 1 : 0;
  return n;
}

double ModelSpec::PrefillFlops(int64_t cached_tokens, int64_t new_tokens) const {
  const double l = D(new_tokens);
  return linear_flops_ * l + pair_flops_ * l * (D(cached_tokens) + l);
}

double ModelSpec::FlopsSaved(int64_t hit_tokens, int64_t input_tokens) const {
  // Expanded form of PrefillFlops(0, T) - PrefillFlops(h, T - h): lin h + pair h T. Computing it
  // directly avoids cancellation between two large numbers.
  return linear_flops_ * D(hit_tokens) + pair_flops_ * D(hit_tokens) * D(input_tokens);
}

double ModelSpec::BytesCheckpointedEvery(int64_t tokens, int64_t block) const {
  const int64_t checkpoints = block > 0 ? tokens / block : 0;
  return D(tokens) * D(kv_bytes_per_token_) + D(checkpoints) * D(state_bytes_);
}

std::string ModelSpec::Describe() const {
  std::ostringstream o;
  o << "model " << name_ << ": d_model " << d_model_ << ", " << layers_.size() << " layers (";
  bool first = true;
  for (std::string_view kind :
       {"attention", "mamba1", "mamba2", "gated_deltanet", "paper_ssm", "mlp", "moe"}) {
    if (int64_t n = CountLayers(kind); n > 0) {
      o << (first ? "" : ", ") << n << " " << kind;
      first = false;
    }
  }
  o << "), " << dtype_bytes_ << "-byte values\n"
    << "  KV bytes per token:           " << kv_bytes_per_token_ << "\n"
    << "  state bytes per checkpoint:   " << state_bytes_ << "\n"
    << "  prefill FLOPs per token:      " << linear_flops_ << " + " << pair_flops_
    << " per (query, key) pair\n";
  return o.str();
}

}  // namespace marconi
