// Fuzzes the config.json loader (ModelSpec::FromHfConfigJson): any input is a model or a
// kParseError naming the source; a model's costs never overflow for any token count up to
// ModelSpec::kMaxTokens.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_util.h"
#include "marconi/model_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using marconi::ModelSpec;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto r = ModelSpec::FromHfConfigJson(text, "fuzz.json");
  if (!r.ok()) {
    FUZZ_CHECK(r.status().code() == marconi::StatusCode::kParseError, r.status().ToString());
    FUZZ_CHECK(marconi::fuzz::StartsWith(r.status().message(), "fuzz.json"), r.status().message());
    return 0;
  }
  const int64_t kv = r->KvBytesPerToken(), state = r->StateBytesPerCheckpoint();
  FUZZ_CHECK(kv >= 0 && kv <= ModelSpec::kMaxBytesPerTokenOrCheckpoint, std::to_string(kv));
  FUZZ_CHECK(state >= 0 && state <= ModelSpec::kMaxBytesPerTokenOrCheckpoint,
             std::to_string(state));
  FUZZ_CHECK(static_cast<int64_t>(r->layers().size()) <= ModelSpec::kMaxLayers, "layer count");
  const double most = r->PrefillFlops(ModelSpec::kMaxTokens, ModelSpec::kMaxTokens);
  FUZZ_CHECK(std::isfinite(most) && most > 0, std::to_string(most));
  FUZZ_CHECK(r->FlopsSaved(ModelSpec::kMaxTokens, ModelSpec::kMaxTokens) >= 0, "saved >= 0");
  FUZZ_CHECK(!r->Describe().empty(), "describe");
  return 0;
}
