// Where the first error of a JSON text is, for messages that say what and where
// ("SOURCE:LINE:COLUMN: field 'a.b[2]': what"): one locator for every JSON file marconi reads
// (model configs, device profiles). Header-only, as all of src/util.
#ifndef MARCONI_UTIL_JSON_ERROR_LOCATOR_H_
#define MARCONI_UTIL_JSON_ERROR_LOCATOR_H_

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace marconi::internal {

// A first pass over the text that only finds the first error and where it is: nlohmann's own
// exceptions do not say where a number too large for a double (1e400) is, nor in which field.
class JsonErrorLocator final : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(number_integer_t) override { return Value(); }
  bool number_unsigned(number_unsigned_t) override { return Value(); }
  bool number_float(number_float_t, const string_t&) override { return Value(); }
  bool string(string_t&) override { return Value(); }
  bool binary(binary_t&) override { return Value(); }
  bool start_object(std::size_t) override {
    path_.push_back({"", -1});
    return true;
  }
  bool key(string_t& k) override {
    path_.back().key = k;
    return true;
  }
  bool end_object() override {
    path_.pop_back();
    return Value();
  }
  bool start_array(std::size_t) override {
    path_.push_back({"", 0});
    return true;
  }
  bool end_array() override {
    path_.pop_back();
    return Value();
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::json::exception& e) override {
    position_ = position;
    what_ = e.what();
    // "[json.exception.out_of_range.406] number overflow ..." -> "number overflow ...".
    if (const size_t end = what_.find("] ");
        what_.rfind("[json.exception.", 0) == 0 && end != std::string::npos) {
      what_.erase(0, end + 2);
    }
    for (const Level& l : path_) {
      if (l.index >= 0) {
        field_ += "[" + std::to_string(l.index) + "]";
      } else if (!l.key.empty()) {
        field_ += (field_.empty() ? "" : ".") + l.key;
      }
    }
    return false;
  }

  // "SOURCE:LINE:COLUMN: field 'a.b[2]': what", the position being where parsing stopped.
  std::string Message(std::string_view text, const std::string& source) const {
    const size_t end = std::min(position_, text.size());
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') {
        ++line;
        line_start = i + 1;
      }
    }
    return source + ":" + std::to_string(line) + ":" + std::to_string(end - line_start + 1) + ": " +
           (field_.empty() ? "" : "field '" + field_ + "': ") + what_;
  }

 private:
  struct Level {
    std::string key;    // objects: the current member's key
    int64_t index = 0;  // arrays: the current element's index; -1 for objects
  };
  // A value is complete: move on to the next element, or forget the member's key.
  bool Value() {
    if (path_.empty()) return true;
    if (path_.back().index >= 0) {
      ++path_.back().index;
    } else {
      path_.back().key.clear();
    }
    return true;
  }
  std::vector<Level> path_;
  size_t position_ = 0;
  std::string what_;
  std::string field_;
};

}  // namespace marconi::internal

#endif  // MARCONI_UTIL_JSON_ERROR_LOCATOR_H_
