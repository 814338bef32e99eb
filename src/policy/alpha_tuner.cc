#include "marconi/alpha_tuner.h"

#include <algorithm>
#include <cmath>

#include "util/parallel_for.h"

namespace marconi {

Result<std::unique_ptr<AlphaTuner>> AlphaTuner::Create(AlphaTunerConfig config) {
  if (config.grid.empty()) return Status::InvalidArgument("alpha tuner: empty alpha grid");
  for (double a : config.grid) {
    if (!std::isfinite(a) || a < 0) {
      return Status::InvalidArgument("alpha tuner: grid values must be finite and >= 0, got " +
                                     std::to_string(a));
    }
  }
  if (!(config.multiplier > 0 && config.multiplier <= kMaxMultiplier)) {
    return Status::InvalidArgument("alpha tuner: multiplier must be in (0, 1e6], got " +
                                   std::to_string(config.multiplier));
  }
  if (config.threads < 0) return Status::InvalidArgument("alpha tuner: threads must be >= 0");
  std::sort(config.grid.begin(), config.grid.end());
  config.grid.erase(std::unique(config.grid.begin(), config.grid.end()), config.grid.end());
  return std::unique_ptr<AlphaTuner>(new AlphaTuner(std::move(config)));
}

Status AlphaTuner::Observe(PrefixCache& cache, std::span<const Token> input,
                           std::span<const Token> output, Timestamp begin, Timestamp end) {
  ++observed_;
  if (done_) return Status::Ok();
  if (!recording_) {
    if (cache.stats().evictions == 0) return Status::Ok();
    // Probe first, so that a cache without alpha leaves the tuner untouched.
    if (Status s = cache.SetAlpha(cache.alpha()); !s.ok()) return s;
    before_eviction_ = observed_;
    // Clamped, so that the conversion to an integer is always defined.
    window_ = std::max<int64_t>(
        1, static_cast<int64_t>(
               std::min(std::ceil(config_.multiplier * static_cast<double>(observed_)), 0x1p62)));
    snapshot_ = cache.Clone();
    recording_ = true;
    return Status::Ok();
  }
  recorded_.push_back(
      Recorded{{input.begin(), input.end()}, {output.begin(), output.end()}, begin, end});
  if (static_cast<int64_t>(recorded_.size()) < window_) return Status::Ok();
  if (Status s = Tune(cache); !s.ok()) return s;
  recorded_.clear();
  if (config_.retune) {
    snapshot_ = cache.Clone();
  } else {
    snapshot_.reset();
    recording_ = false;
    done_ = true;
  }
  return Status::Ok();
}

Status AlphaTuner::Tune(PrefixCache& cache) {
  const size_t n = config_.grid.size();
  std::vector<double> score(n, 0);
  std::vector<Status> status(n);
  internal::ParallelFor(n, static_cast<size_t>(config_.threads), [&](size_t i) {
    std::unique_ptr<PrefixCache> replay = snapshot_->Clone();
    status[i] = replay->SetAlpha(config_.grid[i]);
    const CacheStats before = replay->stats();
    Timestamp now = -INFINITY;
    for (const Recorded& r : recorded_) {
      if (!status[i].ok()) break;
      now = std::max(now, r.begin);
      Result<RequestHandle> h = replay->BeginRequest(r.input, now);
      if (!h.ok()) {
        status[i] = h.status();
        break;
      }
      now = std::max(now, r.end);
      Status s = replay->CompleteRequest(std::move(h).value(), r.input, r.output, now);
      // Over-capacity needs pins, and a replay holds none: any error is real.
      if (!s.ok()) status[i] = s;
    }
    const CacheStats& after = replay->stats();
    if (config_.objective == AlphaTunerConfig::Objective::kFlopsSaved) {
      score[i] = after.flops_saved - before.flops_saved;
    } else {
      const int64_t in = after.input_tokens - before.input_tokens;
      score[i] = in > 0 ? static_cast<double>(after.hit_tokens - before.hit_tokens) /
                              static_cast<double>(in)
                        : 0;
    }
  });
  for (const Status& s : status) {
    if (!s.ok()) return s;
  }
  size_t best = 0;
  for (size_t i = 1; i < n; ++i) {
    if (score[i] > score[best]) best = i;  // strict: ties keep the smaller alpha
  }
  if (Status s = cache.SetAlpha(config_.grid[best]); !s.ok()) return s;
  rounds_.push_back(TuningRound{observed_, static_cast<int64_t>(recorded_.size()), config_.grid,
                                score, config_.grid[best]});
  return Status::Ok();
}

}  // namespace marconi
