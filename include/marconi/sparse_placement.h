// Sparse checkpoint placement ("Sparse Prefix Caching for Hybrid and Recurrent LLM Serving").
//
// For a cached entry of N positions and a distribution p over the overlap depth d in 0..N of
// future requests with it, choose at most M checkpoint positions S in 1..N minimising the expected
// recompute after a hit: a request of overlap d resumes at prev_S(d) = max{s in S, s <= d} (0 if
// none) and recomputes d - prev_S(d) positions, at cost
//   c(d, s) = linear * (d - s) + quadratic * (d^2 - s^2)
// (quadratic > 0 models attention, whose cost per recomputed token grows with its position).
// Positions are abstract units: tokens, or bins of a chunk size so that checkpoints sit on kernel
// chunk boundaries.
//
// Thread safety: free functions without shared state.
#ifndef MARCONI_SPARSE_PLACEMENT_H_
#define MARCONI_SPARSE_PLACEMENT_H_

#include <cstdint>
#include <span>
#include <vector>

#include "marconi/model_spec.h"
#include "marconi/status.h"

namespace marconi {

struct RecomputeCost {
  double linear = 1.0;     // per recomputed position; >= 0
  double quadratic = 0.0;  // per unit of d^2 - s^2; >= 0; linear + quadratic > 0
};

// The recompute cost of `model` in positions of `chunk` tokens: linear FLOPs per token x chunk,
// and half the attention pair FLOPs x chunk^2 (a causal prefix of d positions holds about d^2 / 2
// query-key pairs).
RecomputeCost RecomputeCostOf(const ModelSpec& model, int64_t chunk);

struct Placement {
  std::vector<int64_t> positions;  // ascending, in 1..N
  double expected_cost = 0;        // sum_d p(d) c(d, prev(d)), with p as given (not normalised)
};

// Exact optimum by dynamic programming with a monotone convex-hull deque: O(N M) time,
// O(N M) memory for the choices (4 bytes each). `p` has N + 1 entries, p[d] for d = 0..N (p[0],
// the misses, costs nothing but may be given). kInvalidArgument for empty p, a negative or
// non-finite weight, budget < 0, or a bad cost.
Result<Placement> SolvePlacement(std::span<const double> p, int64_t budget,
                                 const RecomputeCost& cost = {});

// sum_d p(d) c(d, prev_S(d)) of any placement (positions ascending in 1..N).
double PlacementCost(std::span<const double> p, std::span<const int64_t> positions,
                     const RecomputeCost& cost = {});

// Baselines over 1..N.
// Every `block` positions: block, 2 block, ... <= N.
std::vector<int64_t> BlockPlacement(int64_t n, int64_t block);
// M positions splitting 0..N into M + 1 equal segments: round(k (N + 1) / (M + 1)).
std::vector<int64_t> BalancedPlacement(int64_t n, int64_t budget);
// M positions at round((N + 1) sqrt(k / (M + 1))): gaps shrink with depth (denser towards deep
// overlaps, as when most requests share most of a long document).
std::vector<int64_t> SqrtPlacement(int64_t n, int64_t budget);
// The M largest powers of two <= N.
std::vector<int64_t> DyadicPlacement(int64_t n, int64_t budget);

// A histogram of observed overlap depths (in bins of `bin_size` tokens, capped at `num_bins`) with
// exponential decay: each observation first multiplies every earlier weight by `decay`. O(1) per
// observation.
class OverlapHistogram {
 public:
  OverlapHistogram(int64_t num_bins, int64_t bin_size, double decay);
  // Records a request whose overlap with the cached entry is `depth_tokens` (0 for a miss).
  void Observe(int64_t depth_tokens);
  // Current weights p[0..num_bins] (sum of decayed observations per bin).
  std::vector<double> Weights() const;
  int64_t observations() const { return observations_; }
  int64_t num_bins() const { return num_bins_; }
  int64_t bin_size() const { return bin_size_; }

 private:
  int64_t num_bins_, bin_size_;
  double decay_;
  double scale_ = 1.0;  // weight of the next observation, relative to the stored values
  std::vector<double> raw_;
  int64_t observations_ = 0;
};

}  // namespace marconi

#endif  // MARCONI_SPARSE_PLACEMENT_H_
