#include "engine/hybrid_model.h"

#include <cmath>
#include <cstring>
#include <random>

#include "engine/ops.h"
#include "util/random.h"

namespace marconi::engine {
namespace {

using Vec = std::vector<float>;

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

Status HybridModel::CheckTokens(std::span<const Token> tokens, const std::string& what) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab) {
      return Status::InvalidArgument(what + " token " + std::to_string(tokens[i]) + " at index " +
                                     std::to_string(i) + " is outside the vocabulary of " +
                                     std::to_string(config_.vocab));
    }
  }
  return Status::Ok();
}

Result<std::vector<float>> HybridModel::Prefill(SequenceState& s, std::span<const Token> tokens,
                                                Kernels kernels, std::span<const int64_t> capture,
                                                std::vector<Checkpoint>* captured) const {
  if (tokens.empty()) return Status::InvalidArgument("prefill: no token");
  if (Status bad = CheckTokens(tokens, "prefill:"); !bad.ok()) return bad;
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
  const int64_t d = config_.d_model, rows = end - start;
  Vec x(static_cast<size_t>(rows * d));
  for (int64_t t = 0; t < rows; ++t) {
    const Token tok = tokens[static_cast<size_t>(t)];
    std::copy_n(embedding_.begin() + tok * d, d, x.begin() + t * d);
  }
  const Pass pass{s, start, rows, kernels, capture, captured};
  for (size_t li = 0; li < layers_.size(); ++li) Block(layers_[li], li, pass, x);
  s.tokens = end;
  Vec last(static_cast<size_t>(d)), logits(static_cast<size_t>(config_.vocab));
  ops::RmsNorm(x.data() + (rows - 1) * d, final_norm_, last.data());
  Gemm(kernels.matmul, true, 1, config_.vocab, d, last.data(), d, embedding_.data(), d, 0,
       logits.data(), config_.vocab);  // tied LM head
  return logits;
}

Vec HybridModel::Linear(const Pass& p, const Vec& in, const Vec& w, int64_t w_rows,
                        int64_t w_cols) const {
  Vec out(static_cast<size_t>(p.rows * w_rows));
  ops::ForEachChunk(p.start, p.rows, config_.chunk_size, [&](int64_t t0, int64_t q) {
    Gemm(p.kernels.matmul, true, q, w_rows, w_cols, in.data() + t0 * w_cols, w_cols, w.data(),
         w_cols, 0, out.data() + t0 * w_rows, w_rows);
  });
  return out;
}

void HybridModel::Block(const Layer& l, size_t li, const Pass& p, Vec& x) const {
  Vec h = ops::RmsNormRows(x, l.norm1);
  if (l.kind == 'A') {
    Attention(l, li, p, h);
  } else {
    Mamba(l, li, p, h);
  }
  const int64_t d = config_.d_model, f = config_.d_ff;
  for (size_t i = 0; i < x.size(); ++i) x[i] += h[i];
  const Vec n = ops::RmsNormRows(x, l.norm2);
  const Vec gate = Linear(p, n, l.w_gate, f, d);
  Vec up = Linear(p, n, l.w_up, f, d);
  for (size_t i = 0; i < up.size(); ++i) up[i] *= ops::Silu(gate[i]);
  const Vec down = Linear(p, up, l.w_down, d, f);
  for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
}

void HybridModel::Attention(const Layer& l, size_t li, const Pass& p, Vec& h) const {
  const HybridConfig& c = config_;
  const int64_t d = c.d_model, hd = c.head_dim, kvd = c.n_kv_heads * hd, qd = c.n_heads * hd;
  auto rope = [&](float* v, int64_t heads, int64_t pos) {
    for (int64_t head = 0; head < heads; ++head) {
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double angle =
            static_cast<double>(pos) *
            std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
        const float cs = static_cast<float>(std::cos(angle)),
                    sn = static_cast<float>(std::sin(angle));
        float* x = v + head * hd + 2 * i;
        const float a = x[0], b = x[1];
        x[0] = a * cs - b * sn;
        x[1] = a * sn + b * cs;
      }
    }
  };
  Vec q = Linear(p, h, l.wq, qd, d);
  Vec k = Linear(p, h, l.wk, kvd, d);
  const Vec v = Linear(p, h, l.wv, kvd, d);
  for (int64_t t = 0; t < p.rows; ++t) {
    rope(q.data() + t * qd, c.n_heads, p.start + t);
    rope(k.data() + t * kvd, c.n_kv_heads, p.start + t);
  }
  Vec& keys = p.s.keys[li];
  Vec& values = p.s.values[li];
  keys.insert(keys.end(), k.begin(), k.end());
  values.insert(values.end(), v.begin(), v.end());
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t group = c.n_heads / c.n_kv_heads;
  Vec o(static_cast<size_t>(p.rows * qd));
  Vec score;
  ops::ForEachChunk(p.start, p.rows, c.chunk_size, [&](int64_t t0, int64_t rows) {
    const int64_t n_keys = p.start + t0 + rows;  // causal: the block's last row sees them all
    score.resize(static_cast<size_t>(rows * n_keys));
    for (int64_t head = 0; head < c.n_heads; ++head) {
      const int64_t kvh = head / group;
      Gemm(p.kernels.matmul, true, rows, n_keys, hd, q.data() + t0 * qd + head * hd, qd,
           keys.data() + kvh * hd, kvd, 0, score.data(), n_keys);
      for (int64_t r = 0; r < rows; ++r) {  // softmax over keys [0, position]; later ones get 0
        float* row = score.data() + r * n_keys;
        const int64_t seen = p.start + t0 + r + 1;
        float mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < seen; ++j) mx = std::max(mx, row[j] *= scale);
        for (int64_t j = 0; j < seen; ++j) sum += (row[j] = std::exp(row[j] - mx));
        for (int64_t j = 0; j < seen; ++j) row[j] /= sum;
        std::fill(row + seen, row + n_keys, 0.0f);
      }
      Gemm(p.kernels.matmul, false, rows, hd, n_keys, score.data(), n_keys,
           values.data() + kvh * hd, kvd, 0, o.data() + t0 * qd + head * hd, qd);
    }
  });
  h = Linear(p, o, l.wo, d, qd);
}

Result<SequenceState> HybridModel::Resume(const SequenceState& full, const Checkpoint& cp) const {
  SequenceState s = NewSequence();
  const int64_t kv_width = config_.n_kv_heads * config_.head_dim;
  if (cp.position < 1 || cp.layers.size() != layers_.size()) {
    return Status::InvalidArgument("resume: checkpoint at " + std::to_string(cp.position) +
                                   " with " + std::to_string(cp.layers.size()) +
                                   " layers does not fit this model's " +
                                   std::to_string(layers_.size()));
  }
  for (size_t li = 0; li < layers_.size(); ++li) {
    const bool ok = layers_[li].kind == 'A'
                        ? full.keys.size() == layers_.size() &&
                              full.keys[li].size() >= static_cast<size_t>(cp.position * kv_width) &&
                              full.values[li].size() == full.keys[li].size()
                        : cp.layers[li].ssm.size() == s.recurrent[li].ssm.size() &&
                              cp.layers[li].conv.size() == s.recurrent[li].conv.size();
    if (!ok) {
      return Status::InvalidArgument("resume: layer " + std::to_string(li) +
                                     (layers_[li].kind == 'A'
                                          ? " holds KV for fewer than the checkpoint's " +
                                                std::to_string(cp.position) + " tokens"
                                          : " has a recurrent state of the wrong size"));
    }
  }
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

std::string HybridModel::SerializeKv(const SequenceState& state, int64_t begin, int64_t end) const {
  const size_t kvd = static_cast<size_t>(config_.n_kv_heads * config_.head_dim);
  uint64_t header[3] = {static_cast<uint64_t>(begin), static_cast<uint64_t>(end), 0};
  for (const Layer& l : layers_) header[2] += l.kind == 'A';
  std::string out(reinterpret_cast<const char*>(header), sizeof header);
  const size_t from = static_cast<size_t>(begin) * kvd, n = static_cast<size_t>(end - begin) * kvd;
  for (size_t li = 0; li < layers_.size(); ++li) {
    if (layers_[li].kind != 'A') continue;
    for (const Vec* v : {&state.keys[li], &state.values[li]}) {
      out.append(reinterpret_cast<const char*>(v->data() + from), n * sizeof(float));
    }
  }
  return out;
}

Status HybridModel::AppendKv(std::string_view bytes, SequenceState& state) const {
  const size_t kvd = static_cast<size_t>(config_.n_kv_heads * config_.head_dim);
  uint64_t header[3];
  if (bytes.size() < sizeof header) return Status::ParseError("KV range: truncated header");
  std::memcpy(header, bytes.data(), sizeof header);
  uint64_t attention = 0;
  for (const Layer& l : layers_) attention += l.kind == 'A';
  const uint64_t begin = header[0], end = header[1];
  if (header[2] != attention || end <= begin || end - begin > bytes.size()) {
    return Status::ParseError("KV range: header does not fit this model");
  }
  const size_t n = static_cast<size_t>(end - begin) * kvd;
  if (bytes.size() != sizeof header + 2 * attention * n * sizeof(float)) {
    return Status::ParseError("KV range: " + std::to_string(bytes.size()) + " bytes for tokens [" +
                              std::to_string(begin) + ", " + std::to_string(end) + ")");
  }
  if (state.keys.size() != layers_.size() || state.values.size() != layers_.size()) {
    return Status::InvalidArgument("KV range: the state is not one of this model's");
  }
  for (size_t li = 0; li < layers_.size(); ++li) {
    if (layers_[li].kind == 'A' && state.keys[li].size() != begin * kvd) {
      return Status::InvalidArgument("KV range starts at token " + std::to_string(begin) +
                                     " but the state holds KV for " +
                                     std::to_string(state.keys[li].size() / kvd));
    }
  }
  const char* at = bytes.data() + sizeof header;
  for (size_t li = 0; li < layers_.size(); ++li) {
    if (layers_[li].kind != 'A') continue;
    for (Vec* v : {&state.keys[li], &state.values[li]}) {
      const size_t old = v->size();
      v->resize(old + n);
      std::memcpy(v->data() + old, at, n * sizeof(float));  // `at` may be unaligned
      at += n * sizeof(float);
    }
  }
  return Status::Ok();
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
