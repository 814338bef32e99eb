#include "sim/trace.h"

#include <simdjson.h>
#include <zstd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "sim/file_io.h"

namespace marconi::sim {
namespace {

using simdjson::ondemand::json_type;

// Thrown inside this file only; turned into a Status naming file and line.
struct LineError {
  std::string what;
};

void Check(simdjson::error_code e, const char* field) {
  if (e) throw LineError{std::string("field '") + field + "': " + simdjson::error_message(e)};
}

void ReadTokens(simdjson::ondemand::value v, const char* field, std::vector<Token>* out) {
  simdjson::ondemand::array a;
  Check(v.get_array().get(a), field);
  for (auto item : a) {
    int64_t t = 0;
    Check(item.get_int64().get(t), field);
    if (t < std::numeric_limits<Token>::min() || t > std::numeric_limits<Token>::max()) {
      throw LineError{std::string("field '") + field + "': token " + std::to_string(t) +
                      " is outside int32"};
    }
    out->push_back(static_cast<Token>(t));
  }
}

TraceRequest ParseLine(simdjson::ondemand::parser& parser, const char* data, size_t len,
                       size_t capacity, int64_t line) {
  TraceRequest r;
  r.line = line;
  simdjson::ondemand::document doc;
  Check(parser.iterate(data, len, capacity).get(doc), "line");
  simdjson::ondemand::object obj;
  if (doc.get_object().get(obj)) throw LineError{"not a JSON object"};
  bool have_ts = false, have_input = false, have_session = false;
  int64_t num_input = -1, num_output = -1;
  for (auto field : obj) {
    std::string_view key;
    Check(field.unescaped_key().get(key), "key");
    simdjson::ondemand::value v;
    Check(field.value().get(v), "value");
    if (key == "ts") {
      Check(v.get_double().get(r.ts), "ts");
      have_ts = true;
    } else if (key == "input_tokens") {
      ReadTokens(v, "input_tokens", &r.input);
      have_input = true;
    } else if (key == "output_tokens") {
      ReadTokens(v, "output_tokens", &r.output);
    } else if (key == "session_id") {
      json_type type = json_type::null;
      Check(v.type().get(type), "session_id");
      if (type == json_type::string) {
        std::string_view s;
        Check(v.get_string().get(s), "session_id");
        r.session_id = std::string(s);
      } else {
        int64_t id = 0;
        Check(v.get_int64().get(id), "session_id");
        r.session_id = std::to_string(id);
      }
      have_session = true;
    } else if (key == "turn_id") {
      Check(v.get_int64().get(r.turn_id), "turn_id");
    } else if (key == "num_input_tokens") {
      Check(v.get_int64().get(num_input), "num_input_tokens");
    } else if (key == "num_output_tokens") {
      Check(v.get_int64().get(num_output), "num_output_tokens");
    }
  }
  const char* rest = nullptr;
  if (doc.current_location().get(rest) == simdjson::SUCCESS) {
    throw LineError{"trailing content after the JSON object"};
  }
  if (!have_ts) throw LineError{"missing field 'ts'"};
  if (!std::isfinite(r.ts)) throw LineError{"field 'ts' is not finite"};
  if (!have_input) throw LineError{"missing field 'input_tokens'"};
  if (r.input.empty()) throw LineError{"field 'input_tokens' is empty"};
  if (num_input >= 0 && num_input != static_cast<int64_t>(r.input.size())) {
    throw LineError{"num_input_tokens " + std::to_string(num_input) + " but input_tokens has " +
                    std::to_string(r.input.size())};
  }
  if (num_output >= 0 && num_output != static_cast<int64_t>(r.output.size())) {
    throw LineError{"num_output_tokens " + std::to_string(num_output) + " but output_tokens has " +
                    std::to_string(r.output.size())};
  }
  if (!have_session) r.session_id = "line" + std::to_string(line);
  return r;
}

void AppendJsonString(std::string_view s, std::string* out) {
  *out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') {
      *out += '\\';
      *out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      *out += buf;
    } else {
      *out += c;
    }
  }
  *out += '"';
}

}  // namespace

int64_t Trace::input_tokens() const {
  int64_t n = 0;
  for (const auto& r : requests) n += static_cast<int64_t>(r.input.size());
  return n;
}

Result<Trace> ParseTrace(const std::string& text, const std::string& source,
                         const TraceReadOptions& options) {
  // simdjson reads up to SIMDJSON_PADDING bytes past a document: parse in place when the string
  // has that much spare capacity (ReadFile leaves it), from a padded copy otherwise.
  simdjson::padded_string copy;
  const bool in_place = text.capacity() - text.size() >= simdjson::SIMDJSON_PADDING;
  if (!in_place) copy = simdjson::padded_string(text);
  const char* base = in_place ? text.data() : copy.data();
  const size_t size = text.size();
  simdjson::ondemand::parser parser;
  Trace trace;
  trace.source = source;
  int64_t line = 0;
  for (size_t pos = 0; pos < size;) {
    ++line;
    const char* nl = static_cast<const char*>(std::memchr(base + pos, '\n', size - pos));
    const size_t end = nl ? static_cast<size_t>(nl - base) : size;
    size_t b = pos, e = end;
    while (b < e && std::isspace(static_cast<unsigned char>(base[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(base[e - 1]))) --e;
    if (e > b) {
      try {
        trace.requests.push_back(
            ParseLine(parser, base + b, e - b, size + simdjson::SIMDJSON_PADDING - b, line));
      } catch (const LineError& err) {
        if (!options.skip_bad_lines) {
          return Status::ParseError(source + ":" + std::to_string(line) + ": " + err.what);
        }
        ++trace.skipped_lines;
      }
    }
    pos = end + 1;
  }
  if (trace.requests.empty()) {
    return Status::ParseError(source + ": no request in the trace" +
                              (trace.skipped_lines > 0
                                   ? " (" + std::to_string(trace.skipped_lines) + " bad lines)"
                                   : ""));
  }
  std::stable_sort(trace.requests.begin(), trace.requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.ts < b.ts; });
  return trace;
}

Result<Trace> ReadTrace(const std::string& path, const TraceReadOptions& options) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseTrace(*text, path, options);
}

namespace {

void AppendTokens(std::span<const Token> v, bool* first, std::string* out) {
  char buf[16];
  for (Token t : v) {
    if (!*first) *out += ',';
    *first = false;
    const int n = std::snprintf(buf, sizeof(buf), "%d", t);
    out->append(buf, static_cast<size_t>(n));
  }
}

void AppendRequest(const std::string& session_id, int64_t turn_id, double ts,
                   const std::vector<std::span<const Token>>& input, std::span<const Token> output,
                   std::string* out) {
  size_t n_in = 0;
  for (const auto& piece : input) n_in += piece.size();
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", ts);
  *out += "{\"session_id\":";
  AppendJsonString(session_id, out);
  *out += ",\"turn_id\":" + std::to_string(turn_id) + ",\"ts\":" + buf +
          ",\"num_input_tokens\":" + std::to_string(n_in) +
          ",\"num_output_tokens\":" + std::to_string(output.size()) + ",\"input_tokens\":[";
  bool first = true;
  for (const auto& piece : input) AppendTokens(piece, &first, out);
  *out += "],\"output_tokens\":[";
  first = true;
  AppendTokens(output, &first, out);
  *out += "]}\n";
}

}  // namespace

std::string FormatTrace(const Trace& trace) {
  std::string out;
  for (const TraceRequest& r : trace.requests) {
    AppendRequest(r.session_id, r.turn_id, r.ts, {std::span<const Token>(r.input)}, r.output, &out);
  }
  return out;
}

Status WriteTrace(const std::string& path, const Trace& trace) {
  return WriteFile(path, FormatTrace(trace));
}

Result<std::unique_ptr<TraceWriter>> TraceWriter::Open(const std::string& path) {
  std::unique_ptr<TraceWriter> w(new TraceWriter());
  w->path_ = path;
  w->file_ = std::fopen(path.c_str(), "wb");
  if (w->file_ == nullptr) return Status::IoError("cannot create '" + path + "'");
  if (EndsWith(path, ".zst")) {
    ZSTD_CCtx* ctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, 3);
    w->zstd_ = ctx;
  }
  return w;
}

TraceWriter::~TraceWriter() {
  if (zstd_ != nullptr) ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(zstd_));
  if (file_ != nullptr) std::fclose(file_);
}

Status TraceWriter::Write(const std::string& session_id, int64_t turn_id, double ts,
                          const std::vector<std::span<const Token>>& input,
                          std::span<const Token> output) {
  if (file_ == nullptr) return Status::FailedPrecondition("trace writer is closed");
  AppendRequest(session_id, turn_id, ts, input, output, &buffer_);
  ++requests_;
  return buffer_.size() >= (1u << 22) ? Flush(false) : Status::Ok();
}

Status TraceWriter::Flush(bool end) {
  if (zstd_ == nullptr) {
    if (std::fwrite(buffer_.data(), 1, buffer_.size(), file_) != buffer_.size()) {
      return Status::IoError("cannot write '" + path_ + "'");
    }
    buffer_.clear();
    return Status::Ok();
  }
  auto* ctx = static_cast<ZSTD_CCtx*>(zstd_);
  std::string out(ZSTD_CStreamOutSize(), '\0');
  ZSTD_inBuffer in{buffer_.data(), buffer_.size(), 0};
  const ZSTD_EndDirective mode = end ? ZSTD_e_end : ZSTD_e_continue;
  for (;;) {
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    const size_t left = ZSTD_compressStream2(ctx, &o, &in, mode);
    if (ZSTD_isError(left)) return Status::IoError(path_ + ": zstd: " + ZSTD_getErrorName(left));
    if (std::fwrite(out.data(), 1, o.pos, file_) != o.pos) {
      return Status::IoError("cannot write '" + path_ + "'");
    }
    if (end ? left == 0 : in.pos == in.size) break;
  }
  buffer_.clear();
  return Status::Ok();
}

Status TraceWriter::Close() {
  if (file_ == nullptr) return Status::Ok();
  Status s = Flush(true);
  if (std::fclose(file_) != 0 && s.ok()) s = Status::IoError("cannot close '" + path_ + "'");
  file_ = nullptr;
  return s;
}

}  // namespace marconi::sim
static_assert(marconi::sim::kReadSlack >= simdjson::SIMDJSON_PADDING);
