#include "sim/serving/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sim/report.h"

namespace marconi::sim::serving {
namespace {

Quantiles QuantilesOf(const std::vector<double>& v) {
  Quantiles q;
  q.p50 = Percentile(v, 0.50);
  q.p90 = Percentile(v, 0.90);
  q.p95 = Percentile(v, 0.95);
  q.p99 = Percentile(v, 0.99);
  q.mean = Mean(v);
  return q;
}

}  // namespace

Result<Slo> ParseSlo(const std::string& text) {
  Slo slo;
  std::stringstream in(text);
  std::string item;
  const auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("--slo '" + text + "': " + why +
                                   " (expected e.g. ttft=2s,tpot=100ms)");
  };
  while (std::getline(in, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return bad("'" + item + "' has no '='");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    double scale = 0;
    std::string number;
    if (value.ends_with("ms")) {
      scale = 1e-3, number = value.substr(0, value.size() - 2);
    } else if (value.ends_with("s")) {
      scale = 1, number = value.substr(0, value.size() - 1);
    } else {
      return bad("'" + value + "' needs a unit, s or ms");
    }
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(number, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != number.size() || !std::isfinite(v) || v <= 0) {
      return bad("'" + value + "' is not a positive time");
    }
    if (key == "ttft") {
      slo.ttft_s = v * scale;
    } else if (key == "tpot") {
      slo.tpot_s = v * scale;
    } else {
      return bad("unknown key '" + key + "' (ttft, tpot)");
    }
  }
  return slo;
}

namespace {

// Integer-valued and real-valued fields, and the five numbers of a latency's distribution.
#define MARCONI_INT_FIELD(name, expr, csv)                                             \
  ServingField {                                                                       \
    name, true, csv, [](const ServingSummary& s) { return static_cast<double>(expr); } \
  }
#define MARCONI_REAL_FIELD(name, expr, csv)                                \
  ServingField {                                                           \
    name, false, csv, [](const ServingSummary& s) { return double{expr}; } \
  }
#define MARCONI_QUANTILES(name, member, csv_p50, csv_p95)     \
  MARCONI_REAL_FIELD(name "_p50", s.member.p50, csv_p50),     \
      MARCONI_REAL_FIELD(name "_p90", s.member.p90, false),   \
      MARCONI_REAL_FIELD(name "_p95", s.member.p95, csv_p95), \
      MARCONI_REAL_FIELD(name "_p99", s.member.p99, false),   \
      MARCONI_REAL_FIELD(name "_mean", s.member.mean, false)

const ServingField kFields[] = {
    MARCONI_INT_FIELD("replicas", s.replicas, true),
    MARCONI_INT_FIELD("requests", s.requests, true),
    MARCONI_REAL_FIELD("token_hit_rate", s.token_hit_rate, true),
    MARCONI_QUANTILES("ttft_ms", ttft_ms, true, true),
    MARCONI_QUANTILES("queue_ms", queue_ms, false, true),
    MARCONI_QUANTILES("prefill_ms", prefill_ms, false, false),
    MARCONI_QUANTILES("tpot_ms", tpot_ms, true, false),
    MARCONI_QUANTILES("e2e_ms", e2e_ms, false, true),
    MARCONI_REAL_FIELD("throughput_tok_s", s.throughput_tok_s, true),
    MARCONI_REAL_FIELD("goodput_req_s", s.goodput_req_s, true),
    MARCONI_REAL_FIELD("slo_attainment", s.slo_attainment, true),
    MARCONI_INT_FIELD("preemptions", s.preemptions, true),
    MARCONI_REAL_FIELD("busiest_replica_share", s.busiest_replica_share, true),
    MARCONI_INT_FIELD("rejected", s.rejected, true),
    MARCONI_INT_FIELD("recomputed_tokens", s.recomputed_tokens, false),
    MARCONI_INT_FIELD("cache_flushes", s.cache_flushes, false),
    MARCONI_INT_FIELD("steps", s.steps, false),
    MARCONI_REAL_FIELD("makespan_s", s.makespan_s, false),
    MARCONI_REAL_FIELD("mean_in_system", s.mean_in_system, false),
    MARCONI_INT_FIELD("peak_running_kv_bytes", s.peak.running_kv, false),
    MARCONI_INT_FIELD("peak_running_state_bytes", s.peak.running_state, false),
    MARCONI_INT_FIELD("peak_cached_kv_bytes", s.peak.cached_kv, false),
    MARCONI_INT_FIELD("peak_cached_state_bytes", s.peak.cached_state, false),
    MARCONI_INT_FIELD("peak_bytes", s.peak_bytes, false),
    MARCONI_REAL_FIELD("alpha", s.alpha, false),
};

#undef MARCONI_QUANTILES
#undef MARCONI_REAL_FIELD
#undef MARCONI_INT_FIELD

}  // namespace

std::span<const ServingField> ServingFields() { return kFields; }

std::string FormatServingField(const ServingField& f, const ServingSummary& s) {
  char buf[64];
  const double v = f.value(s);
  if (f.integer) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof buf, "%.6f", v);
  }
  return buf;
}

ServingSummary SummarizeServing(const ServingResult& r, const Slo& slo) {
  ServingSummary s;
  s.system = r.base.system;
  s.router = r.router;
  s.replicas = r.replicas;
  s.requests = static_cast<int64_t>(r.requests.size());
  std::vector<double> ttft, queue, prefill, tpot, e2e;
  int64_t good = 0, input = 0, hit = 0;
  for (const ServingRecord& q : r.requests) {
    if (q.rejected) continue;  // it misses the SLO: counted in `requests`, not in `good`
    ttft.push_back(1000 * q.ttft_s());
    queue.push_back(1000 * q.queue_s());
    prefill.push_back(1000 * q.prefill_s());
    if (q.output_tokens > 1) tpot.push_back(1000 * q.tpot_s());
    e2e.push_back(1000 * q.e2e_s());
    good += q.ttft_s() <= slo.ttft_s && q.tpot_s() <= slo.tpot_s;
    input += q.input_tokens;
    hit += q.hit_tokens;
  }
  // Per request (its last admission's hit), unlike the cache's statistics, which count every
  // lookup, a preempted request's again.
  s.token_hit_rate = input > 0 ? static_cast<double>(hit) / static_cast<double>(input) : 0;
  std::vector<int64_t> per_replica(static_cast<size_t>(std::max<int64_t>(1, r.replicas)), 0);
  for (const ServingRecord& q : r.requests) {
    if (q.replica < per_replica.size()) ++per_replica[q.replica];
  }
  if (s.requests > 0) {
    s.busiest_replica_share =
        static_cast<double>(*std::max_element(per_replica.begin(), per_replica.end())) /
        static_cast<double>(s.requests);
  }
  s.ttft_ms = QuantilesOf(ttft);
  s.queue_ms = QuantilesOf(queue);
  s.prefill_ms = QuantilesOf(prefill);
  s.tpot_ms = QuantilesOf(tpot);
  s.e2e_ms = QuantilesOf(e2e);
  s.makespan_s = r.last_finish - r.first_arrival;
  if (s.makespan_s > 0) {
    s.throughput_tok_s = static_cast<double>(r.output_tokens) / s.makespan_s;
    s.goodput_req_s = static_cast<double>(good) / s.makespan_s;
    s.mean_in_system = r.occupancy_integral / s.makespan_s;
  }
  s.slo_attainment =
      s.requests > 0 ? static_cast<double>(good) / static_cast<double>(s.requests) : 0;
  s.preemptions = r.preemptions;
  s.rejected = r.rejected;
  s.recomputed_tokens = r.recomputed_tokens;
  s.cache_flushes = r.cache_flushes;
  s.steps = r.steps;
  s.peak = r.peak;
  s.peak_bytes = r.peak_bytes;
  s.budget_bytes = r.budget_bytes;
  s.alpha = r.base.alpha;
  return s;
}

std::string ServingPerRequestCsv(const Trace& trace, const std::vector<std::string>& systems,
                                 const std::vector<std::vector<ServingRecord>>& requests,
                                 const std::vector<std::string>& routers) {
  std::string o =
      "system,request,session_id,turn_id,input_tokens,output_tokens,hit_tokens,arrival_s,queue_ms,"
      "prefill_ms,ttft_ms,tpot_ms,e2e_ms,preemptions,router,replica,rejected\n";
  char buf[256];
  for (size_t k = 0; k < systems.size() && k < requests.size(); ++k) {
    for (const ServingRecord& q : requests[k]) {
      const TraceRequest& t = trace.requests[q.index];
      std::string sid = t.session_id;
      if (sid.find_first_of(",\"\n") != std::string::npos) {
        std::string quoted = "\"";
        for (char c : sid) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
        sid = quoted + "\"";
      }
      std::snprintf(buf, sizeof buf, ",%lld,%lld,%lld,%lld,%.6f,%.3f,%.3f,%.3f,%.3f,%.3f,%lld,",
                    static_cast<long long>(t.turn_id), static_cast<long long>(q.input_tokens),
                    static_cast<long long>(q.output_tokens), static_cast<long long>(q.hit_tokens),
                    q.arrival, 1000 * q.queue_s(), 1000 * q.prefill_s(), 1000 * q.ttft_s(),
                    1000 * q.tpot_s(), 1000 * q.e2e_s(), static_cast<long long>(q.preemptions));
      o += systems[k] + "," + std::to_string(q.index) + "," + sid + buf +
           (k < routers.size() ? routers[k] : std::string()) + "," + std::to_string(q.replica) +
           (q.rejected ? ",1\n" : ",0\n");
    }
  }
  return o;
}

std::string ServingTable(const std::vector<ServingSummary>& rows, const ServingContext& ctx) {
  std::string o;
  char buf[512];
  std::snprintf(
      buf, sizeof buf,
      "serving: trace %s, model %s (weights %s), device %s, memory budget %s, max "
      "running %lld, token budget %lld, chunk %lld, %s arrivals, SLO TTFT <= %.3gs and TPOT <= "
      "%.3gms\n\n",
      ctx.trace.c_str(), ctx.model.c_str(), FormatBytes(ctx.weight_bytes).c_str(),
      ctx.device.name.c_str(), FormatBytes(ctx.budget_bytes).c_str(),
      static_cast<long long>(ctx.max_running), static_cast<long long>(ctx.token_budget),
      static_cast<long long>(ctx.chunk_tokens), ctx.closed_loop ? "closed-loop" : "open-loop",
      ctx.slo.ttft_s, 1000 * ctx.slo.tpot_s);
  if (ctx.replicas > 1) {
    // "...\n\n" becomes "..., N replicas (a budget each)\n\n".
    std::string head = buf;
    head.resize(head.size() - 2);
    o += head + ", " + std::to_string(ctx.replicas) + " replicas (a device and a budget each)\n\n";
  } else {
    o += buf;
  }
  // With replicas, the system column is system/router.
  const auto name_of = [](const ServingSummary& s) {
    return s.replicas > 1 ? s.system + "/" + s.router : s.system;
  };
  int width = 16;
  for (const ServingSummary& s : rows) width = std::max(width, static_cast<int>(name_of(s).size()));
  std::snprintf(buf, sizeof buf,
                "%-*s %8s %9s %9s %9s %9s %8s %9s %10s %9s %7s %6s %10s %10s %10s %10s\n", width,
                "system", "tok hit", "TTFT p50", "TTFT p95", "queue p95", "TPOT p50", "E2E p95",
                "tok/s", "goodput/s", "SLO met", "preempt", "", "run KV", "run state", "cache KV",
                "cache st.");
  o += buf;
  for (const ServingSummary& s : rows) {
    const std::string name = name_of(s);
    std::snprintf(buf, sizeof buf,
                  "%-*s %7.2f%% %7.0fms %7.0fms %7.0fms %7.1fms %7.1fs %9.0f %10.3f %8.1f%% %7lld "
                  "%6s %10s %10s %10s %10s\n",
                  width, name.c_str(), 100 * s.token_hit_rate, s.ttft_ms.p50, s.ttft_ms.p95,
                  s.queue_ms.p95, s.tpot_ms.p50, s.e2e_ms.p95 / 1000, s.throughput_tok_s,
                  s.goodput_req_s, 100 * s.slo_attainment, static_cast<long long>(s.preemptions),
                  "", FormatBytes(s.peak.running_kv).c_str(),
                  FormatBytes(s.peak.running_state).c_str(), FormatBytes(s.peak.cached_kv).c_str(),
                  FormatBytes(s.peak.cached_state).c_str());
    o += buf;
  }
  o += "\ntok hit: input tokens skipped at admission; queue: arrival to admission; TPOT: time per "
       "output token after the first; goodput: requests meeting the SLO per second; run KV, run "
       "state, cache KV, cache st.: each use's own peak memory.\n";
  for (const ServingSummary& s : rows) {
    if (s.rejected == 0) continue;
    o += name_of(s) + ": " + std::to_string(s.rejected) + " of " + std::to_string(s.requests) +
         " requests rejected (they do not fit even alone), counted as missing the SLO and left "
         "out of the other columns.\n";
  }
  return o;
}

std::string ServingJson(const std::vector<ServingSummary>& rows, const ServingContext& ctx) {
  nlohmann::ordered_json out;
  out["trace"] = ctx.trace;
  out["model"] = ctx.model;
  out["device"] = ctx.device.name;
  // What the step times come from: a preset's datasheet peaks and assumed fractions, or a
  // profile's (measured, or fitted to measured steps).
  out["device_spec"] = {{"peak_flops", ctx.device.peak_flops},
                        {"hbm_bandwidth", ctx.device.hbm_bandwidth},
                        {"hbm_bytes", ctx.device.hbm_bytes},
                        {"flops_efficiency", ctx.device.flops_efficiency},
                        {"bandwidth_efficiency", ctx.device.bandwidth_efficiency},
                        {"memory_utilization", ctx.device.memory_utilization},
                        {"step_overhead_s", ctx.device.step_overhead_s},
                        {"source", ctx.device.source}};
  out["budget_bytes"] = ctx.budget_bytes;
  out["weight_bytes"] = ctx.weight_bytes;
  out["max_running"] = ctx.max_running;
  out["token_budget"] = ctx.token_budget;
  out["chunk_tokens"] = ctx.chunk_tokens;
  out["arrivals"] = ctx.closed_loop ? "closed-loop" : "open-loop";
  out["slo"] = {{"ttft_s", ctx.slo.ttft_s}, {"tpot_s", ctx.slo.tpot_s}};
  nlohmann::ordered_json systems = nlohmann::ordered_json::array();
  for (const ServingSummary& s : rows) {
    nlohmann::ordered_json j;
    j["system"] = s.system;
    j["router"] = s.router;
    for (const ServingField& f : ServingFields()) {
      const double v = f.value(s);
      if (f.integer) {
        j[f.name] = static_cast<int64_t>(v);
      } else {
        j[f.name] = v;
      }
    }
    systems.push_back(j);
  }
  out["systems"] = systems;
  return out.dump(2) + "\n";
}

}  // namespace marconi::sim::serving
