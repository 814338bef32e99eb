// Bindings of the simulator (src/sim: RunSystem, Summarize, SummaryJson) and of sparse placement.
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
#include "sim/synthetic.h"
#include "sim/trace.h"

namespace marconi::python {
namespace {

// What one simulate() call produced: `json` is exactly `marconi sim --format json`'s output.
struct SimOutput {
  std::string json;
  sim::Trace trace;
  std::vector<sim::SystemResult> results;
};

struct SimArgs {
  std::optional<std::string> trace;
  std::string capacity, model, systems, recency, objective;
  int sessions = 80;
  std::optional<double> sps;
  int threads = 0;
  std::vector<std::string> set;  // "SYSTEM.PARAM=VALUE", as `marconi sim --set`
  double multiplier = 5;
  bool skip_bad_lines = false;
};

// The same steps as `marconi sim` (tools/sim.cc), without the GIL.
Result<SimOutput> Simulate(const SimArgs& a) {
  auto model = ModelSpec::FromNameOrFile(a.model);
  if (!model.ok()) return model.status();
  auto capacity = sim::ParseBytes(a.capacity);
  if (!capacity.ok()) return capacity.status();
  auto systems = sim::ParseSystems(a.systems);
  if (!systems.ok()) return systems.status();
  auto recency = ParseRecency(a.recency);
  if (!recency.ok()) return recency.status();
  if (a.objective != "hit" && a.objective != "flops") {
    return Status::InvalidArgument("objective must be 'hit' or 'flops', not '" + a.objective + "'");
  }
  if (a.sessions <= 0) return Status::InvalidArgument("sessions must be positive");
  if (a.sps && !(*a.sps > 0)) return Status::InvalidArgument("sps must be positive");
  if (a.threads < 0) return Status::InvalidArgument("threads must be >= 0");
  sim::SimConfig config;
  for (const std::string& item : a.set) {
    if (auto set = sim::ParseSet(item, &config.params); !set.ok()) return set.status();
  }
  config.model = *model;
  config.capacity_bytes = *capacity;
  config.threads =
      a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency());
  config.tuner.multiplier = a.multiplier;
  config.recency = *recency;
  config.tuner.objective = a.objective == "flops" ? AlphaTunerConfig::Objective::kFlopsSaved
                                                  : AlphaTunerConfig::Objective::kTokenHitRate;
  Result<sim::Trace> trace = a.trace ? sim::ReadTrace(*a.trace, {a.skip_bad_lines})
                                     : Result<sim::Trace>(sim::SyntheticMixed(a.sessions, 1.0, 1));
  if (!trace.ok()) return trace.status();
  if (a.sps) *trace = sim::Retime(*trace, *a.sps);
  if (Status s = sim::CheckCapacity(*model, *capacity, a.capacity); !s.ok()) return s;
  SimOutput out;
  std::vector<sim::Summary> rows;
  for (sim::SystemKind kind : *systems) {
    auto r = sim::RunSystem(*trace, kind, config);
    if (!r.ok()) return r.status();
    rows.push_back(sim::Summarize(*r));
    out.results.push_back(std::move(r).value());
  }
  const sim::ReportContext ctx = sim::ContextOf(*trace, *model, *capacity, config.ttft, a.capacity);
  out.json = sim::SummaryJson(rows, ctx);
  out.trace = std::move(trace).value();
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
         std::vector<std::string> set, double multiplier, std::string objective,
         std::string recency, bool skip_bad_lines) {
        SimArgs a{std::move(trace),
                  std::move(capacity),
                  std::move(model),
                  std::move(systems),
                  std::move(recency),
                  std::move(objective),
                  sessions,
                  sps,
                  threads,
                  std::move(set),
                  multiplier,
                  skip_bad_lines};
        Result<SimOutput> r = [&] {
          py::gil_scoped_release release;
          return Simulate(a);
        }();
        return Unwrap(std::move(r));
      },
      py::kw_only(), py::arg("trace"), py::arg("capacity"), py::arg("model"), py::arg("systems"),
      py::arg("sessions"), py::arg("sps"), py::arg("threads"), py::arg("set"),
      py::arg("multiplier"), py::arg("objective"), py::arg("recency"), py::arg("skip_bad_lines"));

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
