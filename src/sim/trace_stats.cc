#include "sim/trace_stats.h"

#include <cstdio>
#include <set>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"
#include "sim/replay.h"
#include "sim/report.h"

namespace marconi::sim {
namespace {

Distribution Describe(const std::vector<double>& v) {
  Distribution d;
  d.p5 = Percentile(v, 0.05);
  d.p50 = Percentile(v, 0.5);
  d.p95 = Percentile(v, 0.95);
  for (double x : v) d.max = std::max(d.max, x);
  d.mean = Mean(v);
  return d;
}

}  // namespace

Result<TraceStats> ComputeTraceStats(const Trace& trace) {
  TraceStats st;
  // An unbounded cache that keeps every sequence whole (a state after its last token): its
  // matched_tokens is the longest common prefix with any earlier input + output.
  auto cache = PrefixCache::Create({}, ModelSpec::Preset("paper-7b").value(),
                                   MakeLastTokenAdmission(), MakeLruEviction())
                   .value();
  const std::vector<std::pair<std::string, int64_t>> edges = {
      {"0", 0},        {"1-1K", 1024},    {"1K-2K", 2048},    {"2K-4K", 4096},
      {"4K-8K", 8192}, {"8K-16K", 16384}, {"16K-32K", 32768}, {">32K", INT64_MAX}};
  for (const auto& [name, upto] : edges) st.overlap_depths.push_back({name, 0});
  std::vector<double> in, out;
  std::set<std::string> sessions;
  for (const TraceRequest& r : trace.requests) {
    sessions.insert(r.session_id);
    in.push_back(static_cast<double>(r.input.size()));
    out.push_back(static_cast<double>(r.output.size()));
    st.input_tokens += static_cast<int64_t>(r.input.size());
    st.output_tokens += static_cast<int64_t>(r.output.size());
  }
  auto count_overlap = [&](size_t, const LookupResult& lookup) {
    const int64_t depth = lookup.matched_tokens;
    st.optimal_hit_tokens += depth;
    for (size_t b = 0; b < edges.size(); ++b) {
      if (depth <= edges[b].second) {
        ++st.overlap_depths[b].second;
        break;
      }
    }
  };
  if (Status s = ServeTrace(trace, *cache, count_overlap); !s.ok()) return s;
  st.requests = static_cast<int64_t>(trace.requests.size());
  st.sessions = static_cast<int64_t>(sessions.size());
  st.input = Describe(in);
  st.output = Describe(out);
  st.optimal_hit_rate = st.input_tokens > 0 ? static_cast<double>(st.optimal_hit_tokens) /
                                                  static_cast<double>(st.input_tokens)
                                            : 0;
  return st;
}

std::string FormatTraceStats(const TraceStats& s, const std::string& source) {
  char buf[256];
  std::string o = source + "\n";
  std::snprintf(buf, sizeof(buf),
                "  requests %lld, sessions %lld, input tokens %lld, output tokens %lld\n",
                static_cast<long long>(s.requests), static_cast<long long>(s.sessions),
                static_cast<long long>(s.input_tokens), static_cast<long long>(s.output_tokens));
  o += buf;
  for (auto [name, d] : {std::pair{"input", &s.input}, std::pair{"output", &s.output}}) {
    std::snprintf(buf, sizeof(buf),
                  "  %-6s tokens per request: p5 %.0f  p50 %.0f  p95 %.0f  mean %.0f  max %.0f\n",
                  name, d->p5, d->p50, d->p95, d->mean, d->max);
    o += buf;
  }
  std::snprintf(buf, sizeof(buf),
                "  optimal token hit rate %.2f%% (prefix shared with any earlier request's input "
                "+ output)\n  overlap depth of requests:\n",
                100 * s.optimal_hit_rate);
  o += buf;
  for (const auto& [name, count] : s.overlap_depths) {
    const double share =
        s.requests > 0 ? static_cast<double>(count) / static_cast<double>(s.requests) : 0;
    std::snprintf(buf, sizeof(buf), "    %-8s %7lld  %5.1f%%  %s\n", name.c_str(),
                  static_cast<long long>(count), 100 * share,
                  std::string(static_cast<size_t>(share * 50 + 0.5), '#').c_str());
    o += buf;
  }
  return o;
}

}  // namespace marconi::sim
