// Fuzzes PrefixCache with call sequences decoded from the input: BeginRequest, CompleteRequest,
// Insert, Lookup, SetAlpha, Clone, dropped requests, over several admission and eviction
// policies and budgets. CheckInvariants runs after every call (and on clones); a violation, an
// unexpected error code, or a rejected call that changed the cache aborts.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "marconi/policies.h"
#include "marconi/prefix_cache.h"

namespace marconi::fuzz {
namespace {

// Reads the fuzz input as a stream of small numbers; zeros once it is exhausted.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  // A number in [0, n).
  int64_t Below(int64_t n) { return n <= 1 ? 0 : Byte() % n; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

ModelSpec Model(int64_t which) {
  // KV 4 bytes per token and a 192-byte state, or a pure-SSM model (no KV at all).
  if (which == 0) {
    return ModelSpec::Create("tiny", 8, 2,
                             {AttentionLayer{1, 1, 1}, PaperSsmLayer{2, 4}, MlpLayer{32, false}})
        .value();
  }
  return ModelSpec::Create("ssm", 8, 2, {Mamba2Layer{2, 4, 4, 1, 4}, MlpLayer{16, true}}).value();
}

std::unique_ptr<AdmissionPolicy> Admission(Input& in) {
  switch (in.Below(5)) {
    case 0:
      return MakeJudiciousAdmission();
    case 1:
      return MakeBlockAdmission({1 + in.Below(8)}).value();
    case 2:
      return MakeLastTokenAdmission();
    case 3: {
      SparseAdmissionConfig c;
      c.chunk_tokens = 1 + in.Below(4);
      c.max_tokens = c.chunk_tokens * (1 + in.Below(16));
      c.budget = in.Below(4);
      c.resolve_every = 1 + in.Below(4);
      c.min_observations = in.Below(4);
      c.relative = in.Below(2) == 1;
      c.relative_bins = 1 + in.Below(16);
      return MakeSparseAdmission(c).value();
    }
    default: {
      HeuristicPlacementAdmissionConfig c;
      c.kind = static_cast<HeuristicPlacementAdmissionConfig::Kind>(in.Below(4));
      c.budget = in.Below(4);
      c.block_tokens = 1 + in.Below(8);
      c.chunk_tokens = 1 + in.Below(4);
      c.last_token = in.Below(2) == 1;
      return MakeHeuristicPlacementAdmission(c).value();
    }
  }
}

std::unique_ptr<EvictionPolicy> Eviction(Input& in) {
  switch (in.Below(3)) {
    case 0:
      return MakeLruEviction();
    case 1: {
      const double alpha = static_cast<double>(in.Below(8)) / 2;
      const auto recency = in.Below(2) == 0 ? FlopAwareEvictionConfig::Recency::kInverseRequests
                                            : FlopAwareEvictionConfig::Recency::kLinearTime;
      return MakeFlopAwareEviction({alpha, recency}).value();
    }
    default:
      return MakeGdsfEviction();
  }
}

void Check(const PrefixCache& cache, const char* after) {
  const Status s = cache.CheckInvariants();
  FUZZ_CHECK(s.ok(), std::string("after ") + after + ": " + s.ToString());
}

// The content counters: a rejected call must leave them as they were.
std::vector<int64_t> Content(const PrefixCache& cache) {
  const CacheStats& s = cache.stats();
  return {s.requests, s.cached_tokens, s.checkpoints, s.nodes,
          s.kv_bytes, s.state_bytes,   s.inserts,     s.evictions};
}

void CheckRejected(const Status& s, const std::vector<int64_t>& before, const PrefixCache& cache,
                   const char* call) {
  if (s.code() == StatusCode::kInvalidArgument) {
    FUZZ_CHECK(Content(cache) == before, std::string(call) + " rejected but changed the cache");
  } else {
    // Inserted, but pinned nodes keep the cache over its capacity.
    FUZZ_CHECK(s.ok() || s.code() == StatusCode::kResourceExhausted,
               std::string(call) + ": " + s.ToString());
  }
}

struct InFlight {
  std::vector<Token> input;
  RequestHandle handle;
};

void Run(Input& in) {
  const ModelSpec model = Model(in.Below(2));
  const int64_t unit = model.KvBytesPerToken() + model.StateBytesPerCheckpoint();
  PrefixCacheConfig config;
  config.capacity_bytes = unit + in.Below(64) * 48;
  if (in.Below(4) == 0) config.kv_capacity_bytes = model.KvBytesPerToken() + 8 * (1 + in.Below(64));
  if (in.Below(4) == 0)
    config.state_capacity_bytes = model.StateBytesPerCheckpoint() * (1 + in.Below(8));
  if (in.Below(4) == 0) config.page_size = 1 + in.Below(4);
  auto created = PrefixCache::Create(config, model, Admission(in), Eviction(in));
  FUZZ_CHECK(created.ok(), created.status().ToString());
  std::unique_ptr<PrefixCache> cache = std::move(created).value();
  Check(*cache, "Create");

  std::vector<std::vector<Token>> seen;  // earlier sequences: new ones extend their prefixes
  std::vector<InFlight> flight;
  double now = 0;
  // A sequence over a 4-token alphabet, often continuing an earlier one.
  auto sequence = [&]() {
    std::vector<Token> s;
    if (!seen.empty() && in.Below(4) != 0) {
      const auto& base = seen[static_cast<size_t>(in.Below(static_cast<int64_t>(seen.size())))];
      s.assign(base.begin(), base.begin() + in.Below(static_cast<int64_t>(base.size()) + 1));
    }
    const int64_t extra = in.Below(24);
    for (int64_t i = 0; i < extra; ++i) s.push_back(static_cast<Token>(in.Below(4)));
    if (seen.size() < 64 && !s.empty()) seen.push_back(s);
    return s;
  };
  // Mostly non-decreasing time; sometimes going back or not finite, which must be rejected.
  auto time = [&]() {
    switch (in.Below(16)) {
      case 0:
        return now - 1;
      case 1:
        return std::numeric_limits<double>::quiet_NaN();
      default:
        now += static_cast<double>(in.Below(4));
        return now;
    }
  };

  for (int steps = 0; steps < 400 && !in.done(); ++steps) {
    const std::vector<int64_t> before = Content(*cache);
    switch (in.Below(9)) {
      case 0: {  // BeginRequest
        if (flight.size() >= 4) break;
        std::vector<Token> input = sequence();
        auto h = cache->BeginRequest(input, time());
        if (h.ok()) {
          FUZZ_CHECK(h->lookup().reusable_tokens <= h->lookup().matched_tokens &&
                         h->lookup().matched_tokens <= static_cast<int64_t>(input.size()),
                     "lookup bounds");
          flight.push_back({std::move(input), std::move(h).value()});
        } else {
          FUZZ_CHECK(h.status().code() == StatusCode::kInvalidArgument, h.status().ToString());
          FUZZ_CHECK(Content(*cache) == before, "BeginRequest rejected but changed the cache");
        }
        Check(*cache, "BeginRequest");
        break;
      }
      case 1: {  // CompleteRequest
        if (flight.empty()) break;
        const size_t i = static_cast<size_t>(in.Below(static_cast<int64_t>(flight.size())));
        InFlight f = std::move(flight[i]);
        flight.erase(flight.begin() + static_cast<std::ptrdiff_t>(i));
        std::vector<Token> output;
        for (int64_t k = in.Below(12); k > 0; --k)
          output.push_back(static_cast<Token>(in.Below(4)));
        const Status s = cache->CompleteRequest(std::move(f.handle), f.input, output, time());
        CheckRejected(s, before, *cache, "CompleteRequest");
        Check(*cache, "CompleteRequest");
        break;
      }
      case 2:
      case 3: {  // Insert, with checkpoints mostly valid
        const std::vector<Token> seq = sequence();
        std::vector<int64_t> checkpoints;
        int64_t pos = 0;
        for (int64_t k = in.Below(5); k > 0; --k) {
          pos += in.Below(8) == 0 ? 0 : 1 + in.Below(8);  // sometimes a repeated position
          checkpoints.push_back(pos);
        }
        if (!checkpoints.empty() && in.Below(2) == 0) {
          checkpoints.back() = static_cast<int64_t>(seq.size());
        }
        std::vector<uint64_t> payloads;  // sometimes one per position, sometimes a wrong count
        for (int64_t k = in.Below(3) == 0 ? static_cast<int64_t>(checkpoints.size()) + in.Below(2)
                                          : 0;
             k > 0; --k) {
          payloads.push_back(static_cast<uint64_t>(in.Below(16)));
        }
        const Status s = cache->Insert(seq, checkpoints, time(), payloads);
        CheckRejected(s, before, *cache, "Insert");
        Check(*cache, "Insert");
        break;
      }
      case 4: {  // Lookup: a pure query
        const std::vector<Token> seq = sequence();
        const LookupResult r = cache->Lookup(seq);
        FUZZ_CHECK(r.reusable_tokens <= r.matched_tokens &&
                       r.matched_tokens <= static_cast<int64_t>(seq.size()) &&
                       (r.reusable_tokens == 0) == (r.resume_node == kNoNode),
                   "lookup result");
        FUZZ_CHECK(Content(*cache) == before, "Lookup changed the cache");
        break;
      }
      case 5: {  // SetAlpha, sometimes invalid
        const int64_t k = in.Below(10);
        const double alpha = k == 8   ? -1.0
                             : k == 9 ? std::numeric_limits<double>::infinity()
                                      : static_cast<double>(k) / 4;
        const Status s = cache->SetAlpha(alpha);
        FUZZ_CHECK(s.ok() || s.code() == StatusCode::kInvalidArgument ||
                       s.code() == StatusCode::kUnimplemented,
                   s.ToString());
        if (s.ok()) FUZZ_CHECK(cache->alpha() == alpha, "alpha set");
        Check(*cache, "SetAlpha");
        break;
      }
      case 6: {  // Clone: an independent copy, without pins
        std::unique_ptr<PrefixCache> copy = cache->Clone();
        Check(*copy, "Clone");
        FUZZ_CHECK(Content(*copy) == before, "a clone has the same content");
        const std::vector<Token> seq = sequence();
        const int64_t page = cache->config().page_size;
        const int64_t n = static_cast<int64_t>(seq.size()) / page * page;  // a valid position
        if (n > 0) {
          const Status s = copy->Insert(seq, std::vector<int64_t>{n}, now);
          FUZZ_CHECK(s.ok() || s.code() == StatusCode::kResourceExhausted, s.ToString());
          Check(*copy, "Insert into a clone");
        }
        FUZZ_CHECK(Content(*cache) == before, "changing a clone changed the original");
        Check(*cache, "Clone");
        if (flight.empty() && in.Below(2) == 0) cache = std::move(copy);  // go on with the copy
        break;
      }
      case 7: {  // InsertChunk: positions mostly past the resume point, sometimes not
        if (flight.empty()) break;
        InFlight& f = flight[static_cast<size_t>(in.Below(static_cast<int64_t>(flight.size())))];
        const int64_t resume = f.handle.resume_tokens();
        const int64_t computed = resume + in.Below(12) - 1;
        std::vector<int64_t> captured;
        int64_t pos = resume + in.Below(3) - 1;
        for (int64_t k = in.Below(4); k > 0; --k) {
          pos += in.Below(6) == 0 ? 0 : 1 + in.Below(4);
          captured.push_back(pos);
        }
        const bool wrong_input = in.Below(8) == 0;
        std::vector<Token> input = f.input;
        if (wrong_input) input.push_back(0);
        const Status s = cache->InsertChunk(f.handle, input, computed, captured, time());
        if (!s.ok() && s.code() != StatusCode::kResourceExhausted) {
          FUZZ_CHECK(f.handle.resume_tokens() == resume, "InsertChunk rejected but moved the pin");
        } else if (!captured.empty()) {
          FUZZ_CHECK(f.handle.resume_tokens() == captured.back() && f.handle.holds_lease(),
                     "InsertChunk moves the pin to its deepest state");
          FUZZ_CHECK(!wrong_input, "InsertChunk accepted another input length");
        }
        CheckRejected(s, before, *cache, "InsertChunk");
        Check(*cache, "InsertChunk");
        break;
      }
      default: {  // A request dropped without completing: its lease is released.
        if (flight.empty()) break;
        flight.erase(flight.begin() +
                     static_cast<std::ptrdiff_t>(in.Below(static_cast<int64_t>(flight.size()))));
        Check(*cache, "dropping a request");
      }
    }
  }
  flight.clear();  // leases must not outlive the cache
  Check(*cache, "the end");
}

}  // namespace
}  // namespace marconi::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  marconi::fuzz::Input in(data, size);
  marconi::fuzz::Run(in);
  return 0;
}
