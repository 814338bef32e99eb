#include "engine/hybrid_model.h"

#include <cmath>
#include <cstring>
#include <random>

#include "util/random.h"

namespace marconi::engine {
namespace {

using Vec = std::vector<float>;

// y = W x, W row-major [rows][cols]; accumulation in a fixed order.
Vec MatVec(const Vec& w, int64_t rows, int64_t cols, const float* x) {
  Vec y(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w.data() + r * cols;
    float acc = 0;
    for (int64_t c = 0; c < cols; ++c) acc += row[c] * x[c];
    y[static_cast<size_t>(r)] = acc;
  }
  return y;
}

Vec RmsNorm(const float* x, const Vec& weight) {
  const size_t n = weight.size();
  float ss = 0;
  for (size_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + 1e-5f);
  Vec y(n);
  for (size_t i = 0; i < n; ++i) y[i] = x[i] * inv * weight[i];
  return y;
}

float Silu(float v) { return v / (1.0f + std::exp(-v)); }
float Softplus(float v) { return v > 20 ? v : std::log1p(std::exp(v)); }

class Init {
 public:
  explicit Init(uint64_t seed) : rng_(seed) {}
  float Uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(internal::UnitInterval(rng_));
  }
  Vec Matrix(int64_t rows, int64_t cols) {
    Vec w(static_cast<size_t>(rows * cols));
    const float a = 1.0f / std::sqrt(static_cast<float>(cols));
    for (float& v : w) v = Uniform(-a, a);
    return w;
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace

Result<HybridModel> HybridModel::Create(const HybridConfig& c) {
  const std::pair<const char*, int64_t> sizes[] = {{"vocab", c.vocab},
                                                   {"d_model", c.d_model},
                                                   {"d_ff", c.d_ff},
                                                   {"n_heads", c.n_heads},
                                                   {"n_kv_heads", c.n_kv_heads},
                                                   {"head_dim", c.head_dim},
                                                   {"ssm_heads", c.ssm_heads},
                                                   {"ssm_head_dim", c.ssm_head_dim},
                                                   {"d_state", c.d_state},
                                                   {"n_groups", c.n_groups},
                                                   {"d_conv", c.d_conv},
                                                   {"chunk_size", c.chunk_size}};
  for (const auto& [name, v] : sizes) {
    if (v <= 0)
      return Status::InvalidArgument(std::string("hybrid model: ") + name + " must be > 0");
  }
  if (c.n_heads % c.n_kv_heads != 0 || c.head_dim % 2 != 0 || c.ssm_heads % c.n_groups != 0 ||
      c.d_conv < 2) {
    return Status::InvalidArgument(
        "hybrid model: n_heads must be a multiple of n_kv_heads, head_dim even, ssm_heads a "
        "multiple of n_groups and d_conv >= 2");
  }
  if (c.pattern.empty() || c.pattern.find_first_not_of("AM") != std::string::npos) {
    return Status::InvalidArgument("hybrid model: pattern '" + c.pattern +
                                   "' must be a non-empty string of A (attention) and M (Mamba2)");
  }
  HybridModel m;
  m.config_ = c;
  Init init(c.seed);
  const int64_t d = c.d_model, di = c.ssm_heads * c.ssm_head_dim;
  const int64_t conv_dim = di + 2 * c.n_groups * c.d_state;
  m.embedding_ = init.Matrix(c.vocab, d);
  m.final_norm_.assign(static_cast<size_t>(d), 1.0f);
  for (char kind : c.pattern) {
    Layer l;
    l.kind = kind;
    l.norm1.assign(static_cast<size_t>(d), 1.0f);
    l.norm2.assign(static_cast<size_t>(d), 1.0f);
    if (kind == 'A') {
      l.wq = init.Matrix(c.n_heads * c.head_dim, d);
      l.wk = init.Matrix(c.n_kv_heads * c.head_dim, d);
      l.wv = init.Matrix(c.n_kv_heads * c.head_dim, d);
      l.wo = init.Matrix(d, c.n_heads * c.head_dim);
    } else {
      l.in_proj = init.Matrix(2 * di + 2 * c.n_groups * c.d_state + c.ssm_heads, d);
      l.conv_w = init.Matrix(conv_dim, c.d_conv);
      l.conv_b.assign(static_cast<size_t>(conv_dim), 0.0f);
      for (int64_t h = 0; h < c.ssm_heads; ++h) {
        const float dt = std::exp(init.Uniform(std::log(0.001f), std::log(0.1f)));
        l.dt_bias.push_back(dt + std::log(-std::expm1(-dt)));  // inverse softplus
        l.a_log.push_back(std::log(init.Uniform(1.0f, 16.0f)));
        l.d_skip.push_back(1.0f);
      }
      l.gate_norm.assign(static_cast<size_t>(di), 1.0f);
      l.out_proj = init.Matrix(d, di);
    }
    l.w_gate = init.Matrix(c.d_ff, d);
    l.w_up = init.Matrix(c.d_ff, d);
    l.w_down = init.Matrix(d, c.d_ff);
    m.layers_.push_back(std::move(l));
  }
  return m;
}

SequenceState HybridModel::NewSequence() const {
  SequenceState s;
  const size_t n = layers_.size();
  s.keys.resize(n);
  s.values.resize(n);
  s.recurrent.resize(n);
  const int64_t di = config_.ssm_heads * config_.ssm_head_dim;
  const int64_t conv_dim = di + 2 * config_.n_groups * config_.d_state;
  for (size_t i = 0; i < n; ++i) {
    if (layers_[i].kind == 'M') {
      s.recurrent[i].ssm.assign(static_cast<size_t>(di * config_.d_state), 0.0f);
      s.recurrent[i].conv.assign(static_cast<size_t>((config_.d_conv - 1) * conv_dim), 0.0f);
    }
  }
  return s;
}

int64_t HybridModel::CheckpointBytes() const {
  const int64_t di = config_.ssm_heads * config_.ssm_head_dim;
  const int64_t conv_dim = di + 2 * config_.n_groups * config_.d_state;
  int64_t per_layer = (di * config_.d_state + (config_.d_conv - 1) * conv_dim) * 4;
  int64_t layers = 0;
  for (const Layer& l : layers_) layers += l.kind == 'M';
  return layers * per_layer;
}

int64_t HybridModel::KvBytesPerToken() const {
  int64_t layers = 0;
  for (const Layer& l : layers_) layers += l.kind == 'A';
  return layers * 2 * config_.n_kv_heads * config_.head_dim * 4;
}

Result<std::vector<float>> HybridModel::Prefill(SequenceState& s, std::span<const Token> tokens,
                                                ScanKernel kernel, std::span<const int64_t> capture,
                                                std::vector<Checkpoint>* captured) const {
  if (tokens.empty()) return Status::InvalidArgument("prefill: no token");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab) {
      return Status::InvalidArgument("prefill: token " + std::to_string(tokens[i]) + " at index " +
                                     std::to_string(i) + " is outside the vocabulary");
    }
  }
  const int64_t start = s.tokens, end = s.tokens + static_cast<int64_t>(tokens.size());
  for (size_t i = 0; i < capture.size(); ++i) {
    if (capture[i] <= start || capture[i] > end || (i > 0 && capture[i] <= capture[i - 1])) {
      return Status::InvalidArgument("prefill: capture position " + std::to_string(capture[i]) +
                                     " must be ascending in (" + std::to_string(start) + ", " +
                                     std::to_string(end) + "]");
    }
  }
  if (!capture.empty() && captured == nullptr) {
    return Status::InvalidArgument("prefill: capture positions without an output");
  }
  if (captured) {
    for (int64_t p : capture) captured->push_back({p, std::vector<RecurrentState>(layers_.size())});
  }
  const int64_t d = config_.d_model;
  std::vector<Vec> x;
  for (Token t : tokens) {
    x.emplace_back(embedding_.begin() + t * d, embedding_.begin() + (t + 1) * d);
  }
  for (size_t li = 0; li < layers_.size(); ++li) {
    Block(layers_[li], li, s, x, start, kernel, capture, captured);
  }
  s.tokens = end;
  const Vec last = RmsNorm(x.back().data(), final_norm_);
  return MatVec(embedding_, config_.vocab, d, last.data());  // tied LM head
}

void HybridModel::Block(const Layer& l, size_t li, SequenceState& s, std::vector<Vec>& x,
                        int64_t start, ScanKernel kernel, std::span<const int64_t> capture,
                        std::vector<Checkpoint>* captured) const {
  std::vector<Vec> h;
  for (const Vec& v : x) h.push_back(RmsNorm(v.data(), l.norm1));
  if (l.kind == 'A') {
    Attention(l, li, s, h, start);
  } else {
    Mamba(l, li, s, h, start, kernel, capture, captured);
  }
  const int64_t d = config_.d_model, f = config_.d_ff;
  for (size_t t = 0; t < x.size(); ++t) {
    for (int64_t i = 0; i < d; ++i) x[t][static_cast<size_t>(i)] += h[t][static_cast<size_t>(i)];
    const Vec n = RmsNorm(x[t].data(), l.norm2);
    const Vec gate = MatVec(l.w_gate, f, d, n.data());
    Vec up = MatVec(l.w_up, f, d, n.data());
    for (int64_t i = 0; i < f; ++i)
      up[static_cast<size_t>(i)] *= Silu(gate[static_cast<size_t>(i)]);
    const Vec down = MatVec(l.w_down, d, f, up.data());
    for (int64_t i = 0; i < d; ++i) x[t][static_cast<size_t>(i)] += down[static_cast<size_t>(i)];
  }
}

void HybridModel::Attention(const Layer& l, size_t li, SequenceState& s, std::vector<Vec>& h,
                            int64_t start) const {
  const HybridConfig& c = config_;
  const int64_t d = c.d_model, hd = c.head_dim, kvd = c.n_kv_heads * hd;
  auto rope = [&](float* v, int64_t heads, int64_t pos) {
    for (int64_t head = 0; head < heads; ++head) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double angle =
            static_cast<double>(pos) *
            std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
        const float cs = static_cast<float>(std::cos(angle)),
                    sn = static_cast<float>(std::sin(angle));
        float* p = v + head * hd + 2 * i;
        const float a = p[0], b = p[1];
        p[0] = a * cs - b * sn;
        p[1] = a * sn + b * cs;
      }
    }
  };
  std::vector<Vec> queries;
  for (size_t t = 0; t < h.size(); ++t) {
    const int64_t pos = start + static_cast<int64_t>(t);
    Vec q = MatVec(l.wq, c.n_heads * hd, d, h[t].data());
    Vec k = MatVec(l.wk, kvd, d, h[t].data());
    const Vec v = MatVec(l.wv, kvd, d, h[t].data());
    rope(q.data(), c.n_heads, pos);
    rope(k.data(), c.n_kv_heads, pos);
    s.keys[li].insert(s.keys[li].end(), k.begin(), k.end());
    s.values[li].insert(s.values[li].end(), v.begin(), v.end());
    queries.push_back(std::move(q));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t group = c.n_heads / c.n_kv_heads;
  for (size_t t = 0; t < h.size(); ++t) {
    const int64_t keys = start + static_cast<int64_t>(t) + 1;  // causal: up to itself
    Vec o(static_cast<size_t>(c.n_heads * hd), 0.0f);
    for (int64_t head = 0; head < c.n_heads; ++head) {
      const int64_t kvh = head / group;
      const float* q = queries[t].data() + head * hd;
      Vec score(static_cast<size_t>(keys));
      float mx = -INFINITY;
      for (int64_t j = 0; j < keys; ++j) {
        const float* k = s.keys[li].data() + j * kvd + kvh * hd;
        float acc = 0;
        for (int64_t i = 0; i < hd; ++i) acc += q[i] * k[i];
        score[static_cast<size_t>(j)] = acc * scale;
        mx = std::max(mx, score[static_cast<size_t>(j)]);
      }
      float sum = 0;
      for (float& v : score) sum += (v = std::exp(v - mx));
      for (int64_t j = 0; j < keys; ++j) {
        const float w = score[static_cast<size_t>(j)] / sum;
        const float* v = s.values[li].data() + j * kvd + kvh * hd;
        for (int64_t i = 0; i < hd; ++i) o[static_cast<size_t>(head * hd + i)] += w * v[i];
      }
    }
    h[t] = MatVec(l.wo, d, c.n_heads * hd, o.data());
  }
}

void HybridModel::Mamba(const Layer& l, size_t li, SequenceState& s, std::vector<Vec>& h,
                        int64_t start, ScanKernel kernel, std::span<const int64_t> capture,
                        std::vector<Checkpoint>* captured) const {
  const HybridConfig& c = config_;
  const int64_t d = c.d_model, H = c.ssm_heads, P = c.ssm_head_dim, N = c.d_state;
  const int64_t G = c.n_groups, K = c.d_conv, di = H * P, gn = G * N, conv_dim = di + 2 * gn;
  const int64_t L = static_cast<int64_t>(h.size());
  RecurrentState& rs = s.recurrent[li];
  // Projections and the causal conv over [initial conv state; new inputs].
  std::vector<Vec> z(h.size()), xs(h.size()), bs(h.size()), cs(h.size()), dts(h.size());
  std::vector<float> hist(rs.conv);  // rows of conv_dim: K - 1 initial, then one per token
  for (int64_t t = 0; t < L; ++t) {
    const Vec proj = MatVec(l.in_proj, 2 * di + 2 * gn + H, d, h[static_cast<size_t>(t)].data());
    z[static_cast<size_t>(t)].assign(proj.begin(), proj.begin() + di);
    hist.insert(hist.end(), proj.begin() + di, proj.begin() + di + conv_dim);
    Vec& dt = dts[static_cast<size_t>(t)];
    for (int64_t hh = 0; hh < H; ++hh) {
      dt.push_back(Softplus(proj[static_cast<size_t>(di + conv_dim + hh)] +
                            l.dt_bias[static_cast<size_t>(hh)]));
    }
    Vec conv(static_cast<size_t>(conv_dim));
    for (int64_t ch = 0; ch < conv_dim; ++ch) {
      float acc = l.conv_b[static_cast<size_t>(ch)];
      for (int64_t k = 0; k < K; ++k) {
        acc += l.conv_w[static_cast<size_t>(ch * K + k)] *
               hist[static_cast<size_t>((t + k) * conv_dim + ch)];
      }
      conv[static_cast<size_t>(ch)] = Silu(acc);
    }
    xs[static_cast<size_t>(t)].assign(conv.begin(), conv.begin() + di);
    bs[static_cast<size_t>(t)].assign(conv.begin() + di, conv.begin() + di + gn);
    cs[static_cast<size_t>(t)].assign(conv.begin() + di + gn, conv.end());
  }
  auto conv_state_at = [&](int64_t pos) {  // the K - 1 conv inputs before absolute `pos`
    const size_t from = static_cast<size_t>((pos - start) * conv_dim);
    return std::vector<float>(hist.begin() + static_cast<long>(from),
                              hist.begin() + static_cast<long>(from + (K - 1) * conv_dim));
  };
  std::vector<float> S = rs.ssm;  // [H][P][N]
  std::vector<Vec> y(h.size(), Vec(static_cast<size_t>(di)));
  // One recurrent step of token t on state `st`; writes y[t] if `emit`.
  auto step = [&](std::vector<float>& st, int64_t t, bool emit) {
    const size_t ut = static_cast<size_t>(t);
    for (int64_t hh = 0; hh < H; ++hh) {
      const int64_t g = hh / (H / G);
      const float dt = dts[ut][static_cast<size_t>(hh)];
      const float da = std::exp(dt * -std::exp(l.a_log[static_cast<size_t>(hh)]));
      for (int64_t p = 0; p < P; ++p) {
        const float xv = xs[ut][static_cast<size_t>(hh * P + p)];
        float acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          float& sv = st[static_cast<size_t>((hh * P + p) * N + n)];
          sv = da * sv + dt * xv * bs[ut][static_cast<size_t>(g * N + n)];
          acc += cs[ut][static_cast<size_t>(g * N + n)] * sv;
        }
        if (emit)
          y[ut][static_cast<size_t>(hh * P + p)] = acc + l.d_skip[static_cast<size_t>(hh)] * xv;
      }
    }
  };
  // The checkpoints of this call are the last capture.size() entries of *captured.
  auto record = [&](int64_t pos, const std::vector<float>& st) {
    for (size_t ci = 0; ci < capture.size(); ++ci) {
      if (capture[ci] == pos) {
        (*captured)[captured->size() - capture.size() + ci].layers[li] =
            RecurrentState{st, conv_state_at(pos)};
      }
    }
  };
  if (kernel == ScanKernel::kSequential) {
    for (int64_t t = 0; t < L; ++t) {
      step(S, t, true);
      record(start + t + 1, S);
    }
  } else {
    // Segments between chunk boundaries at absolute multiples of chunk_size.
    const int64_t Q = c.chunk_size;
    for (int64_t seg = start; seg < start + L;) {
      const int64_t seg_end = std::min(start + L, (seg / Q + 1) * Q);
      const int64_t t0 = seg - start, q = seg_end - seg;
      // Captures strictly inside the segment: roll forward from the segment's initial state.
      for (size_t ci = 0; ci < capture.size(); ++ci) {
        if (capture[ci] > seg && capture[ci] < seg_end) {
          std::vector<float> rolled = S;
          for (int64_t t = t0; t < capture[ci] - start; ++t) step(rolled, t, false);
          record(capture[ci], rolled);
        }
      }
      for (int64_t hh = 0; hh < H; ++hh) {
        const int64_t g = hh / (H / G);
        const float a = -std::exp(l.a_log[static_cast<size_t>(hh)]);
        std::vector<float> cum(static_cast<size_t>(q));  // cumulative log decay in the chunk
        float run = 0;
        for (int64_t i = 0; i < q; ++i)
          cum[static_cast<size_t>(i)] = run +=
              dts[static_cast<size_t>(t0 + i)][static_cast<size_t>(hh)] * a;
        for (int64_t i = 0; i < q; ++i) {
          const size_t ui = static_cast<size_t>(t0 + i);
          // C_i . B_j for j <= i, weighted by decay and dt_j.
          std::vector<float> w(static_cast<size_t>(i + 1));
          for (int64_t j = 0; j <= i; ++j) {
            const size_t uj = static_cast<size_t>(t0 + j);
            float cb = 0;
            for (int64_t n = 0; n < N; ++n)
              cb += cs[ui][static_cast<size_t>(g * N + n)] * bs[uj][static_cast<size_t>(g * N + n)];
            w[static_cast<size_t>(j)] =
                std::exp(cum[static_cast<size_t>(i)] - cum[static_cast<size_t>(j)]) *
                dts[uj][static_cast<size_t>(hh)] * cb;
          }
          const float decay0 = std::exp(cum[static_cast<size_t>(i)]);
          for (int64_t p = 0; p < P; ++p) {
            float acc = 0;
            for (int64_t n = 0; n < N; ++n)
              acc += cs[ui][static_cast<size_t>(g * N + n)] *
                     S[static_cast<size_t>((hh * P + p) * N + n)];
            acc *= decay0;
            for (int64_t j = 0; j <= i; ++j)
              acc += w[static_cast<size_t>(j)] *
                     xs[static_cast<size_t>(t0 + j)][static_cast<size_t>(hh * P + p)];
            y[ui][static_cast<size_t>(hh * P + p)] =
                acc + l.d_skip[static_cast<size_t>(hh)] * xs[ui][static_cast<size_t>(hh * P + p)];
          }
        }
        // State at the segment's end.
        const float total = cum[static_cast<size_t>(q - 1)];
        for (int64_t p = 0; p < P; ++p) {
          for (int64_t n = 0; n < N; ++n) {
            float acc = std::exp(total) * S[static_cast<size_t>((hh * P + p) * N + n)];
            for (int64_t j = 0; j < q; ++j) {
              const size_t uj = static_cast<size_t>(t0 + j);
              acc += std::exp(total - cum[static_cast<size_t>(j)]) *
                     dts[uj][static_cast<size_t>(hh)] * xs[uj][static_cast<size_t>(hh * P + p)] *
                     bs[uj][static_cast<size_t>(g * N + n)];
            }
            S[static_cast<size_t>((hh * P + p) * N + n)] = acc;
          }
        }
      }
      record(seg_end, S);
      seg = seg_end;
    }
  }
  rs.ssm = S;
  rs.conv = conv_state_at(start + L);
  for (int64_t t = 0; t < L; ++t) {
    const size_t ut = static_cast<size_t>(t);
    Vec gated(static_cast<size_t>(di));
    for (int64_t i = 0; i < di; ++i)
      gated[static_cast<size_t>(i)] =
          y[ut][static_cast<size_t>(i)] * Silu(z[ut][static_cast<size_t>(i)]);
    const Vec n = RmsNorm(gated.data(), l.gate_norm);
    h[ut] = MatVec(l.out_proj, d, di, n.data());
  }
}

SequenceState HybridModel::Resume(const SequenceState& full, const Checkpoint& cp) const {
  SequenceState s = NewSequence();
  s.tokens = cp.position;
  const int64_t kvd = config_.n_kv_heads * config_.head_dim;
  for (size_t li = 0; li < layers_.size(); ++li) {
    if (layers_[li].kind == 'A') {
      const size_t n = static_cast<size_t>(cp.position * kvd);
      s.keys[li].assign(full.keys[li].begin(), full.keys[li].begin() + static_cast<long>(n));
      s.values[li].assign(full.values[li].begin(), full.values[li].begin() + static_cast<long>(n));
    } else {
      s.recurrent[li] = cp.layers[li];
    }
  }
  return s;
}

std::string SerializeCheckpoint(const Checkpoint& c) {
  std::string out;
  auto put = [&](const void* p, size_t n) {
    if (n > 0) out.append(static_cast<const char*>(p), n);  // empty vectors have no data()
  };
  const uint64_t pos = static_cast<uint64_t>(c.position), layers = c.layers.size();
  put(&pos, 8);
  put(&layers, 8);
  for (const RecurrentState& r : c.layers) {
    for (const std::vector<float>* v : {&r.ssm, &r.conv}) {
      const uint64_t n = v->size();
      put(&n, 8);
      put(v->data(), n * sizeof(float));
    }
  }
  return out;
}

Result<Checkpoint> DeserializeCheckpoint(std::string_view bytes) {
  size_t at = 0;
  auto get = [&](void* p, size_t n) {
    if (at + n > bytes.size()) return false;
    if (n > 0) std::memcpy(p, bytes.data() + at, n);  // p is null for an empty vector
    at += n;
    return true;
  };
  uint64_t pos = 0, layers = 0;
  if (!get(&pos, 8) || !get(&layers, 8) || layers > (1u << 20)) {
    return Status::ParseError("checkpoint: truncated header");
  }
  Checkpoint c;
  c.position = static_cast<int64_t>(pos);
  c.layers.resize(static_cast<size_t>(layers));
  for (RecurrentState& r : c.layers) {
    for (std::vector<float>* v : {&r.ssm, &r.conv}) {
      uint64_t n = 0;
      if (!get(&n, 8) || n > (bytes.size() - at) / sizeof(float)) {
        return Status::ParseError("checkpoint: truncated at byte " + std::to_string(at));
      }
      v->resize(static_cast<size_t>(n));
      get(v->data(), static_cast<size_t>(n) * sizeof(float));
    }
  }
  if (at != bytes.size()) return Status::ParseError("checkpoint: trailing bytes");
  return c;
}

}  // namespace marconi::engine
