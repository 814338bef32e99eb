// The Mamba2 mixer of the reference model: projections, causal depthwise conv1d with its conv
// state, the selective state space recurrence (sequential) or the SSD chunked scan, gated
// RMSNorm and the output projection.
#include <cmath>

#include "engine/hybrid_model.h"
#include "engine/ops.h"

namespace marconi::engine {

namespace {

using Vec = std::vector<float>;

// The SSD chunked scan of one layer over rows [0, L) (absolute positions start + row), in chunks
// aligned to multiples of chunk_size. Per chunk and group, CB = C B^T; per head, with the
// cumulative log decay cum_i = sum_{j<=i} dt_j A:
//   y_i = sum_{j<=i} exp(cum_i - cum_j) dt_j (C_i . B_j) x_j + exp(cum_i) C_i S + D x_i,
//   S' = exp(cum_last) S + sum_j exp(cum_last - cum_j) dt_j x_j B_j^T.
// before(t0, q) runs with S at the chunk's start, after(t0, q) with S at its end.
template <typename Before, typename After>
void ChunkedScan(const HybridConfig& c, MatmulKernel mm, const std::vector<float>& a_log,
                 const std::vector<float>& d_skip, int64_t start, int64_t L, const Vec& xbc,
                 const Vec& dts, Vec& S, Vec& y, Before&& before, After&& after) {
  const int64_t H = c.ssm_heads, P = c.ssm_head_dim, N = c.d_state, G = c.n_groups;
  const int64_t di = H * P, gn = G * N, conv_dim = di + 2 * gn, Q = c.chunk_size;
  Vec cb, w, cs, xw_t, ds, cum;
  ops::ForEachChunk(start, L, Q, [&](int64_t t0, int64_t q) {
    before(t0, q);
    const float* x0 = xbc.data() + t0 * conv_dim;  // row t0 of [x | B | C]
    cb.resize(static_cast<size_t>(q * q));
    w.resize(static_cast<size_t>(q * q));
    cs.resize(static_cast<size_t>(q * P));
    xw_t.resize(static_cast<size_t>(P * q));
    ds.resize(static_cast<size_t>(P * N));
    cum.resize(static_cast<size_t>(q));
    for (int64_t g = 0; g < G; ++g) {
      const float* b0 = x0 + di + g * N;
      const float* c0 = x0 + di + gn + g * N;
      Gemm(mm, true, q, q, N, c0, conv_dim, b0, conv_dim, 0, cb.data(), q);
      for (int64_t hh = g * (H / G); hh < (g + 1) * (H / G); ++hh) {
        const float a = -std::exp(a_log[static_cast<size_t>(hh)]);
        auto dt = [&](int64_t i) { return dts[static_cast<size_t>((t0 + i) * H + hh)]; };
        float run = 0;
        for (int64_t i = 0; i < q; ++i) cum[static_cast<size_t>(i)] = run += dt(i) * a;
        for (int64_t i = 0; i < q; ++i) {
          for (int64_t j = 0; j < q; ++j) {
            const size_t ij = static_cast<size_t>(i * q + j);
            w[ij] = j > i ? 0.0f
                          : std::exp(cum[static_cast<size_t>(i)] - cum[static_cast<size_t>(j)]) *
                                dt(j) * cb[ij];
          }
        }
        float* yh = y.data() + t0 * di + hh * P;
        const float* xh = x0 + hh * P;
        float* sh = S.data() + hh * P * N;
        Gemm(mm, false, q, P, q, w.data(), q, xh, conv_dim, 0, yh, di);
        Gemm(mm, true, q, P, N, c0, conv_dim, sh, N, 0, cs.data(), P);
        const float skip = d_skip[static_cast<size_t>(hh)];
        for (int64_t i = 0; i < q; ++i) {
          const float decay = std::exp(cum[static_cast<size_t>(i)]);
          for (int64_t pp = 0; pp < P; ++pp) {
            yh[i * di + pp] +=
                decay * cs[static_cast<size_t>(i * P + pp)] + skip * xh[i * conv_dim + pp];
          }
        }
        const float total = cum[static_cast<size_t>(q - 1)];
        for (int64_t j = 0; j < q; ++j) {
          const float f = std::exp(total - cum[static_cast<size_t>(j)]) * dt(j);
          for (int64_t pp = 0; pp < P; ++pp) {
            xw_t[static_cast<size_t>(pp * q + j)] = f * xh[j * conv_dim + pp];
          }
        }
        Gemm(mm, false, P, N, q, xw_t.data(), q, b0, conv_dim, 0, ds.data(), N);
        const float decay_all = std::exp(total);
        for (int64_t i = 0; i < P * N; ++i) sh[i] = decay_all * sh[i] + ds[static_cast<size_t>(i)];
      }
    }
    after(t0, q);
  });
}

}  // namespace

void HybridModel::Mamba(const Layer& l, size_t li, const Pass& p, Vec& h) const {
  const HybridConfig& c = config_;
  const int64_t d = c.d_model, H = c.ssm_heads, P = c.ssm_head_dim, N = c.d_state;
  const int64_t G = c.n_groups, K = c.d_conv, di = H * P, gn = G * N, conv_dim = di + 2 * gn;
  const int64_t proj_dim = 2 * di + 2 * gn + H, L = p.rows, start = p.start;
  RecurrentState& rs = p.s.recurrent[li];
  // Projections: [z | x B C (conv inputs) | dt] per row.
  const Vec proj = Linear(p, h, l.in_proj, proj_dim, d);
  Vec hist(rs.conv);  // rows of conv_dim: K - 1 from the conv state, then one per token
  hist.reserve(static_cast<size_t>((K - 1 + L) * conv_dim));
  for (int64_t t = 0; t < L; ++t) {
    const float* row = proj.data() + t * proj_dim + di;
    hist.insert(hist.end(), row, row + conv_dim);
  }
  // Causal conv + SiLU: xbc rows are [x (di) | B (gn) | C (gn)].
  Vec xbc(static_cast<size_t>(L * conv_dim)), dts(static_cast<size_t>(L * H));
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t ch = 0; ch < conv_dim; ++ch) {
      float acc = l.conv_b[static_cast<size_t>(ch)];
      for (int64_t k = 0; k < K; ++k) {
        acc += l.conv_w[static_cast<size_t>(ch * K + k)] *
               hist[static_cast<size_t>((t + k) * conv_dim + ch)];
      }
      xbc[static_cast<size_t>(t * conv_dim + ch)] = ops::Silu(acc);
    }
    for (int64_t hh = 0; hh < H; ++hh) {
      dts[static_cast<size_t>(t * H + hh)] = ops::Softplus(
          proj[static_cast<size_t>(t * proj_dim + di + conv_dim + hh)] + l.dt_bias[hh]);
    }
  }
  auto X = [&](int64_t t, int64_t i) { return xbc[static_cast<size_t>(t * conv_dim + i)]; };
  auto B = [&](int64_t t, int64_t i) { return xbc[static_cast<size_t>(t * conv_dim + di + i)]; };
  auto C = [&](int64_t t, int64_t i) {
    return xbc[static_cast<size_t>(t * conv_dim + di + gn + i)];
  };
  auto dt_of = [&](int64_t t, int64_t hh) { return dts[static_cast<size_t>(t * H + hh)]; };
  auto conv_state_at = [&](int64_t pos) {  // the K - 1 conv inputs before absolute `pos`
    const auto from = hist.begin() + (pos - start) * conv_dim;
    return Vec(from, from + (K - 1) * conv_dim);
  };
  Vec S = rs.ssm;  // [H][P][N]
  Vec y(static_cast<size_t>(L * di));
  // One recurrent step of token t on state `st`; writes y[t] if `emit`.
  auto step = [&](Vec& st, int64_t t, bool emit) {
    for (int64_t hh = 0; hh < H; ++hh) {
      const int64_t g = hh / (H / G);
      const float dt = dt_of(t, hh);
      const float da = std::exp(dt * -std::exp(l.a_log[static_cast<size_t>(hh)]));
      for (int64_t pp = 0; pp < P; ++pp) {
        const float xv = X(t, hh * P + pp);
        float acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          float& sv = st[static_cast<size_t>((hh * P + pp) * N + n)];
          sv = da * sv + dt * xv * B(t, g * N + n);
          acc += C(t, g * N + n) * sv;
        }
        if (emit) y[static_cast<size_t>(t * di + hh * P + pp)] = acc + l.d_skip[hh] * xv;
      }
    }
  };
  // The checkpoints of this call are the last capture.size() entries of *captured.
  auto record = [&](int64_t pos, const Vec& st) {
    for (size_t ci = 0; ci < p.capture.size(); ++ci) {
      if (p.capture[ci] == pos) {
        (*p.captured)[p.captured->size() - p.capture.size() + ci].layers[li] =
            RecurrentState{st, conv_state_at(pos)};
      }
    }
  };
  if (p.kernels.scan == ScanKernel::kSequential) {
    for (int64_t t = 0; t < L; ++t) {
      step(S, t, true);
      record(start + t + 1, S);
    }
  } else {
    ChunkedScan(
        c, p.kernels.matmul, l.a_log, l.d_skip, start, L, xbc, dts, S, y,
        [&](int64_t t0, int64_t q) {
          // Captures strictly inside the chunk: roll forward from the chunk's initial state.
          for (int64_t pos : p.capture) {
            if (pos > start + t0 && pos < start + t0 + q) {
              Vec rolled = S;
              for (int64_t t = t0; t < pos - start; ++t) step(rolled, t, false);
              record(pos, rolled);
            }
          }
        },
        [&](int64_t t0, int64_t q) { record(start + t0 + q, S); });
  }
  rs.ssm = S;
  rs.conv = conv_state_at(start + L);
  // Gated RMSNorm and the output projection.
  Vec gated(static_cast<size_t>(L * di));
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t i = 0; i < di; ++i) {
      const size_t at = static_cast<size_t>(t * di + i);
      gated[at] = y[at] * ops::Silu(proj[static_cast<size_t>(t * proj_dim + i)]);
    }
  }
  h = Linear(p, ops::RmsNormRows(gated, l.gate_norm), l.out_proj, d, di);
}

}  // namespace marconi::engine
