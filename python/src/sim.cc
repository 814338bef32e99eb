// Bindings of the simulator (src/sim: Simulate, unloaded and under load) and of sparse placement.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "marconi/policies.h"
#include "marconi/sparse_placement.h"
#include "sim/replay.h"
#include "sim/report.h"
#include "sim/serving/metrics.h"
#include "sim/simulate.h"
#include "sim/trace.h"

namespace marconi::python {
namespace {

// What one simulate() call produced: `json` is exactly `marconi sim --format json`'s output.
struct SimOutput {
  std::string json;
  sim::Trace trace;
  std::vector<sim::SystemResult> results;
};

Result<SimOutput> RunSimulation(const sim::SimRequest& request) {
  auto run = sim::Simulate(request);
  if (!run.ok()) return run.status();
  SimOutput out;
  out.json = sim::SummaryJson(run->rows, run->context);
  out.trace = std::move(run->trace);
  out.results = std::move(run->results);
  return out;
}

// Per-request records of system `i` as NumPy columns.
py::dict Records(const SimOutput& o, size_t i) {
  if (i >= o.results.size()) throw py::index_error("no such system");
  const auto& recs = o.results[i].records;
  const auto n = static_cast<py::ssize_t>(recs.size());
  py::array_t<int64_t> index(n), input(n), hit(n), attention_hit(n), turn(n);
  py::array_t<double> ttft(n), ts(n);
  py::list session;
  for (py::ssize_t k = 0; k < n; ++k) {
    const sim::RequestRecord& r = recs[static_cast<size_t>(k)];
    const sim::TraceRequest& req = o.trace.requests[r.index];
    index.mutable_at(k) = static_cast<int64_t>(r.index);
    input.mutable_at(k) = r.input_tokens;
    hit.mutable_at(k) = r.hit_tokens;
    attention_hit.mutable_at(k) = r.attention_hit_tokens;
    ttft.mutable_at(k) = r.ttft_ms;
    ts.mutable_at(k) = req.ts;
    turn.mutable_at(k) = req.turn_id;
    session.append(req.session_id);
  }
  py::dict d;
  d["index"] = index;
  d["session_id"] = session;
  d["turn_id"] = turn;
  d["ts"] = ts;
  d["input_tokens"] = input;
  d["hit_tokens"] = hit;
  d["attention_hit_tokens"] = attention_hit;
  d["ttft_ms"] = ttft;
  return d;
}

RecomputeCost CostOf(py::handle model, int64_t chunk, double linear, double quadratic) {
  if (model.is_none()) return {linear, quadratic};
  if (chunk < 1) throw py::value_error("chunk must be >= 1");
  return RecomputeCostOf(model.cast<const ModelSpec&>(), chunk);
}

py::array_t<int64_t> Positions(const std::vector<int64_t>& v) {
  return ToArray<int64_t>(std::span<const int64_t>(v));
}

void CheckSize(int64_t n, int64_t k, const char* what) {
  if (n < 0) throw py::value_error("n must be >= 0");
  if (k < 0) throw py::value_error(std::string(what) + " must be >= 0");
}

}  // namespace

void BindSim(py::module_& m) {
  py::class_<SimOutput>(m, "_SimOutput")
      .def_readonly("json", &SimOutput::json)
      .def("records", &Records, py::arg("system"));
  m.def(
      "_simulate",
      [](std::optional<std::string> trace, std::string capacity, std::string model,
         std::string systems, int sessions, std::optional<double> sps, int threads,
         std::vector<std::string> set, std::optional<double> multiplier,
         std::optional<std::string> objective, std::optional<std::string> recency,
         bool skip_bad_lines) {
        sim::SimRequest a;
        a.trace = trace.value_or("");
        a.capacity = std::move(capacity);
        a.model = std::move(model);
        a.systems = {std::move(systems), std::move(set), std::move(recency)};
        a.sessions = sessions;
        if (sps) {
          if (!(*sps > 0)) throw py::value_error("sps must be positive");
          a.sps = *sps;
        }
        a.threads = threads;
        a.tuner_multiplier = multiplier;
        a.tuner_objective = std::move(objective);
        a.skip_bad_lines = skip_bad_lines;
        Result<SimOutput> r = [&] {
          py::gil_scoped_release release;
          return RunSimulation(a);
        }();
        return Unwrap(std::move(r));
      },
      py::kw_only(), py::arg("trace"), py::arg("capacity"), py::arg("model"), py::arg("systems"),
      py::arg("sessions"), py::arg("sps"), py::arg("threads"), py::arg("set"),
      py::arg("multiplier"), py::arg("objective"), py::arg("recency"), py::arg("skip_bad_lines"));

  m.def(
      "_serve",
      [](std::optional<std::string> trace, std::optional<std::string> budget, std::string model,
         std::string systems, int sessions, std::optional<double> sps, int threads,
         std::vector<std::string> set, std::string device, int64_t max_running,
         int64_t token_budget, int64_t chunk, std::string slo, bool closed_loop, int64_t replicas,
         std::string router, bool skip_bad_lines) {
        sim::SimRequest a;
        a.trace = trace.value_or("");
        a.capacity = budget.value_or("inf");
        a.model = std::move(model);
        a.systems = {std::move(systems), std::move(set), std::nullopt};
        a.sessions = sessions;
        if (sps) {
          if (!(*sps > 0)) throw py::value_error("sps must be positive");
          a.sps = *sps;
        }
        a.threads = threads;
        a.skip_bad_lines = skip_bad_lines;
        sim::ServingOptions o;
        o.device = std::move(device);
        o.max_running = max_running;
        o.token_budget = token_budget;
        o.chunk = chunk;
        o.slo = std::move(slo);
        o.closed_loop = closed_loop;
        o.capacity_is_budget = budget.has_value();
        o.replicas = replicas;
        o.router = std::move(router);
        a.serving = o;
        Result<std::string> r = [&]() -> Result<std::string> {
          py::gil_scoped_release release;
          auto run = sim::Simulate(a);
          if (!run.ok()) return run.status();
          return sim::serving::ServingJson(run->serving_rows, run->serving_context);
        }();
        return Unwrap(std::move(r));
      },
      py::kw_only(), py::arg("trace"), py::arg("budget"), py::arg("model"), py::arg("systems"),
      py::arg("sessions"), py::arg("sps"), py::arg("threads"), py::arg("set"), py::arg("device"),
      py::arg("max_running"), py::arg("token_budget"), py::arg("chunk"), py::arg("slo"),
      py::arg("closed_loop"), py::arg("replicas"), py::arg("router"), py::arg("skip_bad_lines"));

  m.def(
      "systems",
      [] {
        std::vector<std::string> names;
        for (const sim::SystemSpec& spec : sim::Systems()) names.emplace_back(spec.name);
        return names;
      },
      "The compared systems' names, in the order reports list them.");
  m.def(
      "default_systems", [] { return sim::DefaultSystemNames(); },
      "The systems marconi sim runs when none are named, comma-separated.");
  m.def(
      "solve_placement",
      [](py::handle p, int64_t budget, double linear, double quadratic, py::handle model,
         int64_t chunk) {
        auto w = ToDoubles(p, "p");
        const RecomputeCost cost = CostOf(model, chunk, linear, quadratic);
        Result<Placement> r = [&] {
          py::gil_scoped_release release;
          return SolvePlacement(w.span, budget, cost);
        }();
        Placement pl = Unwrap(std::move(r));
        py::dict d;
        d["positions"] = Positions(pl.positions);
        d["expected_cost"] = pl.expected_cost;
        return d;
      },
      py::arg("p"), py::arg("budget"), py::kw_only(), py::arg("linear") = 1.0,
      py::arg("quadratic") = 0.0, py::arg("model") = py::none(), py::arg("chunk") = 1,
      "Optimal sparse checkpoint placement: at most `budget` positions in 1..N for overlap "
      "weights p[0..N], minimising the expected recompute cost linear*(d-s) + "
      "quadratic*(d^2-s^2) (or the cost of `model` in positions of `chunk` tokens). Returns "
      "{'positions': int64 array, 'expected_cost': float}.");
  m.def(
      "placement_cost",
      [](py::handle p, py::handle positions, double linear, double quadratic, py::handle model,
         int64_t chunk) {
        auto w = ToDoubles(p, "p");
        auto pos = ToInt64s(positions, "positions");
        const int64_t n = static_cast<int64_t>(w.span.size()) - 1;
        for (size_t i = 0; i < pos.span.size(); ++i) {
          if (pos.span[i] < 1 || pos.span[i] > n || (i > 0 && pos.span[i] <= pos.span[i - 1])) {
            throw py::value_error("positions must be strictly increasing in 1..len(p)-1");
          }
        }
        const RecomputeCost cost = CostOf(model, chunk, linear, quadratic);
        py::gil_scoped_release release;
        return PlacementCost(w.span, pos.span, cost);
      },
      py::arg("p"), py::arg("positions"), py::kw_only(), py::arg("linear") = 1.0,
      py::arg("quadratic") = 0.0, py::arg("model") = py::none(), py::arg("chunk") = 1);
  m.def(
      "recompute_cost",
      [](const ModelSpec& model, int64_t chunk) {
        if (chunk < 1) throw py::value_error("chunk must be >= 1");
        const RecomputeCost c = RecomputeCostOf(model, chunk);
        return py::make_tuple(c.linear, c.quadratic);
      },
      py::arg("model"), py::arg("chunk") = 1, "(linear, quadratic) of `model` per position.");
  m.def(
      "block_placement",
      [](int64_t n, int64_t block) {
        CheckSize(n, block, "block");
        if (block < 1) throw py::value_error("block must be >= 1");
        return Positions(BlockPlacement(n, block));
      },
      py::arg("n"), py::arg("block"));
  m.def(
      "balanced_placement",
      [](int64_t n, int64_t budget) {
        CheckSize(n, budget, "budget");
        return Positions(BalancedPlacement(n, budget));
      },
      py::arg("n"), py::arg("budget"));
  m.def(
      "sqrt_placement",
      [](int64_t n, int64_t budget) {
        CheckSize(n, budget, "budget");
        return Positions(SqrtPlacement(n, budget));
      },
      py::arg("n"), py::arg("budget"));
  m.def(
      "dyadic_placement",
      [](int64_t n, int64_t budget) {
        CheckSize(n, budget, "budget");
        return Positions(DyadicPlacement(n, budget));
      },
      py::arg("n"), py::arg("budget"));
}

}  // namespace marconi::python
