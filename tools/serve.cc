#include "serve.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_util.h"
#include "engine/driver.h"
#include "engine/hybrid_model.h"
#include "engine_defaults.h"
#include "report_error.h"
#include "sim/file_io.h"
#include "sim/replay.h"
#include "sim/report.h"
#include "sim/synthetic.h"
#include "sim/trace.h"
#include "sim/ttft_model.h"

namespace marconi::tools {
namespace {

struct ServeOptions {
  std::string trace;
  int sessions = 6;
  int64_t requests = 40;
  int64_t max_input = 4096;
  int64_t max_output = 16;
  std::string systems = "vllm+,sglang+,marconi";
  std::string capacity = "8MB";
  std::string decode = "trace";
  std::string kernels = "fast";
  std::string weights;
  std::string model = "small";
  std::string format = "table";
  bool check = false;
  std::string per_request;
};

int Fail(const Status& s) { return ReportError("serve", s); }

// One system being served: a driver over its cache (none for the baseline) and what it measured.
struct Lane {
  std::string name;
  sim::SystemInstance policy;  // empty for the baseline
  std::unique_ptr<engine::Driver> driver;
  int64_t input_tokens = 0, reused_tokens = 0, peak_bytes = 0, identical = 0;
  double prefill_s = 0, load_s = 0, max_rel_diff = 0;
  struct Prefill {
    int64_t reused = 0, computed = 0;
    double ms = 0, load_ms = 0;
    double rel_diff = 0;  // first logits against the baseline's (0: bit-identical)
    double predicted_line_ms = 0, predicted_roofline_ms = 0;
  };
  std::vector<Prefill> prefills;
  // The simulator's TTFT models' predictions of prefill_s (see Predict), seconds.
  double predicted_line_s = 0, predicted_roofline_s = 0;
};

// The simulator's two TTFT models fitted on the baseline's measured prefills (a line in computed
// tokens, as the paper fits its profile; a roofline in the cost model's FLOPs, which also counts
// attention over reused tokens), then asked to predict every lane's total prefill time. Their
// error on the policy lanes is the error the simulator makes on this machine. False when the
// baseline's requests do not determine a line.
bool Predict(const ModelSpec& spec, std::vector<Lane>& lanes) {
  std::vector<std::pair<double, double>> by_tokens, by_flops;
  for (const Lane::Prefill& p : lanes[0].prefills) {
    by_tokens.push_back({static_cast<double>(p.computed), p.ms});
    by_flops.push_back({spec.PrefillFlops(0, p.computed), p.ms});
  }
  auto line = sim::FitLine(by_tokens);
  auto flops = sim::FitLine(by_flops);
  if (!line.ok() || !flops.ok() || !(flops->slope > 0)) return false;
  const sim::TtftModel linear = sim::TtftModel::Linear(line->intercept, line->slope);
  auto roofline =
      sim::TtftModel::Roofline(1e3 / flops->slope, 1.0, std::max(0.0, flops->intercept));
  if (!roofline.ok()) return false;
  for (Lane& l : lanes) {
    for (Lane::Prefill& p : l.prefills) {
      p.predicted_line_ms = linear.Ms(spec, p.reused, p.computed);
      p.predicted_roofline_ms = roofline->Ms(spec, p.reused, p.computed);
      l.predicted_line_s += p.predicted_line_ms / 1e3;
      l.predicted_roofline_s += p.predicted_roofline_ms / 1e3;
    }
  }
  return true;
}

double MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double scale = 1e-30, worst = 0;
  for (float v : a) scale = std::max(scale, static_cast<double>(std::abs(v)));
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / scale);
  return worst;
}

int Run(const ServeOptions& o) {
  if (!o.per_request.empty()) {
    if (Status s = CheckOutputFile("--per-request", o.per_request); !s.ok()) return Fail(s);
  }
  // The workload: requests in trace order, those with longer inputs skipped, tokens folded into
  // the model's vocabulary (a no-op for Llama-2-tokenised traces).
  Result<sim::Trace> trace = o.trace.empty()
                                 ? Result<sim::Trace>(sim::SyntheticMixed(o.sessions, 1.0, 1))
                                 : sim::ReadTrace(o.trace);
  if (!trace.ok()) return Fail(trace.status());
  WarnTrace("serve", *trace);
  engine::HybridConfig config = o.model == "tiny" ? TinyEngineConfig() : DefaultEngineConfig();
  if (o.kernels != "fast" && o.kernels != "exact") {
    return Fail(
        Status::InvalidArgument("--kernels must be fast or exact, not '" + o.kernels + "'"));
  }
  if (o.decode != "trace" && o.decode != "greedy") {
    return Fail(
        Status::InvalidArgument("--decode must be trace or greedy, not '" + o.decode + "'"));
  }
  auto model = engine::HybridModel::Create(config);
  if (!model.ok()) return Fail(model.status());
  if (!o.weights.empty()) {
    if (Status s = model->LoadSafetensors(o.weights); !s.ok()) return Fail(s);
  }
  const engine::Kernels kernels =
      o.kernels == "fast"
          ? engine::Kernels{engine::ScanKernel::kChunked, engine::MatmulKernel::kBlas}
          : engine::Kernels{engine::ScanKernel::kSequential, engine::MatmulKernel::kReference};
  std::vector<sim::TraceRequest> requests;
  int64_t skipped = 0, folded = 0;
  for (const sim::TraceRequest& r : trace->requests) {
    if (static_cast<int64_t>(requests.size()) >= o.requests) break;
    if (static_cast<int64_t>(r.input.size()) > o.max_input) {
      ++skipped;
      continue;
    }
    sim::TraceRequest copy = r;
    if (static_cast<int64_t>(copy.output.size()) > o.max_output) {
      copy.output.resize(static_cast<size_t>(o.max_output));  // still a prefix of the next turn
    }
    folded += FoldIntoVocabulary(copy.input, config.vocab);
    folded += FoldIntoVocabulary(copy.output, config.vocab);
    requests.push_back(std::move(copy));
  }
  if (requests.empty()) {
    return Fail(Status::InvalidArgument("no request of " + trace->source + " has at most " +
                                        std::to_string(o.max_input) + " input tokens"));
  }

  // The lanes: the no-cache baseline, then each policy with its own cache and driver.
  auto capacity = sim::ParseBytes(o.capacity);
  if (!capacity.ok()) return Fail(capacity.status());
  auto kinds = sim::ParseSystems(o.systems);
  if (!kinds.ok()) return Fail(kinds.status());
  sim::SimConfig sc;
  sc.model = engine::SpecOf(*model);
  sc.capacity_bytes = *capacity;
  sc.leave_last_token = true;  // the driver computes at least the last input token
  sc.threads = 1;
  std::vector<Lane> lanes(1);
  lanes[0].name = "vanilla";
  lanes[0].driver = std::make_unique<engine::Driver>(*model, nullptr, kernels);
  for (sim::SystemKind kind : *kinds) {
    const sim::SystemSpec& spec = sim::SpecOf(kind);
    if (spec.admission == sim::Admission::kNone) continue;  // vanilla: always run, the baseline
    if (spec.tuning == sim::Tuning::kHindsight) {
      if (o.systems == "all") continue;
      return Fail(
          Status::InvalidArgument(std::string(spec.name) +
                                  " needs the whole trace in hindsight; use `marconi sim` for it"));
    }
    if (spec.engine != nullptr) {  // an emulated engine's cache is no PrefixCache to drive
      if (o.systems == "all") continue;
      return Fail(Status::InvalidArgument(std::string(spec.name) +
                                          " is an engine emulation; use `marconi sim` for it"));
    }
    auto policy = sim::MakeSystem(kind, sc, 0.0, sim::IsTuned(kind));
    if (!policy.ok()) return Fail(policy.status());
    Lane lane;
    lane.name = sim::SystemName(kind);
    lane.policy = std::move(policy).value();
    lane.driver = std::make_unique<engine::Driver>(*model, lane.policy.cache.get(), kernels);
    lanes.push_back(std::move(lane));
  }

  // Serve request by request, every lane in turn (the machine's speed drifts: interleaving
  // spreads it over all lanes alike); each lane's first logits are compared with the baseline's.
  for (const sim::TraceRequest& r : requests) {
    std::vector<float> baseline_logits;
    for (Lane& lane : lanes) {
      auto served = o.decode == "trace"
                        ? lane.driver->ServeForced(r.input, r.output, r.ts)
                        : lane.driver->Serve(r.input, static_cast<int64_t>(r.output.size()), r.ts);
      if (!served.ok()) {
        return Fail(Status(served.status().code(), trace->source + ":" + std::to_string(r.line) +
                                                       ": " + lane.name + ": " +
                                                       served.status().message()));
      }
      if (lane.policy.tuner) {
        Status t =
            lane.policy.tuner->Observe(*lane.policy.cache, r.input, served->output, r.ts, r.ts);
        if (!t.ok()) return Fail(t);
      }
      lane.input_tokens += static_cast<int64_t>(r.input.size());
      lane.reused_tokens += served->reused_tokens;
      lane.prefill_s += served->prefill_seconds;
      lane.load_s += served->load_seconds;
      lane.peak_bytes = std::max(lane.peak_bytes, lane.driver->stored_bytes());
      Lane::Prefill record;
      record.reused = served->reused_tokens;
      record.computed = served->computed_tokens;
      record.ms = 1e3 * served->prefill_seconds;
      record.load_ms = 1e3 * served->load_seconds;
      if (baseline_logits.empty()) {
        baseline_logits = served->first_logits;
      } else {
        lane.identical += served->first_logits == baseline_logits;
        record.rel_diff = MaxRelDiff(baseline_logits, served->first_logits);
        lane.max_rel_diff = std::max(lane.max_rel_diff, record.rel_diff);
      }
      lane.prefills.push_back(record);
    }
  }

  // --check: every hit must give the recompute's logits (bit-identical with exact kernels).
  int status = 0;
  for (const Lane& l : lanes) {
    if (!o.check || !l.policy.cache) continue;
    const bool ok = o.kernels == "exact" ? l.identical == static_cast<int64_t>(requests.size())
                                         : l.max_rel_diff < 1e-4;
    if (!ok) {
      std::fprintf(stderr,
                   "marconi serve: %s: %lld of %zu requests bit-identical to a recompute, largest "
                   "relative logit difference %.3g\n",
                   l.name.c_str(), static_cast<long long>(l.identical), requests.size(),
                   l.max_rel_diff);
      status = 1;
    }
  }
  const double base_s = lanes[0].prefill_s;
  const bool predicted = Predict(sc.model, lanes);
  if (!o.per_request.empty()) {
    std::string csv =
        "system,request,trace_line,input_tokens,reused_tokens,prefill_ms,load_ms,"
        "predicted_line_ms,predicted_roofline_ms,rel_logit_diff\n";
    for (const Lane& l : lanes) {
      for (size_t i = 0; i < l.prefills.size(); ++i) {
        const Lane::Prefill& p = l.prefills[i];
        char row[256];
        std::snprintf(row, sizeof row, "%s,%zu,%lld,%lld,%lld,%.4f,%.4f,%.4f,%.4f,%.3g\n",
                      l.name.c_str(), i, static_cast<long long>(requests[i].line),
                      static_cast<long long>(p.reused + p.computed),
                      static_cast<long long>(p.reused), p.ms, p.load_ms, p.predicted_line_ms,
                      p.predicted_roofline_ms, p.rel_diff);
        csv += row;
      }
    }
    if (Status w = sim::WriteFile(o.per_request, csv); !w.ok()) return Fail(w);
  }
  auto saved = [&](double s, double base) { return predicted && base > 0 ? 1 - s / base : 0.0; };
  const int64_t n = static_cast<int64_t>(requests.size());
  if (o.format == "json") {
    nlohmann::json j;
    j["trace"] = trace->source;
    j["requests"] = n;
    j["skipped_requests"] = skipped;
    j["folded_tokens"] = folded;
    j["kernels"] = o.kernels;
    j["capacity_bytes"] = *capacity;
    for (const Lane& l : lanes) {
      nlohmann::json p;
      p["system"] = l.name;
      p["token_hit_rate"] =
          static_cast<double>(l.reused_tokens) / static_cast<double>(l.input_tokens);
      p["prefill_seconds"] = l.prefill_s;
      p["load_seconds"] = l.load_s;
      p["prefill_time_saved"] = 1 - l.prefill_s / base_s;
      if (predicted) {
        p["predicted_prefill_seconds_line"] = l.predicted_line_s;
        p["predicted_prefill_seconds_roofline"] = l.predicted_roofline_s;
        p["predicted_time_saved_line"] = saved(l.predicted_line_s, lanes[0].predicted_line_s);
        p["predicted_time_saved_roofline"] =
            saved(l.predicted_roofline_s, lanes[0].predicted_roofline_s);
      }
      p["peak_stored_bytes"] = l.peak_bytes;
      if (l.policy.cache) {
        const CacheStats& st = l.policy.cache->stats();
        p["flops_saved_model"] =
            st.flops_without_cache > 0 ? st.flops_saved / st.flops_without_cache : 0.0;
        p["evicted_checkpoints"] = st.evicted_checkpoints;
        p["bit_identical_requests"] = l.identical;
        p["max_rel_logit_diff"] = l.max_rel_diff;
      }
      j["systems"].push_back(p);
    }
    std::printf("%s\n", j.dump(2).c_str());
    return status;
  }
  std::printf(
      "reference hybrid model %s (d_model %lld, fp32, %s kernels) serving %lld requests of %s "
      "(%lld longer than %lld tokens skipped, %lld tokens folded into the vocabulary), decode: "
      "%s, cache capacity %s\n\n",
      config.pattern.c_str(), static_cast<long long>(config.d_model), o.kernels.c_str(),
      static_cast<long long>(n), trace->source.c_str(), static_cast<long long>(skipped),
      static_cast<long long>(o.max_input), static_cast<long long>(folded), o.decode.c_str(),
      sim::FormatBytesExact(*capacity, sim::UnitsOf(o.capacity)).c_str());
  std::printf("%-16s %9s %11s %11s %12s %17s %8s %11s %10s %13s\n", "policy", "hit rate",
              "prefill s", "time saved", "FLOPs saved", "TTFT model saved", "load s", "peak bytes",
              "evictions", "exact / diff");
  for (const Lane& l : lanes) {
    const double hit = static_cast<double>(l.reused_tokens) / static_cast<double>(l.input_tokens);
    std::string flops = "-", evictions = "-", exact = "-";
    if (l.policy.cache) {
      const CacheStats& st = l.policy.cache->stats();
      char buf[64];
      std::snprintf(
          buf, sizeof buf, "%.1f%%",
          st.flops_without_cache > 0 ? 100 * st.flops_saved / st.flops_without_cache : 0.0);
      flops = buf;
      evictions = std::to_string(st.evicted_checkpoints);
      std::snprintf(buf, sizeof buf, "%lld/%lld %.0e", static_cast<long long>(l.identical),
                    static_cast<long long>(n), l.max_rel_diff);
      exact = buf;
    }
    char model_saved[48] = "-";
    if (predicted) {
      std::snprintf(model_saved, sizeof model_saved, "%.1f%% / %.1f%%",
                    100 * saved(l.predicted_line_s, lanes[0].predicted_line_s),
                    100 * saved(l.predicted_roofline_s, lanes[0].predicted_roofline_s));
    }
    std::printf("%-16s %8.1f%% %10.3f %9.1f%% %11s %17s %8.3f %11s %10s %13s\n", l.name.c_str(),
                100 * hit, l.prefill_s, 100 * (1 - l.prefill_s / base_s), flops.c_str(),
                model_saved, l.load_s,
                sim::FormatBytes(l.peak_bytes, sim::UnitsOf(o.capacity)).c_str(), evictions.c_str(),
                exact.c_str());
  }
  std::printf(
      "\nhit rate: input tokens resumed from the cache. time saved: measured prefill time against "
      "vanilla's; FLOPs saved: what the simulator's cost model predicts for the same hits; TTFT "
      "model saved: what the simulator's TTFT models (a line in computed tokens / a roofline in "
      "FLOPs), fitted on vanilla's measured prefills, predict for the same hits. exact: "
      "requests whose first logits are bit-identical to a full recompute, and the largest "
      "relative difference otherwise (fast kernels: resumes off a chunk boundary round "
      "differently; --kernels exact makes every hit bit-identical).\n");
  return status;
}

}  // namespace

void AddServeCommand(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand(
      "serve",
      "Serve a trace through the reference hybrid model with real cached states, per policy, "
      "against a no-cache baseline");
  auto* trace = cmd->add_option("--trace", o->trace,
                                "Trace (JSONL or .zst; default: synthetic mixed workload)")
                    ->check(CLI::ExistingFile);
  cmd->add_option("--sessions", o->sessions, "Sessions of the synthetic workload")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000))
      ->excludes(trace);
  cmd->add_option("--requests", o->requests, "Serve at most this many requests")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--max-input", o->max_input, "Skip requests with more input tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--max-output", o->max_output,
                  "Decode at most this many of a request's output tokens")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--systems,--policy", o->systems,
                  "Comma-separated systems (" + sim::SystemNames() +
                      ") or all (but those tuned in hindsight); vanilla always runs as the "
                      "baseline")
      ->capture_default_str();
  cmd->add_option("--capacity", o->capacity, "Cache capacity per policy (KV + states, fp32)")
      ->capture_default_str();
  cmd->add_option("--decode", o->decode,
                  "trace: feed the trace's outputs (the next turns contain them); greedy: "
                  "generate as many tokens greedily")
      ->capture_default_str();
  cmd->add_option("--kernels", o->kernels,
                  "fast: chunked scan + OpenBLAS; exact: sequential scan + plain loops (every "
                  "hit bit-identical)")
      ->capture_default_str();
  cmd->add_option("--model", o->model,
                  "Reference model size: small (d_model 128) or tiny (d_model 32, quick)")
      ->capture_default_str()
      ->check(CLI::IsMember({"small", "tiny"}));
  cmd->add_option("--weights", o->weights, "Safetensors weights for the model's shape")
      ->check(CLI::ExistingFile);
  cmd->add_option("--format", o->format, "table or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
  cmd->add_option("--per-request", o->per_request,
                  "Write one CSV row per request and policy: tokens, reused, measured and "
                  "predicted prefill ms, logit difference");
  cmd->add_flag("--check", o->check,
                "Fail (exit 1) unless every hit gives a full recompute's logits: bit-identical "
                "with --kernels exact, within 1e-4 relative with fast kernels");
  cmd->callback([o, exit_code] { *exit_code = Run(*o); });
}

}  // namespace marconi::tools
