#include "sim/serving/step_time.h"

#include <algorithm>
#include <type_traits>
#include <variant>

namespace marconi::sim::serving {
namespace {

// Parameters of one layer (weights only; norms and biases of size d are negligible and left
// out, except the per-channel vectors of the recurrent layers, which are kept for exactness).
double LayerParams(const LayerSpec& layer, double d) {
  return std::visit(
      [&](const auto& l) -> double {
        using T = std::decay_t<decltype(l)>;
        if constexpr (std::is_same_v<T, AttentionLayer>) {
          const double q = static_cast<double>(l.num_heads * l.head_dim);
          const double kv = static_cast<double>(l.num_kv_heads * l.head_dim);
          return 2 * d * q + 2 * d * kv;  // Wq, Wo; Wk, Wv
        } else if constexpr (std::is_same_v<T, Mamba1Layer>) {
          const double di = static_cast<double>(l.d_inner), n = static_cast<double>(l.d_state);
          const double r = static_cast<double>(l.dt_rank);
          // in_proj, conv, x_proj, dt_proj, A, D, out_proj
          return d * 2 * di + di * static_cast<double>(l.d_conv) + di * (r + 2 * n) + r * di +
                 di * n + di + di * d;
        } else if constexpr (std::is_same_v<T, Mamba2Layer>) {
          const double di = static_cast<double>(l.num_heads * l.head_dim);
          const double gn = static_cast<double>(l.n_groups * l.d_state);
          const double h = static_cast<double>(l.num_heads);
          // in_proj (z, x, B, C, dt), conv over x, B, C, A, D and dt bias per head, norm, out
          return d * (2 * di + 2 * gn + h) + (di + 2 * gn) * static_cast<double>(l.d_conv) + 3 * h +
                 di + di * d;
        } else if constexpr (std::is_same_v<T, GatedDeltaNetLayer>) {
          const double kd = static_cast<double>(l.num_key_heads * l.key_head_dim);
          const double vd = static_cast<double>(l.num_value_heads * l.value_head_dim);
          const double hv = static_cast<double>(l.num_value_heads);
          // q, k, v, output gate z, beta and alpha projections, conv, out_proj
          return d * (2 * kd + 2 * vd + 2 * hv) +
                 (2 * kd + vd) * static_cast<double>(l.conv_kernel) + vd * d;
        } else if constexpr (std::is_same_v<T, PaperSsmLayer>) {
          // The paper's 12 L D^2 linear FLOPs are 6 D^2 multiply-accumulates per token: 6 D^2
          // weights (its 16 L D N scan term has no weights).
          return 6 * d * d;
        } else if constexpr (std::is_same_v<T, MlpLayer>) {
          return d * static_cast<double>(l.d_ff) * (l.gated ? 3 : 2);
        } else {
          static_assert(std::is_same_v<T, MoeLayer>);
          const double mats = l.gated ? 3 : 2;
          return d * static_cast<double>(l.num_experts) +
                 static_cast<double>(l.num_experts) * d * static_cast<double>(l.expert_d_ff) *
                     mats +
                 d * static_cast<double>(l.shared_d_ff) * mats;
        }
      },
      layer);
}

}  // namespace

int64_t WeightBytes(const ModelSpec& model) {
  double params = 0;
  for (const LayerSpec& l : model.layers()) {
    params += LayerParams(l, static_cast<double>(model.d_model()));
  }
  return static_cast<int64_t>(params * static_cast<double>(model.dtype_bytes()));
}

StepTimeModel::StepTimeModel(const ModelSpec& model, const DeviceSpec& device)
    : model_(model),
      device_(device),
      weight_bytes_(WeightBytes(model)),
      kv_(static_cast<double>(model.KvBytesPerToken())),
      state_(static_cast<double>(model.StateBytesPerCheckpoint())) {}

void StepTimeModel::Add(int64_t context, int64_t tokens, StepCost* cost) const {
  cost->flops += model_.PrefillFlops(context, tokens);
  // Attention reads the KV of everything before and writes that of the new tokens (their own
  // KV is re-read from on-chip memory by a fused kernel); a recurrent layer reads its state once
  // and writes it back once per chunk.
  cost->bytes += kv_ * static_cast<double>(context + tokens) + 2 * state_;
  cost->tokens += tokens;
  ++cost->sequences;
}

double StepTimeModel::Seconds(const StepCost& cost) const {
  if (cost.sequences == 0) return 0;
  const double compute = cost.flops / device_.achieved_flops();
  const double memory =
      (static_cast<double>(weight_bytes_) + cost.bytes) / device_.achieved_bandwidth();
  return std::max(compute, memory) + device_.step_overhead_s;
}

double StepTimeModel::PrefillSeconds(int64_t cached, int64_t tokens, int64_t chunk) const {
  double total = 0;
  for (int64_t done = 0; done < tokens;) {
    const int64_t c = std::min(chunk, tokens - done);
    StepCost cost;
    Add(cached + done, c, &cost);
    total += Seconds(cost);
    done += c;
  }
  return total;
}

}  // namespace marconi::sim::serving
