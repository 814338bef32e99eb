// Bindings of the CPU reference hybrid model (src/engine): build, prefill with state captures,
// resume from a checkpoint, logits as NumPy arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "common.h"
#include "engine/driver.h"
#include "engine/hybrid_model.h"
#include "engine_defaults.h"

namespace marconi::python {
namespace {

engine::Kernels ToKernels(const std::string& name) {
  if (name == "fast") return {engine::ScanKernel::kChunked, engine::MatmulKernel::kBlas};
  if (name == "exact") {
    return {engine::ScanKernel::kSequential, engine::MatmulKernel::kReference};
  }
  throw py::value_error("kernels must be 'fast' or 'exact', not '" + name + "'");
}

}  // namespace

void BindEngine(py::module_& m) {
  using engine::Checkpoint;
  using engine::HybridConfig;
  using engine::HybridModel;
  using engine::SequenceState;

  py::class_<HybridConfig>(m, "HybridConfig",
                           "Shape of the reference hybrid model ('A' attention, 'M' Mamba2).")
      .def(py::init<>())
      .def_static("small", &tools::DefaultEngineConfig, "`marconi serve --model small`")
      .def_static("tiny", &tools::TinyEngineConfig, "`marconi serve --model tiny`")
      .def_readwrite("pattern", &HybridConfig::pattern)
      .def_readwrite("vocab", &HybridConfig::vocab)
      .def_readwrite("d_model", &HybridConfig::d_model)
      .def_readwrite("d_ff", &HybridConfig::d_ff)
      .def_readwrite("n_heads", &HybridConfig::n_heads)
      .def_readwrite("n_kv_heads", &HybridConfig::n_kv_heads)
      .def_readwrite("head_dim", &HybridConfig::head_dim)
      .def_readwrite("rope_theta", &HybridConfig::rope_theta)
      .def_readwrite("ssm_heads", &HybridConfig::ssm_heads)
      .def_readwrite("ssm_head_dim", &HybridConfig::ssm_head_dim)
      .def_readwrite("d_state", &HybridConfig::d_state)
      .def_readwrite("n_groups", &HybridConfig::n_groups)
      .def_readwrite("d_conv", &HybridConfig::d_conv)
      .def_readwrite("chunk_size", &HybridConfig::chunk_size)
      .def_readwrite("seed", &HybridConfig::seed);

  py::class_<SequenceState>(m, "Sequence",
                            "A sequence's KV and recurrent states (HybridModel.new_sequence).")
      .def_readonly("tokens", &SequenceState::tokens)
      .def("copy", [](const SequenceState& s) { return SequenceState(s); });

  py::class_<Checkpoint>(m, "Checkpoint", "The recurrent states after `position` tokens.")
      .def_readonly("position", &Checkpoint::position)
      .def("to_bytes",
           [](const Checkpoint& c) { return py::bytes(engine::SerializeCheckpoint(c)); })
      .def_static(
          "from_bytes",
          [](const py::bytes& b) {
            return Unwrap(engine::DeserializeCheckpoint(std::string_view(b)));
          },
          py::arg("data"))
      .def("__eq__", [](const Checkpoint& a, const Checkpoint& b) {
        return a.position == b.position && a.layers == b.layers;
      });

  py::class_<HybridModel>(m, "HybridModel",
                          "The CPU reference hybrid model (fp32, seeded weights).")
      .def(py::init([](const HybridConfig& c) { return Unwrap(HybridModel::Create(c)); }),
           py::arg("config") = tools::TinyEngineConfig())
      .def_property_readonly(
          "config", [](const HybridModel& model) { return model.config(); }, "A copy.")
      .def_property_readonly("checkpoint_bytes", &HybridModel::CheckpointBytes)
      .def_property_readonly("kv_bytes_per_token", &HybridModel::KvBytesPerToken)
      .def("spec", &engine::SpecOf, "The cost-model view (a ModelSpec) for a PrefixCache.")
      .def("new_sequence", &HybridModel::NewSequence)
      .def(
          "prefill",
          [](const HybridModel& model, SequenceState& state, py::handle tokens, py::handle capture,
             const std::string& kernels) {
            auto in = ToTokens(tokens, "tokens");
            auto at = ToInt64s(capture.is_none() ? py::handle(py::tuple()) : capture, "capture");
            const engine::Kernels k = ToKernels(kernels);
            std::vector<Checkpoint> captured;
            Result<std::vector<float>> logits = [&] {
              py::gil_scoped_release release;
              return model.Prefill(state, in.span, k, at.span, &captured);
            }();
            std::vector<float> l = Unwrap(std::move(logits));
            return py::make_tuple(ToArray<float>(std::span<const float>(l)), captured);
          },
          py::arg("sequence"), py::arg("tokens"), py::arg("capture") = py::none(),
          py::arg("kernels") = "fast",
          "Appends `tokens` to `sequence` (in place); returns (logits after the last token as a "
          "float32 array, [Checkpoint at each position of `capture`]). Positions are absolute, "
          "ascending, in (sequence.tokens, sequence.tokens + len(tokens)]. kernels: 'fast' "
          "(chunked scan, BLAS) or 'exact' (sequential scan, reference matmuls).")
      .def(
          "resume",
          [](const HybridModel& model, const SequenceState& full, const Checkpoint& cp) {
            return Unwrap(model.Resume(full, cp));
          },
          py::arg("full"), py::arg("checkpoint"),
          "A sequence resuming after checkpoint.position tokens of `full` (its KV up to there "
          "and the checkpoint's states).");
}

}  // namespace marconi::python
