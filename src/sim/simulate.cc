#include "sim/simulate.h"

#include <algorithm>
#include <thread>

#include "marconi/alpha_tuner.h"
#include "marconi/policies.h"
#include "sim/serving/device_profile.h"
#include "sim/synthetic.h"

namespace marconi::sim {

Status ApplySystemsChoice(const SystemsChoice& choice, std::vector<SystemKind>* kinds,
                          SimConfig* config) {
  auto parsed = ParseSystems(choice.systems.empty() ? DefaultSystemNames() : choice.systems);
  if (!parsed.ok()) return parsed.status();
  *kinds = *parsed;
  for (const std::string& item : choice.set) {
    auto set = ParseSet(item, &config->params);
    if (!set.ok()) return set.status();
    if (std::find(kinds->begin(), kinds->end(), *set) == kinds->end()) {
      return Status::InvalidArgument("--set '" + item + "': " + SystemName(*set) +
                                     " is not among the systems run (--systems)");
    }
  }
  config->leave_last_token = choice.leave_last_token;
  if (choice.recency) {
    const bool flop_aware = std::any_of(kinds->begin(), kinds->end(), [](SystemKind k) {
      return SpecOf(k).eviction == Eviction::kFlopAware;
    });
    if (!flop_aware) {
      return Status::InvalidArgument(
          "--recency needs a system with FLOP-aware eviction in --systems");
    }
    auto recency = ParseRecency(*choice.recency);
    if (!recency.ok()) return recency.status();
    config->recency = *recency;
  }
  return Status::Ok();
}

Status ApplyServingOptions(const ServingOptions& o, serving::ServingConfig* config,
                           serving::Slo* slo, std::vector<std::string>* routers) {
  auto parsed_routers = serving::ParseRouters(o.router);
  if (!parsed_routers.ok()) {
    return Status::InvalidArgument("--router: " + parsed_routers.status().message());
  }
  *routers = *parsed_routers;
  if (o.replicas < 1) {
    return Status::InvalidArgument("--replicas must be >= 1, not " + std::to_string(o.replicas));
  }
  auto device = serving::ResolveDevice(o.device);
  if (!device.ok()) {
    return Status(device.status().code() == StatusCode::kNotFound ? StatusCode::kInvalidArgument
                                                                  : device.status().code(),
                  "--device: " + device.status().message());
  }
  auto parsed_slo = serving::ParseSlo(o.slo);
  if (!parsed_slo.ok()) return parsed_slo.status();
  *slo = *parsed_slo;
  config->device = device->device;
  config->max_running = o.max_running;
  config->token_budget = o.token_budget;
  config->chunk_tokens = o.chunk;
  config->closed_loop = o.closed_loop;
  config->replicas = o.replicas;
  return Status::Ok();
}

Result<SimRun> Simulate(const SimRequest& r) {
  auto model = ModelSpec::FromNameOrFile(r.model);
  if (!model.ok()) return model.status();
  auto capacity = ParseBytes(r.capacity);
  if (!capacity.ok()) return capacity.status();
  SimConfig config;
  std::vector<SystemKind> systems;
  SystemsChoice choice = r.systems;
  if (Status s = ApplySystemsChoice(choice, &systems, &config); !s.ok()) return s;
  serving::ServingConfig serving_config;
  serving::Slo slo;
  std::vector<std::string> routers;
  if (r.serving) {
    if (Status s = ApplyServingOptions(*r.serving, &serving_config, &slo, &routers); !s.ok()) {
      return s;
    }
  }
  if ((r.tuner_multiplier || r.tuner_objective) &&
      std::none_of(systems.begin(), systems.end(), IsTuned)) {
    return Status::InvalidArgument(
        "--tuner-multiplier and --tuner-objective need a tuned system in --systems");
  }
  if (r.tuner_objective && *r.tuner_objective != "hit" && *r.tuner_objective != "flops") {
    return Status::InvalidArgument("--tuner-objective must be 'hit' or 'flops', not '" +
                                   *r.tuner_objective + "'");
  }
  if (r.sessions < 1) return Status::InvalidArgument("--sessions must be >= 1");
  if (!(r.sps >= 0)) return Status::InvalidArgument("--sps must be positive");
  if (r.threads < 0) return Status::InvalidArgument("--threads must be >= 0");
  config.model = *model;
  config.capacity_bytes = *capacity;
  config.threads = r.threads > 0
                       ? r.threads
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (r.tuner_multiplier) config.tuner.multiplier = *r.tuner_multiplier;
  if (r.tuner_objective == "flops")
    config.tuner.objective = AlphaTunerConfig::Objective::kFlopsSaved;
  // Validated here, not only by the systems that tune: a bad value is never silently ignored.
  if (auto tuner = AlphaTuner::Create(config.tuner); !tuner.ok()) {
    return Status::InvalidArgument("--tuner-multiplier: " + tuner.status().message());
  }
  if (r.ttft) config.ttft = *r.ttft;
  if (Status s = CheckCapacity(*model, *capacity, r.capacity); !s.ok()) return s;
  if (r.serving) {
    if (r.serving->capacity_is_budget) serving_config.budget_bytes = *capacity;
    if (auto b = serving::ServingBudget(serving_config, *model); !b.ok()) return b.status();
  }

  Result<Trace> trace = r.trace.empty() ? Result<Trace>(SyntheticMixed(r.sessions, 1.0, 1))
                                        : ReadTrace(r.trace, {r.skip_bad_lines});
  if (!trace.ok()) return trace.status();
  SimRun run;
  run.trace = std::move(trace).value();
  if (r.sps > 0) run.trace = Retime(run.trace, r.sps);
  if (r.serving) {
    for (SystemKind kind : systems) {
      for (const std::string& router : routers) {
        serving_config.router = router;
        auto result = serving::RunServing(run.trace, kind, config, serving_config);
        if (!result.ok()) return result.status();
        run.serving_rows.push_back(serving::SummarizeServing(*result, slo));
        run.serving_requests.push_back(std::move(result->requests));
        run.rows.push_back(Summarize(result->base));
        run.results.push_back(std::move(result->base));
      }
    }
    run.context = ContextOf(run.trace, *model, *capacity, config.ttft, r.capacity);
    serving::ServingContext& c = run.serving_context;
    c.trace = run.context.trace;
    c.model = model->name();
    c.device = serving_config.device;
    c.budget_bytes = serving::ServingBudget(serving_config, *model).value();
    c.weight_bytes = serving::WeightBytes(*model);
    c.max_running = serving_config.max_running;
    c.token_budget = serving_config.token_budget;
    c.chunk_tokens = serving_config.chunk_tokens;
    c.closed_loop = serving_config.closed_loop;
    c.replicas = serving_config.replicas;
    c.slo = slo;
    return run;
  }
  for (SystemKind kind : systems) {
    if (r.progress) config.progress = r.progress(SystemName(kind));
    auto result = RunSystem(run.trace, kind, config);
    if (!result.ok()) return result.status();
    run.rows.push_back(Summarize(*result));
    run.results.push_back(std::move(result).value());
  }
  run.context = ContextOf(run.trace, *model, *capacity, config.ttft, r.capacity);
  return run;
}

}  // namespace marconi::sim
