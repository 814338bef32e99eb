// Shared by the binding files: marconi::Status to Python exceptions, and token sequences from
// Python (lists or NumPy arrays) as std::span without copying int32 C-contiguous arrays.
#ifndef MARCONI_PYTHON_COMMON_H_
#define MARCONI_PYTHON_COMMON_H_

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "marconi/status.h"
#include "marconi/types.h"

namespace marconi::python {

namespace py = pybind11;

// The one place where Status codes become exceptions: kInvalidArgument and kParseError ->
// ValueError, kNotFound -> KeyError, kIoError -> OSError, kUnimplemented -> NotImplementedError,
// kResourceExhausted -> marconi.ResourceExhaustedError, kFailedPrecondition -> RuntimeError.
// The message is the Status's. Call with the GIL held.
[[noreturn]] void ThrowStatus(const Status& status);

inline void Check(const Status& status) {
  if (!status.ok()) ThrowStatus(status);
}
template <typename T>
T Unwrap(Result<T> result) {
  if (!result.ok()) ThrowStatus(result.status());
  return std::move(result).value();
}

// A one-dimensional sequence of integers seen as a span of T: a C-contiguous NumPy array of
// exactly T's dtype is used in place (no copy; the array is kept alive by `owner`); any other
// integer array or sequence (a list, int64 arrays, strided views) is converted once, with a
// ValueError for values outside T's range and a TypeError for non-integers (floats, strings,
// booleans). `what` names the argument in messages. Requires the GIL.
template <typename T>
struct IntSpan {
  py::array_t<T> owner;
  std::span<const T> span;
};
IntSpan<Token> ToTokens(py::handle obj, const char* what);
IntSpan<int64_t> ToInt64s(py::handle obj, const char* what);

// A 1-D float64 view, converting anything else (list, float32) once; TypeError if not numeric.
struct DoubleSpan {
  py::array_t<double> owner;
  std::span<const double> span;
};
DoubleSpan ToDoubles(py::handle obj, const char* what);

// A copy of `values` as a new 1-D NumPy array.
template <typename T>
py::array_t<T> ToArray(std::span<const T> values) {
  py::array_t<T> out(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), out.mutable_data());
  return out;
}

void BindCache(py::module_& m);
void BindSim(py::module_& m);
void BindEngine(py::module_& m);

}  // namespace marconi::python

#endif  // MARCONI_PYTHON_COMMON_H_
