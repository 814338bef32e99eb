#include "sim/trace.h"

#include <simdjson.h>
#include <zstd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string_view>
#include <unordered_map>

#include "sim/file_io.h"

namespace marconi::sim {
namespace {

using simdjson::ondemand::json_type;

// Thrown inside this file only; turned into a Status naming file and line.
struct LineError {
  std::string what;
  simdjson::error_code code = simdjson::SUCCESS;  // when simdjson found the fault
};

constexpr std::string_view kBom = "\xEF\xBB\xBF";

// simdjson's error codes in words a trace writer can act on.
std::string Explain(simdjson::error_code e) {
  switch (e) {
    case simdjson::TAPE_ERROR:
      return "malformed JSON (a missing or extra comma, colon, bracket or brace)";
    case simdjson::INCOMPLETE_ARRAY_OR_OBJECT:
      return "truncated: an object or array is not closed";
    case simdjson::UNCLOSED_STRING:
      return "truncated: a string is not closed";
    case simdjson::NUMBER_ERROR:
      return "malformed or out-of-range number";
    case simdjson::NUMBER_OUT_OF_RANGE:
      return "number out of range";
    case simdjson::INCORRECT_TYPE:
      return "wrong type";
    case simdjson::UTF8_ERROR:
      return "invalid UTF-8";
    case simdjson::STRING_ERROR:
      return "invalid string escape";
    case simdjson::T_ATOM_ERROR:
    case simdjson::F_ATOM_ERROR:
    case simdjson::N_ATOM_ERROR:
      return "invalid literal (expected true, false or null)";
    case simdjson::TRAILING_CONTENT:
      return "trailing content after the JSON object";
    default:
      return simdjson::error_message(e);
  }
}

void Check(simdjson::error_code e, const char* field) {
  if (!e) return;
  throw LineError{field ? std::string("field '") + field + "': " + Explain(e) : Explain(e), e};
}

// An integer field: a number that is not one (too large, fractional) is said so.
int64_t GetInt(simdjson::ondemand::value v, const char* field) {
  int64_t out = 0;
  if (auto e = v.get_int64().get(out)) {
    json_type type = json_type::null;
    if (!v.type().get(type) && type == json_type::number) {
      throw LineError{std::string("field '") + field + "': not an integer in 64-bit range", e};
    }
    Check(e, field);
  }
  return out;
}

// simdjson reports trailing content after a complete object as a structural error; tell it from
// truncation by matching braces (strings skipped). Returns the 1-based column of the first
// non-blank byte after the object, or 0 if the object never closes.
size_t EndOfObject(const char* data, size_t len) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < len; ++i) {
    const char c = data[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if ((c == '}' || c == ']') && --depth == 0) {
      size_t j = i + 1;
      while (j < len && std::isspace(static_cast<unsigned char>(data[j]))) ++j;
      return j + 1;
    }
  }
  return 0;
}

void ReadTokens(simdjson::ondemand::value v, const char* field, std::vector<Token>* out) {
  simdjson::ondemand::array a;
  Check(v.get_array().get(a), field);
  for (auto item : a) {
    int64_t t = 0;
    if (item.get_int64().get(t)) {  // the fast path reads the integer; only a failure asks why
      simdjson::ondemand::value tv;
      Check(item.get(tv), field);
      json_type type = json_type::null;
      Check(tv.type().get(type), field);
      if (type != json_type::number) {
        throw LineError{std::string("field '") + field + "': a token is not a number"};
      }
      t = GetInt(tv, field);
    }
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
  if (std::string_view(data, len).starts_with(kBom)) {
    throw LineError{
        "UTF-8 byte order mark (BOM) inside the file (only one at its start is skipped)"};
  }
  if (data[0] != '{') {
    throw LineError{std::string("not a JSON object (the line starts with '") + data[0] + "')"};
  }
  simdjson::ondemand::document doc;
  if (auto e = parser.iterate(data, len, capacity).get(doc)) throw LineError{Explain(e), e};
  simdjson::ondemand::object obj;
  if (auto e = doc.get_object().get(obj)) throw LineError{Explain(e), e};
  bool have_ts = false, have_input = false, have_session = false, have_output = false;
  bool have_num_input = false, have_num_output = false;
  int64_t num_input = 0, num_output = 0;
  for (auto field : obj) {
    std::string_view key;
    Check(field.unescaped_key().get(key), nullptr);
    simdjson::ondemand::value v;
    Check(field.value().get(v), std::string(key).c_str());
    if (key == "ts") {
      Check(v.get_double().get(r.ts), "ts");
      have_ts = true;
    } else if (key == "input_tokens") {
      ReadTokens(v, "input_tokens", &r.input);
      have_input = true;
    } else if (key == "output_tokens") {
      ReadTokens(v, "output_tokens", &r.output);
      have_output = true;
    } else if (key == "session_id") {
      json_type type = json_type::null;
      Check(v.type().get(type), "session_id");
      if (type == json_type::string) {
        std::string_view s;
        Check(v.get_string().get(s), "session_id");
        r.session_id = std::string(s);
      } else {
        r.session_id = std::to_string(GetInt(v, "session_id"));
      }
      have_session = true;
    } else if (key == "turn_id") {
      r.turn_id = GetInt(v, "turn_id");
    } else if (key == "num_input_tokens") {
      num_input = GetInt(v, "num_input_tokens");
      have_num_input = true;
    } else if (key == "num_output_tokens") {
      num_output = GetInt(v, "num_output_tokens");
      have_num_output = true;
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
  if (have_num_input && num_input < 0) {
    throw LineError{"field 'num_input_tokens' is negative (" + std::to_string(num_input) + ")"};
  }
  if (have_num_output && num_output < 0) {
    throw LineError{"field 'num_output_tokens' is negative (" + std::to_string(num_output) + ")"};
  }
  if (have_num_input && num_input != static_cast<int64_t>(r.input.size())) {
    throw LineError{"num_input_tokens " + std::to_string(num_input) + " but input_tokens has " +
                    std::to_string(r.input.size())};
  }
  if (have_num_output && num_output != static_cast<int64_t>(r.output.size())) {
    throw LineError{"num_output_tokens " + std::to_string(num_output) +
                    (have_output ? " but output_tokens has " + std::to_string(r.output.size())
                                 : std::string(" but there is no output_tokens array"))};
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
  size_t start = 0;
  if (std::string_view(base, size).starts_with(kBom)) start = kBom.size();  // documented: skipped
  for (size_t pos = start; pos < size;) {
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
          std::string what = err.what;
          if (err.code == simdjson::INCOMPLETE_ARRAY_OR_OBJECT ||
              err.code == simdjson::TAPE_ERROR) {
            const size_t close = EndOfObject(base + b, e - b);
            if (close > 0 && close <= e - b) {
              what =
                  "trailing content after the JSON object (column " + std::to_string(close) + ")";
            }
          }
          return Status::ParseError(source + ":" + std::to_string(line) + ": " + what);
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
  // Turns of one session must be in time order in the file: sorting them would reorder the
  // conversation. Other requests out of order are sorted, and counted for a warning.
  std::unordered_map<std::string_view, const TraceRequest*> last;
  double latest = -std::numeric_limits<double>::infinity();
  for (const TraceRequest& r : trace.requests) {
    auto [it, fresh] = last.emplace(r.session_id, &r);
    if (!fresh) {
      const TraceRequest& prev = *it->second;
      if (r.ts < prev.ts) {
        char ts[80];
        std::snprintf(ts, sizeof ts, "ts %.17g is earlier than ts %.17g", r.ts, prev.ts);
        return Status::ParseError(source + ":" + std::to_string(r.line) + ": session '" +
                                  r.session_id + "': " + ts + " of its previous turn (line " +
                                  std::to_string(prev.line) +
                                  "); a session's turns must be in time order");
      }
      it->second = &r;
    }
    if (r.ts < latest) ++trace.reordered_requests;
    latest = std::max(latest, r.ts);
  }
  SortByTime(&trace);
  return trace;
}

void SortByTime(Trace* trace) {
  std::stable_sort(trace->requests.begin(), trace->requests.end(),
                   [](const TraceRequest& a, const TraceRequest& b) { return a.ts < b.ts; });
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
