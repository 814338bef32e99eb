// Bindings of the core library: ModelSpec, PrefixCache and its request handles, listener.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "marconi/model_spec.h"
#include "marconi/policies.h"
#include "marconi/prefix_cache.h"
#include "sim/report.h"

namespace marconi::python {
namespace {

// A model given as a ModelSpec, a preset name or a config.json path.
ModelSpec ToModel(py::handle obj) {
  if (py::isinstance<ModelSpec>(obj)) return obj.cast<ModelSpec>();
  if (py::isinstance<py::str>(obj)) {
    return Unwrap(ModelSpec::FromNameOrFile(obj.cast<std::string>()));
  }
  throw py::type_error("model must be a marconi.ModelSpec, a preset name or a config.json path");
}

// Bytes given as an int or a string for the simulator's ParseBytes ("40GB", "1.5GiB", "inf"); None
// means unlimited.
int64_t ToBytes(py::handle obj, const char* what) {
  if (obj.is_none()) return PrefixCacheConfig::kUnlimited;
  if (py::isinstance<py::bool_>(obj)) throw py::type_error(std::string(what) + " must be bytes");
  if (py::isinstance<py::int_>(obj)) {
    const int64_t bytes = obj.cast<int64_t>();
    if (bytes <= 0) throw py::value_error(std::string(what) + " must be positive");
    return bytes;
  }
  if (py::isinstance<py::str>(obj)) return Unwrap(sim::ParseBytes(obj.cast<std::string>()));
  throw py::type_error(std::string(what) + " must be an int (bytes) or a string such as '40GB'");
}

int64_t NonNegative(int64_t v, const char* what) {
  if (v < 0) throw py::value_error(std::string(what) + " must be >= 0");
  return v;
}

// Engine payloads: None (none given) or non-negative integers below 2**63, one per position.
std::vector<uint64_t> ToPayloads(py::handle obj) {
  if (obj.is_none()) return {};
  const auto ints = ToInt64s(obj, "payloads");
  std::vector<uint64_t> out;
  out.reserve(ints.span.size());
  for (int64_t v : ints.span) {
    if (v < 0) throw py::value_error("payloads must be >= 0");
    out.push_back(static_cast<uint64_t>(v));
  }
  return out;
}

py::dict LookupDict(const LookupResult& r) {
  py::dict d;
  d["reusable_tokens"] = r.reusable_tokens;
  d["matched_tokens"] = r.matched_tokens;
  d["branch_point"] = r.branch_point;
  d["resume_node"] = r.resume_node;
  d["resume_payload"] = r.resume_payload;
  d["whole_input_cached"] = r.whole_input_cached;
  return d;
}

py::dict StatsDict(const CacheStats& s) {
  py::dict d;
#define MARCONI_FIELD(f) d[#f] = s.f
  MARCONI_FIELD(requests);
  MARCONI_FIELD(hit_requests);
  MARCONI_FIELD(input_tokens);
  MARCONI_FIELD(hit_tokens);
  MARCONI_FIELD(last_token_recomputes);
  MARCONI_FIELD(matched_tokens);
  MARCONI_FIELD(flops_saved);
  MARCONI_FIELD(flops_without_cache);
  MARCONI_FIELD(cached_tokens);
  MARCONI_FIELD(checkpoints);
  MARCONI_FIELD(nodes);
  MARCONI_FIELD(kv_bytes);
  MARCONI_FIELD(state_bytes);
  MARCONI_FIELD(peak_kv_bytes);
  MARCONI_FIELD(peak_state_bytes);
  MARCONI_FIELD(peak_bytes);
  MARCONI_FIELD(inserts);
  MARCONI_FIELD(checkpoints_admitted);
  MARCONI_FIELD(evictions);
  MARCONI_FIELD(evicted_checkpoints);
  MARCONI_FIELD(evicted_tokens);
  MARCONI_FIELD(over_capacity_inserts);
  MARCONI_FIELD(self_evictions);
#undef MARCONI_FIELD
  d["token_hit_rate"] = s.token_hit_rate();
  d["request_hit_rate"] = s.request_hit_rate();
  d["bytes"] = s.bytes();
  return d;
}

// A PrefixCache owned by Python, with its Python listener. Calls are refused (RuntimeError) while
// another is running on the same cache: from another thread (the GIL is released during long
// calls) or from the listener itself, which the C++ API forbids.
class PyCache : private CacheListener {
 public:
  explicit PyCache(std::unique_ptr<PrefixCache> cache) : cache_(std::move(cache)) {}
  ~PyCache() override { cache_->SetListener(nullptr); }

  PrefixCache& cache() { return *cache_; }

  // Marks the cache in use for a scope (a call into it), and at the end releases the requests
  // dropped meanwhile (see Release).
  class Busy {
   public:
    explicit Busy(PyCache& c) : c_(c) {
      std::lock_guard<std::mutex> lock(c_.mutex_);
      if (c_.busy_) {
        throw std::runtime_error(
            "marconi.PrefixCache is already in a call (from another thread, or from its "
            "listener, which must not call back into the cache)");
      }
      c_.busy_ = true;
    }
    ~Busy() {
      std::lock_guard<std::mutex> lock(c_.mutex_);
      c_.dropped_.clear();  // unpins; still ours
      c_.busy_ = false;
    }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    PyCache& c_;
  };

  // Releases a request that was never completed (its lease unpins a node): now if the cache is
  // idle, else when the running call ends, so that a handle collected by Python while another
  // thread is inside the cache does not touch it concurrently.
  void Release(RequestHandle handle) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (busy_) {
      dropped_.push_back(std::move(handle));
      return;
    }
    busy_ = true;
    lock.unlock();
    { RequestHandle gone = std::move(handle); }
    lock.lock();
    busy_ = false;
  }

  void SetPyListener(py::object callback) {
    Busy busy(*this);
    if (callback.is_none()) {
      cache_->SetListener(nullptr);
      listener_ = py::none();
      return;
    }
    if (!PyCallable_Check(callback.ptr())) throw py::type_error("listener must be callable");
    listener_ = std::move(callback);
    cache_->SetListener(this);
  }
  py::object listener() const { return listener_; }

  // Raises the first exception a listener raised during the last call, if any (GIL held).
  void RaiseListenerError() {
    if (listener_error_) {
      py::error_already_set e = std::move(*listener_error_);
      listener_error_.reset();
      e.restore();
      throw py::error_already_set();
    }
  }

 private:
  void OnEvicted(const EvictionEvent& event) override {
    Deliver([&](py::dict& e) {
      e["event"] = "evicted";
      e["path"] = ToArray<Token>(event.path);
      e["kv_begin"] = event.kv_begin;
      e["payload"] = event.payload;
    });
  }
  void OnNotAdopted(const NotAdoptedEvent& event) override {
    Deliver([&](py::dict& e) {
      e["event"] = "not_adopted";
      e["path"] = ToArray<Token>(event.path);
      e["payload"] = event.payload;
      e["kept"] = event.kept;
    });
  }
  // Builds the event with `fill` and calls the Python listener, with the GIL; the first error is
  // kept for the caller to raise, and later events are dropped.
  template <typename Fill>
  void Deliver(Fill&& fill) {
    py::gil_scoped_acquire gil;
    if (listener_error_) return;
    try {
      py::dict e;
      fill(e);
      Call(e);
    } catch (py::error_already_set& err) {
      listener_error_.emplace(std::move(err));
    } catch (const std::exception& err) {
      PyErr_SetString(PyExc_RuntimeError, err.what());
      listener_error_.emplace();
    }
  }
  void Call(const py::dict& e) {
    py::object callback = listener_;  // alive even if the call replaces listener_
    callback(e);
  }

  std::mutex mutex_;
  bool busy_ = false;  // guarded by mutex_
  py::object listener_ = py::none();
  std::optional<py::error_already_set> listener_error_;
  std::unique_ptr<PrefixCache> cache_;
  std::vector<RequestHandle> dropped_;  // guarded by mutex_; destroyed before cache_
};

// A request begun on a cache; keeps the cache alive (and its resume node pinned) until completed
// or dropped.
class PyRequest {
 public:
  PyRequest(py::object owner, RequestHandle handle)
      : owner_(std::move(owner)), handle_(std::move(handle)) {}
  ~PyRequest() {
    // Unpins the node on the cache, which owner_ (declared first, destroyed last) keeps alive.
    if (handle_) owner_.cast<PyCache*>()->Release(std::move(*handle_));
  }
  PyRequest(const PyRequest&) = delete;
  PyRequest& operator=(const PyRequest&) = delete;

  const RequestHandle& handle() const {
    if (!handle_) throw py::value_error("this request has already been completed");
    return *handle_;
  }
  // Gives back a handle taken for a call that updates it (InsertChunk): while the GIL is
  // released the request looks completed to other threads, which never see it half-updated.
  void Return(RequestHandle handle) { handle_.emplace(std::move(handle)); }
  RequestHandle Take(const PyCache* cache) {
    if (!handle_) throw py::value_error("this request has already been completed");
    if (owner_.cast<PyCache*>() != cache) {
      throw py::value_error("this request was begun on another PrefixCache");
    }
    RequestHandle h = std::move(*handle_);
    handle_.reset();
    return h;
  }
  bool completed() const { return !handle_; }

 private:
  py::object owner_;  // the PyCache; declared first, so destroyed after the handle's lease
  std::optional<RequestHandle> handle_;
};

std::unique_ptr<PyCache> MakeCache(py::handle model, py::handle capacity,
                                   const std::string& admission, const std::string& eviction,
                                   double alpha, const std::string& recency, int64_t block_size,
                                   py::handle kv_capacity, py::handle state_capacity,
                                   bool leave_last_token, int64_t page_size) {
  PrefixCacheConfig config;
  config.leave_last_token = leave_last_token;
  config.page_size = page_size;  // checked by PrefixCache::Create
  config.capacity_bytes = ToBytes(capacity, "capacity");
  config.kv_capacity_bytes = ToBytes(kv_capacity, "kv_capacity");
  config.state_capacity_bytes = ToBytes(state_capacity, "state_capacity");
  std::unique_ptr<AdmissionPolicy> adm;
  if (admission == "block") {
    adm = Unwrap(MakeBlockAdmission({block_size}));
  } else {
    adm = Unwrap(MakeAdmissionByName(admission));
  }
  std::unique_ptr<EvictionPolicy> evi;
  if (eviction == "flop_aware") {
    FlopAwareEvictionConfig fc;
    fc.alpha = alpha;
    fc.recency = Unwrap(ParseRecency(recency));
    evi = Unwrap(MakeFlopAwareEviction(fc));
  } else {
    evi = Unwrap(MakeEvictionByName(eviction));
    if (alpha != 0) Check(evi->SetAlpha(alpha));
  }
  return std::make_unique<PyCache>(
      Unwrap(PrefixCache::Create(config, ToModel(model), std::move(adm), std::move(evi))));
}

}  // namespace

void BindCache(py::module_& m) {
  py::class_<ModelSpec>(m, "ModelSpec",
                        "A model's layers and what caching them costs and saves (immutable).")
      .def_static(
          "preset", [](const std::string& name) { return Unwrap(ModelSpec::Preset(name)); },
          py::arg("name"), "A built-in model; KeyError lists the valid names.")
      .def_static(
          "from_config",
          [](const std::string& path) { return Unwrap(ModelSpec::FromHfConfigFile(path)); },
          py::arg("path"), "A model from a Hugging Face config.json of a supported family.")
      .def_static(
          "from_config_json",
          [](const std::string& text, const std::string& source) {
            return Unwrap(ModelSpec::FromHfConfigJson(text, source));
          },
          py::arg("text"), py::arg("source") = "<string>")
      .def_property_readonly("name", &ModelSpec::name)
      .def_property_readonly("d_model", &ModelSpec::d_model)
      .def_property_readonly("dtype_bytes", &ModelSpec::dtype_bytes)
      .def_property_readonly("kv_bytes_per_token", &ModelSpec::KvBytesPerToken)
      .def_property_readonly("state_bytes_per_checkpoint", &ModelSpec::StateBytesPerCheckpoint)
      .def_property_readonly("linear_flops_per_token", &ModelSpec::linear_flops_per_token)
      .def_property_readonly("attention_pair_flops", &ModelSpec::attention_pair_flops)
      .def("count_layers", &ModelSpec::CountLayers, py::arg("kind"))
      .def(
          "prefill_flops",
          [](const ModelSpec& s, int64_t cached, int64_t new_tokens) {
            return s.PrefillFlops(NonNegative(cached, "cached"),
                                  NonNegative(new_tokens, "new_tokens"));
          },
          py::arg("cached"), py::arg("new"))
      .def(
          "flops_saved",
          [](const ModelSpec& s, int64_t hit, int64_t input) {
            if (hit < 0 || hit > input) throw py::value_error("need 0 <= hit <= input");
            return s.FlopsSaved(hit, input);
          },
          py::arg("hit"), py::arg("input"))
      .def("describe", &ModelSpec::Describe)
      .def("__repr__", [](const ModelSpec& s) {
        return "<marconi.ModelSpec " + s.name() +
               ": kv_bytes_per_token=" + std::to_string(s.KvBytesPerToken()) +
               ", state_bytes_per_checkpoint=" + std::to_string(s.StateBytesPerCheckpoint()) + ">";
      });
  m.def("presets", &ModelSpec::PresetNames, "Names of the built-in models.");
  m.def(
      "parse_bytes", [](const std::string& text) { return Unwrap(sim::ParseBytes(text)); },
      py::arg("text"), "'40GB' (decimal), '1.5GiB' (binary), '123' (bytes), 'inf'.");

  py::class_<PyRequest>(m, "Request",
                        "A request begun with PrefixCache.begin_request; pass it to "
                        "complete_request. Holds its cache alive and its resume point pinned.")
      .def_property_readonly("reusable_tokens",
                             [](const PyRequest& r) { return r.handle().lookup().reusable_tokens; })
      .def_property_readonly("matched_tokens",
                             [](const PyRequest& r) { return r.handle().lookup().matched_tokens; })
      .def_property_readonly("branch_point",
                             [](const PyRequest& r) { return r.handle().lookup().branch_point; })
      .def_property_readonly("resume_node",
                             [](const PyRequest& r) { return r.handle().lookup().resume_node; })
      .def_property_readonly("prefill_checkpoints",
                             [](const PyRequest& r) {
                               const auto& p = r.handle().prefill_checkpoints();
                               py::tuple t(p.size());
                               for (size_t i = 0; i < p.size(); ++i) t[i] = p[i];
                               return t;
                             })
      .def_property_readonly("resume_tokens",
                             [](const PyRequest& r) { return r.handle().resume_tokens(); })
      .def_property_readonly("input_tokens",
                             [](const PyRequest& r) { return r.handle().input_tokens(); })
      .def_property_readonly("resume_payload",
                             [](const PyRequest& r) { return r.handle().resume_payload(); })
      .def_property_readonly("holds_lease",
                             [](const PyRequest& r) { return r.handle().holds_lease(); })
      .def_property_readonly("completed", &PyRequest::completed)
      .def("__repr__", [](const PyRequest& r) -> std::string {
        if (r.completed()) return "<marconi.Request (completed)>";
        return "<marconi.Request reusable_tokens=" +
               std::to_string(r.handle().lookup().reusable_tokens) +
               " matched_tokens=" + std::to_string(r.handle().lookup().matched_tokens) + ">";
      });

  py::class_<PyCache>(m, "PrefixCache",
                      "A radix-tree prefix cache for hybrid models (KV + recurrent-state "
                      "checkpoints). Not thread-safe: concurrent calls raise RuntimeError.")
      .def(py::init(&MakeCache), py::kw_only(), py::arg("model") = "paper-7b",
           py::arg("capacity") = "40GB", py::arg("admission") = "judicious",
           py::arg("eviction") = "flop_aware", py::arg("alpha") = 0.0,
           py::arg("recency") = "inverse-requests", py::arg("block_size") = 32,
           py::arg("kv_capacity") = py::none(), py::arg("state_capacity") = py::none(),
           py::arg("leave_last_token") = false, py::arg("page_size") = 1)
      .def(
          "begin_request",
          [](py::object self, py::handle tokens, double now) {
            PyCache& c = self.cast<PyCache&>();
            auto in = ToTokens(tokens, "tokens");
            PyCache::Busy busy(c);
            Result<RequestHandle> r = [&] {
              py::gil_scoped_release release;
              return c.cache().BeginRequest(in.span, now);
            }();
            return std::make_unique<PyRequest>(self, Unwrap(std::move(r)));
          },
          py::arg("tokens"), py::arg("now"),
          "Lookup, statistics, pin and admission plan for one request's input.")
      .def(
          "complete_request",
          [](PyCache& c, PyRequest& request, py::handle tokens, py::handle output, double now,
             py::handle captured, py::handle payloads) {
            auto in = ToTokens(tokens, "tokens");
            auto out = ToTokens(output, "output");
            std::optional<IntSpan<int64_t>> cps;
            if (!captured.is_none()) cps.emplace(ToInt64s(captured, "captured"));
            const std::vector<uint64_t> pay = ToPayloads(payloads);
            if (!cps && !pay.empty()) throw py::value_error("payloads need captured positions");
            PyCache::Busy busy(c);
            RequestHandle h = request.Take(&c);
            Status s;
            {
              py::gil_scoped_release release;
              s = cps ? c.cache().CompleteRequest(std::move(h), in.span, out.span, now, cps->span,
                                                  pay)
                      : c.cache().CompleteRequest(std::move(h), in.span, out.span, now);
            }
            c.RaiseListenerError();
            Check(s);
          },
          py::arg("request"), py::arg("tokens"), py::arg("output"), py::arg("now"),
          py::arg("captured") = py::none(), py::arg("payloads") = py::none(),
          "Inserts input + output with the planned checkpoints, or with exactly the `captured` "
          "positions (the states the engine holds) when given, with the engine's `payloads` "
          "(one int per position) if any; `tokens` must be the input given to begin_request. "
          "The request is completed even when this raises.")
      .def(
          "plan_decode",
          [](PyCache& c, const PyRequest& request, int64_t output_tokens) {
            NonNegative(output_tokens, "output_tokens");
            PyCache::Busy busy(c);
            const auto p = c.cache().PlanDecode(request.handle(), output_tokens);
            py::tuple t(p.size());
            for (size_t i = 0; i < p.size(); ++i) t[i] = p[i];
            return t;
          },
          py::arg("request"), py::arg("output_tokens"),
          "The decode positions to capture if the request produces `output_tokens` tokens.")
      .def(
          "insert_chunk",
          [](PyCache& c, PyRequest& request, py::handle tokens, int64_t computed_tokens,
             py::handle captured, double now, py::handle payloads) {
            auto in = ToTokens(tokens, "tokens");
            auto cps = ToInt64s(captured, "captured");
            const std::vector<uint64_t> pay = ToPayloads(payloads);
            PyCache::Busy busy(c);
            RequestHandle h = request.Take(&c);
            Status s;
            {
              py::gil_scoped_release release;
              s = c.cache().InsertChunk(h, in.span, computed_tokens, cps.span, now, pay);
            }
            request.Return(std::move(h));
            c.RaiseListenerError();
            Check(s);
          },
          py::arg("request"), py::arg("tokens"), py::arg("computed_tokens"), py::arg("captured"),
          py::arg("now"), py::arg("payloads") = py::none(),
          "Chunked prefill: caches tokens[:computed_tokens] up to the last `captured` position "
          "(states the engine holds, in (request.resume_tokens, computed_tokens]) and moves the "
          "request's pin there. `tokens` is the whole input given to begin_request.")
      .def(
          "insert",
          [](PyCache& c, py::handle sequence, py::handle checkpoints, double now,
             py::handle payloads) {
            auto seq = ToTokens(sequence, "sequence");
            auto cps = ToInt64s(checkpoints, "checkpoints");
            const std::vector<uint64_t> pay = ToPayloads(payloads);
            PyCache::Busy busy(c);
            Status s;
            {
              py::gil_scoped_release release;
              s = c.cache().Insert(seq.span, cps.span, now, pay);
            }
            c.RaiseListenerError();
            Check(s);
          },
          py::arg("sequence"), py::arg("checkpoints"), py::arg("now"),
          py::arg("payloads") = py::none(),
          "Caches `sequence` up to its last checkpoint, with the engine's `payloads` (one int in "
          "[0, 2**63) per checkpoint) if given.")
      .def(
          "lookup",
          [](PyCache& c, py::handle tokens) {
            auto in = ToTokens(tokens, "tokens");
            PyCache::Busy busy(c);
            LookupResult r;
            {
              py::gil_scoped_release release;
              r = c.cache().Lookup(in.span);
            }
            return LookupDict(r);
          },
          py::arg("tokens"), "What `tokens` would find; changes nothing.")
      .def("stats",
           [](PyCache& c) {
             PyCache::Busy busy(c);
             return StatsDict(c.cache().stats());
           })
      .def("set_listener", &PyCache::SetPyListener, py::arg("callback"),
           "callback(event) is called for every eviction with {'event': 'evicted', 'path': int32 "
           "array, 'kv_begin': int, 'payload': int}, and for every offered payload the cache "
           "did not adopt (the state was cached with another) with {'event': 'not_adopted', "
           "'path', 'payload', 'kept'}; None removes it. The first exception it raises is "
           "re-raised by "
           "the call that evicted (whose changes stand).")
      .def_property_readonly("listener", &PyCache::listener)
      .def_property(
          "alpha", [](PyCache& c) { return c.cache().alpha(); },
          [](PyCache& c, double alpha) {
            PyCache::Busy busy(c);
            Check(c.cache().SetAlpha(alpha));
          })
      .def_property_readonly("model", [](PyCache& c) { return c.cache().model(); })
      .def_property_readonly("page_size", [](PyCache& c) { return c.cache().config().page_size; })
      .def_property_readonly("capacity",
                             [](PyCache& c) { return c.cache().config().capacity_bytes; })
      .def_property_readonly(
          "admission", [](PyCache& c) { return std::string(c.cache().admission_policy().name()); })
      .def_property_readonly(
          "eviction", [](PyCache& c) { return std::string(c.cache().eviction_policy().name()); })
      .def("check_invariants",
           [](PyCache& c) {
             PyCache::Busy busy(c);
             Status s;
             {
               py::gil_scoped_release release;
               s = c.cache().CheckInvariants();
             }
             if (!s.ok()) throw std::runtime_error(s.ToString());
           })
      .def("clone", [](PyCache& c) {
        PyCache::Busy busy(c);
        return std::make_unique<PyCache>(c.cache().Clone());
      });
}

}  // namespace marconi::python
