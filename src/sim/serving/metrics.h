// What a serving run measured, per system: latency percentiles, throughput, goodput under an
// SLO, preemptions and peak memory by use; as a table and as JSON (field names are stable).
#ifndef MARCONI_SIM_SERVING_METRICS_H_
#define MARCONI_SIM_SERVING_METRICS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "marconi/status.h"
#include "sim/serving/scheduler.h"
#include "sim/trace.h"

namespace marconi::sim::serving {

// A request meets the SLO when its TTFT and its TPOT are both within bounds.
struct Slo {
  double ttft_s = 2.0;
  double tpot_s = 0.1;
};
// "ttft=2s,tpot=100ms" (units s or ms; either key may be left out to keep its default);
// kInvalidArgument names what is wrong.
Result<Slo> ParseSlo(const std::string& text);

struct Quantiles {
  double p50 = 0, p90 = 0, p95 = 0, p99 = 0, mean = 0;
};

struct ServingSummary {
  std::string system;
  std::string router;    // ServingConfig::router
  int64_t replicas = 1;  // ServingConfig::replicas
  // The share of the requests served by the replica that served the most (1 with one replica;
  // 1/N when spread evenly).
  double busiest_replica_share = 0;
  int64_t requests = 0;  // every request, the rejected ones included
  int64_t rejected = 0;  // ServingResult::rejected: in no quantile, hit rate or throughput
  double token_hit_rate = 0;
  Quantiles ttft_ms, queue_ms, prefill_ms, tpot_ms, e2e_ms;
  // generated tokens / (last finish - first arrival)
  double throughput_tok_s = 0;
  // requests meeting the SLO / (last finish - first arrival), and their share
  double goodput_req_s = 0;
  double slo_attainment = 0;
  int64_t preemptions = 0;
  int64_t recomputed_tokens = 0;
  int64_t cache_flushes = 0;  // ServingResult::cache_flushes
  int64_t steps = 0;
  double makespan_s = 0;
  double mean_in_system = 0;  // time-averaged requests in the system
  MemoryUse peak;
  int64_t peak_bytes = 0;
  int64_t budget_bytes = 0;
  double alpha = 0;  // the final eviction alpha (marconi, sparse) or the oracle's choice
};

ServingSummary SummarizeServing(const ServingResult& result, const Slo& slo);

struct ServingContext {
  std::string trace;
  std::string model;
  DeviceSpec device;
  int64_t budget_bytes = 0;
  int64_t weight_bytes = 0;
  int64_t max_running = 0, token_budget = 0, chunk_tokens = 0;
  bool closed_loop = false;
  int64_t replicas = 1;  // each with the budget above
  Slo slo;
};

// One row per request and system: system,request,session_id,turn_id,input_tokens,output_tokens,
// hit_tokens,arrival_s,queue_ms,prefill_ms,ttft_ms,tpot_ms,e2e_ms,preemptions,router,replica.
// `requests[k]` are the records of `systems[k]` (routed by `routers[k]`; empty when not given),
// in trace order.
std::string ServingPerRequestCsv(const Trace& trace, const std::vector<std::string>& systems,
                                 const std::vector<std::vector<ServingRecord>>& requests,
                                 const std::vector<std::string>& routers = {});

// One numeric field of a ServingSummary: the one list both the JSON (every field, in this order)
// and the sweep's CSV (the fields marked `csv`, in this order) are written from.
struct ServingField {
  const char* name;
  bool integer;  // written without decimals
  bool csv;      // a column of serving.csv
  double (*value)(const ServingSummary&);
};
std::span<const ServingField> ServingFields();
// `f`'s value in `s` as CSV text: integers exactly, others with 6 significant decimals.
std::string FormatServingField(const ServingField& f, const ServingSummary& s);

std::string ServingTable(const std::vector<ServingSummary>& rows, const ServingContext& ctx);
std::string ServingJson(const std::vector<ServingSummary>& rows, const ServingContext& ctx);

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_METRICS_H_
