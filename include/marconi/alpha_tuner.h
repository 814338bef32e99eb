// AlphaTuner: Marconi's online tuning of the FLOP-aware eviction's alpha.
//
// alpha stays at the cache's initial value (0: LRU) until the first eviction. Then the tuner
// snapshots the cache (after the request whose insertion caused that eviction), records the next
// W = ceil(multiplier x N) requests, N being the requests seen up to the first eviction, replays
// them from the snapshot once per alpha of the grid on a thread pool, and sets the cache's alpha
// to the best by the objective; ties go to the smaller alpha, so the result is deterministic.
// With retune (the default), every following window of W requests is replayed from a snapshot
// taken at its start in the same way. Without it (the paper's one-shot tuning) the first window
// decides for good, and that window (the one just after the cache filled) is often unlike the
// rest: on ShareGPT at 1 GB it chose alpha 2.0 and lost 24% of SGLang+'s hit rate, where
// re-tuning stays within 3% (docs/results-discussion.md).
//
// Thread safety: none for the tuner itself; the replays run on worker threads over private
// clones and never touch the live cache.
#ifndef MARCONI_ALPHA_TUNER_H_
#define MARCONI_ALPHA_TUNER_H_

#include <memory>
#include <span>
#include <vector>

#include "marconi/prefix_cache.h"

namespace marconi {

struct AlphaTunerConfig {
  double multiplier = 5.0;  // window length in multiples of requests before the first eviction
  std::vector<double> grid = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
                              1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0};
  enum class Objective { kTokenHitRate, kFlopsSaved };
  Objective objective = Objective::kTokenHitRate;
  bool retune = true;  // tune again after every window (false: the paper's one-shot)
  int threads = 0;     // replay threads; 0 = the machine's hardware concurrency
};

// One completed tuning: when it happened and what each alpha scored on the window.
struct TuningRound {
  int64_t after_request = 0;      // requests observed when the round ran
  int64_t window = 0;             // requests replayed
  std::vector<double> alphas;     // the grid, ascending
  std::vector<double> objective;  // objective per alpha (same order)
  double chosen_alpha = 0;
};

class AlphaTuner {
 public:
  // The largest multiplier: a window of a million times the requests before the first eviction
  // is already longer than any trace; larger values would overflow the window's request count.
  static constexpr double kMaxMultiplier = 1e6;

  // kInvalidArgument for an empty grid, a negative or non-finite alpha in it, a multiplier
  // outside (0, kMaxMultiplier] or threads < 0.
  static Result<std::unique_ptr<AlphaTuner>> Create(AlphaTunerConfig config);

  // Reports one request that `cache` has completed (BeginRequest at `begin`, CompleteRequest at
  // `end`), in completion order. May run a tuning round and change the cache's alpha; the cache's
  // eviction policy must support SetAlpha (kUnimplemented otherwise, tuner unchanged). Replays
  // clamp timestamps so that they never go backwards.
  Status Observe(PrefixCache& cache, std::span<const Token> input, std::span<const Token> output,
                 Timestamp begin, Timestamp end);

  const std::vector<TuningRound>& rounds() const { return rounds_; }
  // Requests seen up to and including the first eviction (0 before it).
  int64_t requests_before_first_eviction() const { return before_eviction_; }
  int64_t window() const { return window_; }

 private:
  struct Recorded {
    std::vector<Token> input, output;
    Timestamp begin = 0, end = 0;
  };
  explicit AlphaTuner(AlphaTunerConfig config) : config_(std::move(config)) {}
  Status Tune(PrefixCache& cache);

  AlphaTunerConfig config_;
  int64_t observed_ = 0;
  int64_t before_eviction_ = 0;
  int64_t window_ = 0;
  bool recording_ = false;
  bool done_ = false;
  std::unique_ptr<PrefixCache> snapshot_;
  std::vector<Recorded> recorded_;
  std::vector<TuningRound> rounds_;
};

}  // namespace marconi

#endif  // MARCONI_ALPHA_TUNER_H_
