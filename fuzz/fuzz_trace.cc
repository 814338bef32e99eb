// Fuzzes the trace JSONL parser (sim::ParseTrace): any input is either a trace or a kParseError
// naming the source; a parsed trace is well formed and survives a FormatTrace round trip exactly.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "sim/trace.h"

namespace marconi::fuzz {
namespace {

void CheckTrace(const sim::Trace& t) {
  FUZZ_CHECK(!t.requests.empty(), "a parsed trace has requests");
  for (size_t i = 0; i < t.requests.size(); ++i) {
    const sim::TraceRequest& r = t.requests[i];
    FUZZ_CHECK(std::isfinite(r.ts), "finite timestamps");
    FUZZ_CHECK(!r.input.empty(), "non-empty inputs");
    FUZZ_CHECK(i == 0 || t.requests[i - 1].ts <= r.ts, "sorted by timestamp");
  }
}

void Run(const std::string& text, bool skip_bad_lines) {
  const auto r = sim::ParseTrace(text, "fuzz.jsonl", {skip_bad_lines});
  if (!r.ok()) {
    FUZZ_CHECK(r.status().code() == StatusCode::kParseError, r.status().ToString());
    FUZZ_CHECK(StartsWith(r.status().message(), "fuzz.jsonl"), r.status().message());
    return;
  }
  CheckTrace(*r);
  // Formatting and parsing again gives the same requests, in the same order.
  const std::string again = sim::FormatTrace(*r);
  const auto r2 = sim::ParseTrace(again, "again.jsonl");
  FUZZ_CHECK(r2.ok(), r2.status().ToString());
  FUZZ_CHECK(r2->requests.size() == r->requests.size(), "round trip keeps every request");
  for (size_t i = 0; i < r->requests.size(); ++i) {
    const sim::TraceRequest& a = r->requests[i];
    const sim::TraceRequest& b = r2->requests[i];
    FUZZ_CHECK(a.session_id == b.session_id && a.turn_id == b.turn_id && a.ts == b.ts &&
                   a.input == b.input && a.output == b.output,
               "round trip of request " + std::to_string(i));
  }
}

}  // namespace
}  // namespace marconi::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // Without spare capacity (the parser pads a copy) and with it (the parser reads in place).
  marconi::fuzz::Run(text, false);
  std::string padded;
  padded.reserve(size + 128);
  padded.assign(text);
  marconi::fuzz::Run(padded, true);
  return 0;
}
