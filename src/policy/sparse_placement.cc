#include "marconi/sparse_placement.h"

#include <algorithm>
#include <cmath>
#include <deque>

namespace marconi {
namespace {

double D(int64_t v) { return static_cast<double>(v); }

// A line y = slope * x + intercept, for candidate last checkpoint s.
struct Line {
  double slope, intercept;
  int64_t s;
  double At(double x) const { return slope * x + intercept; }
};

// True when `b` can be dropped from between `a` and `c` (slopes decreasing a > b > c): `b` is
// never strictly below both for increasing x.
bool Useless(const Line& a, const Line& b, const Line& c) {
  // Intersection x(a, c) <= x(a, b)  <=>  (c.i - a.i)(a.s - b.s) <= (b.i - a.i)(a.s - c.s)
  return (c.intercept - a.intercept) * (a.slope - b.slope) <=
         (b.intercept - a.intercept) * (a.slope - c.slope);
}

}  // namespace

RecomputeCost RecomputeCostOf(const ModelSpec& model, int64_t chunk) {
  return RecomputeCost{model.linear_flops_per_token() * D(chunk),
                       model.attention_pair_flops() / 2 * D(chunk) * D(chunk)};
}

double PlacementCost(std::span<const double> p, std::span<const int64_t> positions,
                     const RecomputeCost& cost) {
  double total = 0;
  size_t k = 0;
  int64_t prev = 0;
  for (int64_t d = 0; d < static_cast<int64_t>(p.size()); ++d) {
    while (k < positions.size() && positions[k] <= d) prev = positions[k++];
    total += p[static_cast<size_t>(d)] *
             (cost.linear * D(d - prev) + cost.quadratic * (D(d) * D(d) - D(prev) * D(prev)));
  }
  return total;
}

Result<Placement> SolvePlacement(std::span<const double> p, int64_t budget,
                                 const RecomputeCost& cost) {
  if (p.empty()) return Status::InvalidArgument("placement: empty depth distribution");
  for (size_t d = 0; d < p.size(); ++d) {
    if (!std::isfinite(p[d]) || p[d] < 0) {
      return Status::InvalidArgument("placement: weight p[" + std::to_string(d) +
                                     "] must be finite and >= 0");
    }
  }
  if (budget < 0) return Status::InvalidArgument("placement: budget must be >= 0");
  if (!(cost.linear >= 0) || !(cost.quadratic >= 0) || !(cost.linear + cost.quadratic > 0) ||
      !std::isfinite(cost.linear + cost.quadratic)) {
    return Status::InvalidArgument("placement: cost coefficients must be >= 0, not both 0");
  }
  const int64_t n = static_cast<int64_t>(p.size()) - 1;
  const int64_t m_max = std::min(budget, n);
  const size_t width = static_cast<size_t>(n + 1);
  // Prefix sums: P(j) = sum p_d, W(j) = sum p_d (a d + b d^2), for d <= j.
  std::vector<double> prob(width), weighted(width);
  auto g = [&](int64_t s) { return cost.linear * D(s) + cost.quadratic * D(s) * D(s); };
  for (int64_t d = 0; d <= n; ++d) {
    const size_t i = static_cast<size_t>(d);
    prob[i] = (d > 0 ? prob[i - 1] : 0) + p[i];
    weighted[i] = (d > 0 ? weighted[i - 1] : 0) + p[i] * g(d);
  }
  // dp over j = 0..N for the previous and current budget; choice[m][j] = last checkpoint of the
  // optimum with at most m checkpoints over depths 0..j, or 0 when m - 1 suffice.
  std::vector<double> prev(weighted), cur(width);  // dp[0][j] = W(j): no checkpoint
  std::vector<int32_t> choice(static_cast<size_t>(m_max) * width, 0);
  std::vector<Line> hull(width);
  for (int64_t m = 1; m <= m_max; ++m) {
    int32_t* arg = choice.data() + static_cast<size_t>(m - 1) * width;
    size_t head = 0, tail = 0;  // hull[head, tail): the deque
    cur[0] = prev[0];
    for (int64_t j = 1; j <= n; ++j) {
      const size_t i = static_cast<size_t>(j);
      // Candidate last checkpoint s = j: cost of depths >= s measured from s.
      const Line line{-g(j), prev[i - 1] - weighted[i - 1] + g(j) * prob[i - 1], j};
      while (tail - head >= 2 && Useless(hull[tail - 2], hull[tail - 1], line)) --tail;
      hull[tail++] = line;
      const double x = prob[i];
      while (tail - head >= 2 && hull[head + 1].At(x) <= hull[head].At(x)) ++head;
      const double with_last = weighted[i] + hull[head].At(x);
      if (with_last < prev[i]) {
        cur[i] = with_last;
        arg[i] = static_cast<int32_t>(hull[head].s);
      } else {
        cur[i] = prev[i];
        arg[i] = 0;
      }
    }
    std::swap(prev, cur);
  }
  Placement out;
  out.expected_cost = prev[static_cast<size_t>(n)];
  int64_t j = n;
  for (int64_t m = m_max; m >= 1 && j > 0; --m) {
    const int32_t s = choice[static_cast<size_t>(m - 1) * width + static_cast<size_t>(j)];
    if (s == 0) continue;  // m - 1 checkpoints were as good
    out.positions.push_back(s);
    j = s - 1;
  }
  std::reverse(out.positions.begin(), out.positions.end());
  return out;
}

std::vector<int64_t> BlockPlacement(int64_t n, int64_t block) {
  std::vector<int64_t> out;
  for (int64_t s = block; block > 0 && s <= n; s += block) out.push_back(s);
  return out;
}

namespace {

std::vector<int64_t> Dedup(std::vector<int64_t> v, int64_t n) {
  std::vector<int64_t> out;
  for (int64_t s : v) {
    s = std::clamp<int64_t>(s, 1, n);
    if (out.empty() || s > out.back()) out.push_back(s);
  }
  return out;
}

}  // namespace

std::vector<int64_t> BalancedPlacement(int64_t n, int64_t budget) {
  std::vector<int64_t> v;
  for (int64_t k = 1; k <= budget && n > 0; ++k) {
    v.push_back(std::llround(D(k) * D(n + 1) / D(budget + 1)));
  }
  return Dedup(v, n);
}

std::vector<int64_t> SqrtPlacement(int64_t n, int64_t budget) {
  std::vector<int64_t> v;
  for (int64_t k = 1; k <= budget && n > 0; ++k) {
    v.push_back(std::llround(D(n + 1) * std::sqrt(D(k) / D(budget + 1))));
  }
  return Dedup(v, n);
}

std::vector<int64_t> DyadicPlacement(int64_t n, int64_t budget) {
  std::vector<int64_t> v;
  for (int64_t s = 1; s <= n; s *= 2) v.push_back(s);
  if (static_cast<int64_t>(v.size()) > budget) {
    v.erase(v.begin(), v.end() - static_cast<long>(std::max<int64_t>(budget, 0)));
  }
  return v;
}

OverlapHistogram::OverlapHistogram(int64_t num_bins, int64_t bin_size, double decay)
    : num_bins_(std::max<int64_t>(num_bins, 1)),
      bin_size_(std::max<int64_t>(bin_size, 1)),
      decay_(decay > 0 && decay <= 1 ? decay : 1.0),
      raw_(static_cast<size_t>(num_bins_ + 1), 0.0) {}

void OverlapHistogram::Observe(int64_t depth_tokens) {
  // Instead of multiplying every bin by decay, grow the weight of new observations by 1 / decay,
  // and rescale when it gets large.
  if (observations_ > 0) scale_ /= decay_;
  if (scale_ > 1e150) {
    for (double& w : raw_) w /= scale_;
    scale_ = 1.0;
  }
  const int64_t bin = std::clamp<int64_t>(depth_tokens / bin_size_, 0, num_bins_);
  raw_[static_cast<size_t>(bin)] += scale_;
  ++observations_;
}

std::vector<double> OverlapHistogram::Weights() const {
  std::vector<double> w(raw_);
  for (double& x : w) x /= scale_;
  return w;
}

}  // namespace marconi
