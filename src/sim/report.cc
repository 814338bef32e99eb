#include "sim/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace marconi::sim {

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

double Mean(const std::vector<double>& values) {
  if (values.empty()) return 0;
  double sum = 0;
  for (double x : values) sum += x;
  return sum / static_cast<double>(values.size());
}

Summary Summarize(const SystemResult& r, int64_t long_threshold) {
  Summary s;
  const CacheStats& st = r.stats;
  s.system = r.system;
  s.params = r.params;
  s.derived = r.derived;
  s.requests = st.requests;
  s.input_tokens = st.input_tokens;
  s.hit_tokens = st.hit_tokens;
  s.token_hit_rate = st.token_hit_rate();
  s.request_hit_rate = st.request_hit_rate();
  s.flops_saved = st.flops_saved;
  s.flops_saved_fraction = st.flops_without_cache > 0 ? st.flops_saved / st.flops_without_cache : 0;
  s.peak_kv_bytes = st.peak_kv_bytes;
  s.peak_state_bytes = st.peak_state_bytes;
  s.peak_bytes = st.peak_bytes;
  s.checkpoints_admitted = st.checkpoints_admitted;
  s.checkpoint_hits = st.hit_requests;
  s.evictions = st.evictions;
  s.self_evictions = st.self_evictions;
  s.alpha = r.alpha;
  s.tuning_rounds = r.rounds;
  std::vector<double> all, shorts, longs;
  BucketSummary sb{"short (< " + std::to_string(long_threshold) + ")"};
  BucketSummary lb{"long (>= " + std::to_string(long_threshold) + ")"};
  for (const RequestRecord& rec : r.records) {
    all.push_back(rec.ttft_ms);
    const bool is_long = rec.input_tokens >= long_threshold;
    BucketSummary& b = is_long ? lb : sb;
    (is_long ? longs : shorts).push_back(rec.ttft_ms);
    ++b.requests;
    b.input_tokens += rec.input_tokens;
    b.hit_tokens += rec.hit_tokens;
    s.attention_hit_tokens += rec.attention_hit_tokens;
  }
  s.tokens_lost_no_state = std::max<int64_t>(0, s.attention_hit_tokens - s.hit_tokens);
  s.ttft_ms_p5 = Percentile(all, 0.05);
  s.ttft_ms_p50 = Percentile(all, 0.50);
  s.ttft_ms_p95 = Percentile(all, 0.95);
  s.ttft_ms_mean = Mean(all);
  for (auto [b, v] : {std::pair{&sb, &shorts}, std::pair{&lb, &longs}}) {
    b->token_hit_rate = b->input_tokens > 0 ? static_cast<double>(b->hit_tokens) /
                                                  static_cast<double>(b->input_tokens)
                                            : 0;
    b->ttft_ms_p50 = Percentile(*v, 0.5);
    b->ttft_ms_p95 = Percentile(*v, 0.95);
    s.buckets.push_back(*b);
  }
  return s;
}

ByteUnits UnitsOf(const std::string& text) {
  return text.find("iB") != std::string::npos ? ByteUnits::kBinary : ByteUnits::kDecimal;
}

std::string FormatBytes(int64_t bytes, ByteUnits units) {
  if (bytes == PrefixCacheConfig::kUnlimited) return "unlimited";
  const bool binary = units == ByteUnits::kBinary;
  const double k = binary ? 1024.0 : 1000.0;
  static const char* const kDecimalNames[] = {"KB", "MB", "GB", "TB"};
  static const char* const kBinaryNames[] = {"KiB", "MiB", "GiB", "TiB"};
  char buf[32];
  double v = static_cast<double>(bytes);
  if (v < k && v > -k) {
    std::snprintf(buf, sizeof(buf), "%lld B", static_cast<long long>(bytes));
    return buf;
  }
  int i = -1;
  while (i < 3 && (v >= k || v <= -k)) {
    v /= k;
    ++i;
  }
  std::snprintf(buf, sizeof(buf), "%.2f %s", v, binary ? kBinaryNames[i] : kDecimalNames[i]);
  return buf;
}

std::string FormatBytesExact(int64_t bytes, ByteUnits units) {
  const std::string short_form = FormatBytes(bytes, units);
  if (bytes == PrefixCacheConfig::kUnlimited || short_form.ends_with(" B")) return short_form;
  std::string digits = std::to_string(bytes < 0 ? -bytes : bytes);
  for (size_t i = digits.size(); i > 3; i -= 3) digits.insert(i - 3, ",");
  return short_form + " (" + (bytes < 0 ? "-" : "") + digits + " B)";
}

Status CheckCapacity(const ModelSpec& model, int64_t bytes, const std::string& text) {
  if (bytes >= model.StateBytesPerCheckpoint() + model.KvBytesPerToken()) return Status::Ok();
  return Status::InvalidArgument("capacity " + text + " cannot hold one checkpoint of " +
                                 model.name() + " (" +
                                 FormatBytes(model.StateBytesPerCheckpoint()) + ")");
}

Result<int64_t> ParseBytes(const std::string& text) {
  if (text == "inf" || text == "unlimited") return PrefixCacheConfig::kUnlimited;
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  const std::string unit = used > 0 ? text.substr(used) : "?";
  const std::pair<const char*, double> units[] = {{"", 1},
                                                  {"B", 1},
                                                  {"KB", 1e3},
                                                  {"MB", 1e6},
                                                  {"GB", 1e9},
                                                  {"TB", 1e12},
                                                  {"KiB", 1024.0},
                                                  {"MiB", 1048576.0},
                                                  {"GiB", 1073741824.0},
                                                  {"TiB", 1099511627776.0}};
  for (const auto& [name, scale] : units) {
    if (unit == name) {
      const double bytes = value * scale;
      if (std::isfinite(bytes) && bytes >= 1 && bytes < 9.2e18) return static_cast<int64_t>(bytes);
      break;
    }
  }
  return Status::InvalidArgument("'" + text +
                                 "' is not a size (examples: 40GB, 1.5GiB, 512MB, 123, inf)");
}

ReportContext ContextOf(const Trace& trace, const ModelSpec& model, int64_t capacity_bytes,
                        const TtftModel& ttft, const std::string& capacity_text) {
  return ReportContext{trace.source + " (" + std::to_string(trace.requests.size()) + " requests, " +
                           std::to_string(trace.input_tokens()) + " input tokens)",
                       model.name(),
                       capacity_bytes,
                       ttft.Describe(),
                       trace.skipped_lines,
                       UnitsOf(capacity_text)};
}

std::string SummaryTable(const std::vector<Summary>& rows, const ReportContext& ctx) {
  std::string o;
  char buf[512];
  std::snprintf(buf, sizeof(buf), "trace %s, model %s, cache %s, TTFT: %s\n", ctx.trace.c_str(),
                ctx.model.c_str(), FormatBytesExact(ctx.capacity_bytes, ctx.units).c_str(),
                ctx.ttft.c_str());
  o += buf;
  if (ctx.skipped_lines > 0) {
    o += "(" + std::to_string(ctx.skipped_lines) + " malformed trace lines skipped)\n";
  }
  o += "\n";
  std::snprintf(buf, sizeof(buf), "%-16s %8s %8s %8s %8s %9s %9s %9s %12s %11s %11s %9s %8s %6s\n",
                "system", "tok hit", "no state", "req hit", "FLOPs", "TTFT p5", "TTFT p50",
                "TTFT p95", "peak KV+SSM", "peak KV", "peak SSM", "ckpts", "evict", "alpha");
  o += buf;
  for (const Summary& s : rows) {
    std::snprintf(
        buf, sizeof(buf),
        "%-16s %7.2f%% %7.2f%% %7.2f%% %7.2f%% %7.1fms %7.1fms %7.1fms %12s %11s %11s %9lld %8lld "
        "%6.1f\n",
        s.system.c_str(), 100 * s.token_hit_rate,
        s.input_tokens > 0 ? 100.0 * static_cast<double>(s.tokens_lost_no_state) /
                                 static_cast<double>(s.input_tokens)
                           : 0.0,
        100 * s.request_hit_rate, 100 * s.flops_saved_fraction, s.ttft_ms_p5, s.ttft_ms_p50,
        s.ttft_ms_p95, FormatBytes(s.peak_bytes, ctx.units).c_str(),
        FormatBytes(s.peak_kv_bytes, ctx.units).c_str(),
        FormatBytes(s.peak_state_bytes, ctx.units).c_str(),
        static_cast<long long>(s.checkpoints_admitted), static_cast<long long>(s.evictions),
        s.alpha);
    o += buf;
  }
  o += "\nby input length:\n";
  for (const Summary& s : rows) {
    for (const BucketSummary& b : s.buckets) {
      if (b.requests == 0) continue;
      std::snprintf(
          buf, sizeof(buf),
          "  %-16s %-15s %5lld requests  tok hit %6.2f%%  TTFT p50 %7.1fms  p95 %7.1fms\n",
          s.system.c_str(), b.name.c_str(), static_cast<long long>(b.requests),
          100 * b.token_hit_rate, b.ttft_ms_p50, b.ttft_ms_p95);
      o += buf;
    }
  }
  o += "\ntok hit: input tokens served from the cache; no state: input tokens whose KV was cached "
       "and matched but recomputed for want of a state there; FLOPs: prefill FLOPs saved; peak "
       "KV+SSM: "
       "the most the cache held at once (at most its capacity); peak KV, peak SSM: each one's own "
       "peak, reached at different times (they can add up to more than the capacity); ckpts: "
       "states admitted.\n";
  return o;
}

std::string SummaryJson(const std::vector<Summary>& rows, const ReportContext& ctx) {
  nlohmann::ordered_json out;
  out["trace"] = ctx.trace;
  out["model"] = ctx.model;
  out["capacity_bytes"] = ctx.capacity_bytes;
  out["ttft_model"] = ctx.ttft;
  out["skipped_lines"] = ctx.skipped_lines;
  nlohmann::ordered_json policies = nlohmann::ordered_json::array();
  for (const Summary& s : rows) {
    nlohmann::ordered_json j;
    j["system"] = s.system;
    j["params"] = s.params;
    j["derived"] = s.derived;
    j["requests"] = s.requests;
    j["input_tokens"] = s.input_tokens;
    j["hit_tokens"] = s.hit_tokens;
    j["token_hit_rate"] = s.token_hit_rate;
    j["attention_hit_tokens"] = s.attention_hit_tokens;
    j["tokens_lost_no_state"] = s.tokens_lost_no_state;
    j["request_hit_rate"] = s.request_hit_rate;
    j["flops_saved"] = s.flops_saved;
    j["flops_saved_fraction"] = s.flops_saved_fraction;
    j["ttft_ms_p5"] = s.ttft_ms_p5;
    j["ttft_ms_p50"] = s.ttft_ms_p50;
    j["ttft_ms_p95"] = s.ttft_ms_p95;
    j["ttft_ms_mean"] = s.ttft_ms_mean;
    j["peak_bytes"] = s.peak_bytes;
    j["peak_kv_bytes"] = s.peak_kv_bytes;
    j["peak_state_bytes"] = s.peak_state_bytes;
    j["checkpoints_admitted"] = s.checkpoints_admitted;
    j["checkpoint_hits"] = s.checkpoint_hits;
    j["evictions"] = s.evictions;
    j["self_evictions"] = s.self_evictions;
    j["alpha"] = s.alpha;
    nlohmann::ordered_json rounds = nlohmann::ordered_json::array();
    for (const TuningRound& t : s.tuning_rounds) {
      rounds.push_back({{"after_request", t.after_request},
                        {"window", t.window},
                        {"chosen_alpha", t.chosen_alpha},
                        {"alphas", t.alphas},
                        {"objective", t.objective}});
    }
    j["tuning_rounds"] = rounds;
    nlohmann::ordered_json buckets = nlohmann::ordered_json::array();
    for (const BucketSummary& b : s.buckets) {
      buckets.push_back({{"name", b.name},
                         {"requests", b.requests},
                         {"input_tokens", b.input_tokens},
                         {"hit_tokens", b.hit_tokens},
                         {"token_hit_rate", b.token_hit_rate},
                         {"ttft_ms_p50", b.ttft_ms_p50},
                         {"ttft_ms_p95", b.ttft_ms_p95}});
    }
    j["buckets"] = buckets;
    policies.push_back(j);
  }
  out["systems"] = policies;
  return out.dump(2) + "\n";
}

std::string PerRequestCsv(const Trace& trace, const std::vector<SystemResult>& results) {
  std::string o =
      "system,request,session_id,turn_id,input_tokens,hit_tokens,attention_hit_tokens,ttft_ms\n";
  char buf[128];
  for (const SystemResult& r : results) {
    for (const RequestRecord& rec : r.records) {
      const TraceRequest& t = trace.requests[rec.index];
      std::string sid = t.session_id;
      if (sid.find_first_of(",\"\n") != std::string::npos) {
        std::string q = "\"";
        for (char c : sid) q += c == '"' ? std::string("\"\"") : std::string(1, c);
        sid = q + "\"";
      }
      std::snprintf(buf, sizeof(buf), ",%lld,%lld,%lld,%lld,%.3f\n",
                    static_cast<long long>(t.turn_id), static_cast<long long>(rec.input_tokens),
                    static_cast<long long>(rec.hit_tokens),
                    static_cast<long long>(rec.attention_hit_tokens), rec.ttft_ms);
      o += r.system + "," + std::to_string(rec.index) + "," + sid + buf;
    }
  }
  return o;
}

}  // namespace marconi::sim
