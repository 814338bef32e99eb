// Metrics of replayed systems and their presentation: terminal table, JSON, per-request CSV.
#ifndef MARCONI_SIM_REPORT_H_
#define MARCONI_SIM_REPORT_H_

#include <map>
#include <string>
#include <vector>

#include "sim/replay.h"

namespace marconi::sim {

// The q-quantile (0..1) by linear interpolation between order statistics (numpy's default);
// 0 for an empty sample.
double Percentile(std::vector<double> values, double q);
// The arithmetic mean; 0 for an empty sample.
double Mean(const std::vector<double>& values);

struct BucketSummary {
  std::string name;  // "short (< 7000)" / "long (>= 7000)"
  int64_t requests = 0;
  int64_t input_tokens = 0;
  int64_t hit_tokens = 0;
  double token_hit_rate = 0;
  double ttft_ms_p50 = 0;
  double ttft_ms_p95 = 0;
};

// One system's results. Field names are the JSON keys (stable).
struct Summary {
  std::string system;
  std::map<std::string, double> params;   // its effective parameters (systems.h)
  std::map<std::string, double> derived;  // an emulated engine's derived sizes (SystemResult)
  int64_t requests = 0;
  int64_t input_tokens = 0;
  int64_t hit_tokens = 0;
  double token_hit_rate = 0;  // hit_tokens / input_tokens
  // Hit loss, which no engine reports: the sum over requests of the attention-hit depth (tokens
  // whose KV was cached and matched, RequestRecord::attention_hit_tokens), and of what of it was
  // recomputed for want of a state there: attention_hit_tokens - hit_tokens.
  int64_t attention_hit_tokens = 0;
  int64_t tokens_lost_no_state = 0;
  double request_hit_rate = 0;      // requests with a hit / requests
  double flops_saved = 0;           // sum of ModelSpec::FlopsSaved over requests
  double flops_saved_fraction = 0;  // flops_saved / FLOPs of the same requests with no cache
  double ttft_ms_p5 = 0, ttft_ms_p50 = 0, ttft_ms_p95 = 0, ttft_ms_mean = 0;
  int64_t peak_kv_bytes = 0;     // the KV's own peak
  int64_t peak_state_bytes = 0;  // the states' own peak (not at the same moment as the KV's)
  int64_t peak_bytes = 0;        // peak of KV + states together: at most the capacity
  int64_t checkpoints_admitted = 0;
  int64_t checkpoint_hits = 0;  // requests that resumed from a checkpoint
  int64_t evictions = 0;
  int64_t self_evictions = 0;  // CacheStats::self_evictions: content that did not fit at all
  double alpha = 0;
  std::vector<BucketSummary> buckets;
  // The alpha tuner's rounds (for the oracle: its grid over the whole trace). In JSON as
  // "tuning_rounds": [{"after_request", "window", "chosen_alpha", "alphas", "objective"}].
  std::vector<TuningRound> tuning_rounds;
};

Summary Summarize(const SystemResult& result, int64_t long_threshold = 7000);

// Sizes are printed in the unit system the capacity was given in: decimal (GB, MB, KB: powers of
// 1000) unless it was given in binary units (GiB, MiB, KiB: powers of 1024).
enum class ByteUnits { kDecimal, kBinary };
// kBinary when `text` (e.g. "1.5GiB") uses a binary unit.
ByteUnits UnitsOf(const std::string& text);

struct ReportContext {
  std::string trace;
  std::string model;
  int64_t capacity_bytes = 0;
  std::string ttft;
  int64_t skipped_lines = 0;
  ByteUnits units = ByteUnits::kDecimal;
};
// The context of a replay of `trace` ("SOURCE (N requests, M input tokens)") through caches of
// `capacity_bytes` of `model`, timed by `ttft`; sizes print in the units of `capacity_text`.
ReportContext ContextOf(const Trace& trace, const ModelSpec& model, int64_t capacity_bytes,
                        const TtftModel& ttft, const std::string& capacity_text);

std::string SummaryTable(const std::vector<Summary>& rows, const ReportContext& ctx);
std::string SummaryJson(const std::vector<Summary>& rows, const ReportContext& ctx);
// policy,request,session_id,turn_id,input_tokens,hit_tokens,ttft_ms
std::string PerRequestCsv(const Trace& trace, const std::vector<SystemResult>& results);

// "40GB" (decimal), "1.5GiB" (binary), "512MB", "123" (bytes), "inf" (unlimited).
Result<int64_t> ParseBytes(const std::string& text);
// "5.00 GB" / "4.66 GiB" (two decimals; plain bytes below 1 KB / 1 KiB), "unlimited".
std::string FormatBytes(int64_t bytes, ByteUnits units = ByteUnits::kDecimal);
// FormatBytes and the exact count: "1.00 GiB (1,073,741,824 B)"; plain "123 B" below a KB.
std::string FormatBytesExact(int64_t bytes, ByteUnits units = ByteUnits::kDecimal);
// kInvalidArgument when `bytes` (given as `text`) cannot hold one checkpoint and one token of KV
// of `model`: the check PrefixCache::Create makes, run before a long job starts.
Status CheckCapacity(const ModelSpec& model, int64_t bytes, const std::string& text);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_REPORT_H_
