// Status and Result: how the library reports failure without exceptions.
//
// Hot-path operations return a Status (or a Result<T>); exceptions are used only at the edges
// (command line, file parsing front-ends, bindings). A Status is cheap to copy when ok.
#ifndef MARCONI_STATUS_H_
#define MARCONI_STATUS_H_

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace marconi {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller passed something malformed; nothing was changed
  kNotFound,            // a named thing (preset, file, field) does not exist
  kResourceExhausted,   // the cache cannot fit its content within the capacity
  kFailedPrecondition,  // the object is not in a state that allows the call
  kIoError,             // reading or writing a file failed
  kParseError,          // a file was read but its content is malformed
  kUnimplemented,       // the operation is not supported by this object
};

// Returns a stable lower-case name for `code` ("ok", "invalid_argument", ...).
const char* StatusCodeName(StatusCode code);

// [[nodiscard]]: a call whose Status is dropped is a compile error (warnings are errors), so
// every failure is either handled or explicitly ignored with a reason.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status ResourceExhausted(std::string m) {
    return {StatusCode::kResourceExhausted, std::move(m)};
  }
  static Status FailedPrecondition(std::string m) {
    return {StatusCode::kFailedPrecondition, std::move(m)};
  }
  static Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
  static Status ParseError(std::string m) { return {StatusCode::kParseError, std::move(m)}; }
  static Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "ok", or "<code name>: <message>".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-ok Status. Accessing value() of an error is a programming error
// (asserted in debug builds).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(data_).ok() && "Result built from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(data_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(data_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(data_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(data_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace marconi

#endif  // MARCONI_STATUS_H_
