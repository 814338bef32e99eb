#include "demo.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "marconi/alpha_tuner.h"
#include "marconi/policies.h"
#include "marconi/prefix_cache.h"

namespace marconi::tools {
namespace {

struct Request {
  double ts = 0;
  std::vector<Token> input, output;
};

std::vector<Token> RandomTokens(std::mt19937_64& rng, int64_t n) {
  std::uniform_int_distribution<Token> token(3, 31999);
  std::vector<Token> v(static_cast<size_t>(n));
  for (Token& t : v) t = token(rng);
  return v;
}

int64_t Between(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

// Chat sessions over a few shared system prompts, and long agent sessions whose context grows
// with every tool output: the two reuse patterns of the Marconi paper.
std::vector<Request> BuildWorkload(int sessions, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<Token>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(RandomTokens(rng, Between(rng, 300, 1500)));
  std::vector<Request> requests;
  for (int s = 0; s < sessions; ++s) {
    const bool agent = s % 4 == 3;
    std::vector<Token> history = agent ? RandomTokens(rng, Between(rng, 2000, 6000))
                                       : prompts[static_cast<size_t>(Between(rng, 0, 3))];
    double ts = 0.5 * s;
    const int64_t turns = agent ? Between(rng, 10, 25) : Between(rng, 2, 8);
    for (int64_t t = 0; t < turns; ++t) {
      const auto message =
          RandomTokens(rng, agent ? Between(rng, 200, 1500) : Between(rng, 20, 300));
      history.insert(history.end(), message.begin(), message.end());
      Request r;
      r.ts = ts;
      r.input = history;
      r.output = RandomTokens(rng, agent ? Between(rng, 30, 200) : Between(rng, 50, 400));
      history.insert(history.end(), r.output.begin(), r.output.end());
      requests.push_back(std::move(r));
      ts += agent ? 5.0 + static_cast<double>(Between(rng, 0, 50)) / 10
                  : static_cast<double>(Between(rng, 10, 60));
    }
  }
  std::stable_sort(requests.begin(), requests.end(),
                   [](const Request& a, const Request& b) { return a.ts < b.ts; });
  return requests;
}

struct Row {
  std::string name;
  CacheStats stats;
  double alpha = 0;
};

Result<Row> Serve(const std::string& name, const std::vector<Request>& requests,
                  const ModelSpec& model, int64_t capacity, const std::string& admission,
                  const std::string& eviction, bool tune) {
  auto adm = MakeAdmissionByName(admission);
  auto ev = MakeEvictionByName(eviction);
  if (!adm.ok()) return adm.status();
  if (!ev.ok()) return ev.status();
  PrefixCacheConfig config;
  config.capacity_bytes = capacity;
  auto cache = PrefixCache::Create(config, model, std::move(adm).value(), std::move(ev).value());
  if (!cache.ok()) return cache.status();
  std::unique_ptr<AlphaTuner> tuner;
  if (tune) {
    auto t = AlphaTuner::Create({});
    if (!t.ok()) return t.status();
    tuner = std::move(t).value();
  }
  for (const Request& r : requests) {
    auto h = (*cache)->BeginRequest(r.input, r.ts);
    if (!h.ok()) return h.status();
    if (Status s = (*cache)->CompleteRequest(std::move(h).value(), r.input, r.output, r.ts);
        !s.ok()) {
      return s;
    }
    if (tuner) {
      if (Status s = tuner->Observe(**cache, r.input, r.output, r.ts, r.ts); !s.ok()) return s;
    }
  }
  return Row{name, (*cache)->stats(), (*cache)->alpha()};
}

}  // namespace

int64_t ParseBytes(const std::string& text) {
  if (text == "inf" || text == "unlimited") return PrefixCacheConfig::kUnlimited;
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return -1;
  }
  std::string unit = text.substr(used);
  const std::pair<const char*, double> units[] = {{"", 1},
                                                  {"B", 1},
                                                  {"KB", 1e3},
                                                  {"MB", 1e6},
                                                  {"GB", 1e9},
                                                  {"TB", 1e12},
                                                  {"KiB", 1024.0},
                                                  {"MiB", 1048576.0},
                                                  {"GiB", 1073741824.0},
                                                  {"TiB", 1099511627776.0}};
  for (const auto& [name, scale] : units) {
    if (unit == name) {
      const double bytes = value * scale;
      if (!std::isfinite(bytes) || bytes < 1 || bytes >= 9.2e18) return -1;
      return static_cast<int64_t>(bytes);
    }
  }
  return -1;
}

int RunDemo(const DemoOptions& options) {
  auto model = ModelSpec::FromNameOrFile(options.model);
  if (!model.ok()) {
    std::fprintf(stderr, "marconi demo: %s\n", model.status().ToString().c_str());
    return 2;
  }
  const std::vector<Request> requests = BuildWorkload(options.sessions, options.seed);
  int64_t input_tokens = 0;
  for (const Request& r : requests) input_tokens += static_cast<int64_t>(r.input.size());
  // Default capacity: room for about 60K tokens of KV plus 16 states: enough contention for the
  // eviction policies to matter on this workload.
  const int64_t capacity = options.capacity_bytes > 0 ? options.capacity_bytes
                                                      : 60000 * model->KvBytesPerToken() +
                                                            16 * model->StateBytesPerCheckpoint();
  std::printf("%s", model->Describe().c_str());
  std::printf(
      "workload: %zu requests from %d synthetic sessions (chat over 4 shared system "
      "prompts, and agents), %lld input tokens; cache %.2f GB\n\n",
      requests.size(), options.sessions, static_cast<long long>(input_tokens),
      static_cast<double>(capacity) / 1e9);
  struct Setup {
    const char* name;
    const char* admission;
    const char* eviction;
    bool tune;
  };
  const Setup setups[] = {{"vLLM+ (block 32, LRU)", "block", "lru", false},
                          {"SGLang+ (judicious, LRU)", "judicious", "lru", false},
                          {"Marconi (judicious, FLOP-aware)", "judicious", "flop_aware", true}};
  std::printf("%-33s %9s %9s %11s %9s %11s %10s %6s\n", "policy", "tok hit", "req hit",
              "FLOPs saved", "peak GB", "ckpts adm.", "evictions", "alpha");
  for (const Setup& s : setups) {
    auto row = Serve(s.name, requests, *model, capacity, s.admission, s.eviction, s.tune);
    if (!row.ok()) {
      std::fprintf(stderr, "marconi demo: %s: %s\n", s.name, row.status().ToString().c_str());
      return 1;
    }
    const CacheStats& st = row->stats;
    std::printf("%-33s %8.2f%% %8.2f%% %10.2f%% %9.2f %11lld %10lld %6.1f\n", s.name,
                100 * st.token_hit_rate(), 100 * st.request_hit_rate(),
                100 * st.flops_saved / std::max(1.0, st.flops_without_cache),
                static_cast<double>(st.peak_bytes) / 1e9,
                static_cast<long long>(st.checkpoints_admitted),
                static_cast<long long>(st.evictions), row->alpha);
  }
  return 0;
}

}  // namespace marconi::tools
