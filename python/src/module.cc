// The extension module marconi._marconi: exceptions, argument conversions, and the submodules'
// bindings (cache.cc, sim.cc, engine.cc). The bindings convert and call; the logic is in C++.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <limits>
#include <string>

#include "common.h"

namespace marconi::python {
namespace {

PyObject* resource_exhausted_error = nullptr;

std::string TypeName(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

// Elements of `arr` (any integer dtype, 1-D) into a new array of T, range-checked via S.
template <typename T, typename S>
py::array_t<T> Narrow(const py::array& arr, const char* what) {
  auto src = py::array_t<S, py::array::c_style | py::array::forcecast>::ensure(arr);
  if (!src) throw py::error_already_set();
  py::array_t<T> out(src.size());
  const S* in = src.data();
  T* dst = out.mutable_data();
  for (py::ssize_t i = 0; i < src.size(); ++i) {
    const S v = in[i];
    const bool fits =
        std::numeric_limits<S>::is_signed
            ? (static_cast<int64_t>(v) >= std::numeric_limits<T>::min() &&
               static_cast<int64_t>(v) <= std::numeric_limits<T>::max())
            : static_cast<uint64_t>(v) <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    if (!fits) {
      throw py::value_error(std::string(what) + "[" + std::to_string(i) +
                            "] = " + std::to_string(v) + " is outside the range of " +
                            (sizeof(T) == 4 ? "int32" : "int64"));
    }
    dst[i] = static_cast<T>(v);
  }
  return out;
}

template <typename T>
IntSpan<T> ToInts(py::handle obj, const char* what) {
  using Exact = py::array_t<T, py::array::c_style>;
  py::array_t<T> owner;
  if (Exact::check_(obj)) {
    owner = py::reinterpret_borrow<py::array_t<T>>(obj);  // zero copy
  } else {
    if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) || obj.is_none()) {
      throw py::type_error(std::string(what) + " must be a sequence of integers, not " +
                           TypeName(obj));
    }
    py::array arr = py::array::ensure(obj);
    if (!arr) {
      throw py::type_error(std::string(what) + " must be a sequence of integers, not " +
                           TypeName(obj));
    }
    if (arr.ndim() == 0) {
      throw py::type_error(std::string(what) + " must be a sequence of integers, not " +
                           TypeName(obj));
    }
    if (arr.ndim() != 1) {
      throw py::value_error(std::string(what) + " must be one-dimensional, not " +
                            std::to_string(arr.ndim()) + "-dimensional");
    }
    const char kind = arr.dtype().kind();
    if (arr.size() == 0) {
      owner = py::array_t<T>(0);
    } else if (kind == 'i') {
      owner = Narrow<T, int64_t>(arr, what);
    } else if (kind == 'u') {
      owner = Narrow<T, uint64_t>(arr, what);
    } else {
      throw py::type_error(std::string(what) + " must hold integers, not " +
                           std::string(py::str(arr.dtype())));
    }
  }
  if (owner.ndim() != 1) {
    throw py::value_error(std::string(what) + " must be one-dimensional");
  }
  return {owner, std::span<const T>(owner.data(), static_cast<size_t>(owner.size()))};
}

}  // namespace

[[noreturn]] void ThrowStatus(const Status& status) {
  const std::string& m = status.message();
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kParseError:
      throw py::value_error(m);
    case StatusCode::kNotFound:
      throw py::key_error(m);
    case StatusCode::kIoError:
      PyErr_SetString(PyExc_OSError, m.c_str());
      throw py::error_already_set();
    case StatusCode::kUnimplemented:
      PyErr_SetString(PyExc_NotImplementedError, m.c_str());
      throw py::error_already_set();
    case StatusCode::kResourceExhausted:
      PyErr_SetString(resource_exhausted_error, m.c_str());
      throw py::error_already_set();
    case StatusCode::kFailedPrecondition:
    case StatusCode::kOk:
      break;
  }
  throw std::runtime_error(status.ToString());
}

IntSpan<Token> ToTokens(py::handle obj, const char* what) { return ToInts<Token>(obj, what); }
IntSpan<int64_t> ToInt64s(py::handle obj, const char* what) { return ToInts<int64_t>(obj, what); }

DoubleSpan ToDoubles(py::handle obj, const char* what) {
  if (py::isinstance<py::str>(obj) || py::isinstance<py::bytes>(obj) || obj.is_none()) {
    throw py::type_error(std::string(what) + " must be a sequence of numbers, not " +
                         TypeName(obj));
  }
  py::array arr = py::array::ensure(obj);
  if (!arr || arr.ndim() != 1) {
    throw py::type_error(std::string(what) + " must be a one-dimensional sequence of numbers");
  }
  const char kind = arr.dtype().kind();
  if (arr.size() > 0 && kind != 'f' && kind != 'i' && kind != 'u') {
    throw py::type_error(std::string(what) + " must hold numbers, not " +
                         std::string(py::str(arr.dtype())));
  }
  auto owner = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(arr);
  if (!owner) throw py::error_already_set();
  return {owner, std::span<const double>(owner.data(), static_cast<size_t>(owner.size()))};
}

}  // namespace marconi::python

PYBIND11_MODULE(_marconi, m) {
  namespace mp = marconi::python;
  m.doc() = "marconi: prefix caching for hybrid LLMs (C++ bindings; import marconi instead)";
  static pybind11::exception<std::exception> resource_exhausted(m, "ResourceExhaustedError",
                                                                PyExc_RuntimeError);
  mp::resource_exhausted_error = resource_exhausted.ptr();
  mp::BindCache(m);
  mp::BindSim(m);
  mp::BindEngine(m);
}
