#include "sim/serving/router.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <sstream>
#include <unordered_map>

namespace marconi::sim::serving {
namespace {

// Request i to replica i mod N.
class RoundRobin : public Router {
 public:
  size_t Route(const RouteQuery&, std::span<const ReplicaView> replicas) override {
    return next_++ % replicas.size();
  }

 private:
  size_t next_ = 0;
};

std::vector<size_t> All(size_t n) {
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
}

// Fewest outstanding requests (waiting + running), ties to the lower index.
class LeastLoadedRouter : public Router {
 public:
  size_t Route(const RouteQuery&, std::span<const ReplicaView> replicas) override {
    return LeastLoaded(replicas, All(replicas.size()));
  }
};

// A session's requests go where its first went; a new session goes to the least loaded.
class SessionAffinity : public Router {
 public:
  size_t Route(const RouteQuery& q, std::span<const ReplicaView> replicas) override {
    const auto it = home_.find(std::string(q.session));
    if (it != home_.end()) return it->second;
    const size_t r = LeastLoaded(replicas, All(replicas.size()));
    home_.emplace(std::string(q.session), r);
    return r;
  }

 private:
  std::unordered_map<std::string, size_t> home_;
};

// The replica maximizing `score` of its cache's Peek of the input, ties to the least loaded.
template <int64_t EngineLookup::*kScore>
class LongestPrefix : public Router {
 public:
  size_t Route(const RouteQuery& q, std::span<const ReplicaView> replicas) override {
    int64_t best = -1;
    std::vector<size_t> tied;
    for (size_t r = 0; r < replicas.size(); ++r) {
      const int64_t s = replicas[r].cache != nullptr ? replicas[r].cache->Peek(q.input).*kScore : 0;
      if (s > best) best = s, tied.clear();
      if (s == best) tied.push_back(r);
    }
    return LeastLoaded(replicas, tied);
  }
};

// NVIDIA Dynamo's KV router cost, in tokens (its blocks' size cancels): the prefill the replica
// would have to compute, its queue's and this request's past the overlap, weighted by
// kv-overlap-score-weight (1, Dynamo's default), plus its active KV with this request's. The
// least cost wins, ties to the least loaded. `kOverlap` is the attention-hit depth (Dynamo's
// overlap) or the reusable depth (what a hybrid model actually skips).
template <int64_t EngineLookup::*kOverlap>
class OverlapAgainstLoad : public Router {
 public:
  size_t Route(const RouteQuery& q, std::span<const ReplicaView> replicas) override {
    constexpr int64_t kWeight = 1;
    const int64_t n = static_cast<int64_t>(q.input.size());
    int64_t best = std::numeric_limits<int64_t>::max();
    std::vector<size_t> tied;
    for (size_t r = 0; r < replicas.size(); ++r) {
      const ReplicaView& v = replicas[r];
      const int64_t overlap = v.cache != nullptr ? v.cache->Peek(q.input).*kOverlap : 0;
      const int64_t cost = kWeight * (v.prefill_tokens + n - overlap) + v.active_tokens + n;
      if (cost < best) best = cost, tied.clear();
      if (cost == best) tied.push_back(r);
    }
    return LeastLoaded(replicas, tied);
  }
};

std::unique_ptr<Router> MakeRoundRobin() { return std::make_unique<RoundRobin>(); }
std::unique_ptr<Router> MakeLeastLoaded() { return std::make_unique<LeastLoadedRouter>(); }
std::unique_ptr<Router> MakeSession() { return std::make_unique<SessionAffinity>(); }
std::unique_ptr<Router> MakePrefix() {
  return std::make_unique<LongestPrefix<&EngineLookup::attention_hit_tokens>>();
}
std::unique_ptr<Router> MakePrefixLoad() {
  return std::make_unique<OverlapAgainstLoad<&EngineLookup::attention_hit_tokens>>();
}
std::unique_ptr<Router> MakeStateLoad() {
  return std::make_unique<OverlapAgainstLoad<&EngineLookup::reusable_tokens>>();
}
std::unique_ptr<Router> MakeState() {
  return std::make_unique<LongestPrefix<&EngineLookup::reusable_tokens>>();
}

constexpr RouterSpec kRouters[] = {
    {"round-robin", "request i to replica i mod N", MakeRoundRobin},
    {"least-loaded", "fewest outstanding requests (waiting + running), ties to the lower index",
     MakeLeastLoaded},
    {"session",
     "session affinity: a session's requests to the replica of its first (placed "
     "least-loaded)",
     MakeSession},
    {"prefix",
     "the longest cached attention prefix (the attention-hit depth, as NVIDIA "
     "Dynamo and llm-d), ties least-loaded",
     MakePrefix},
    {"state",
     "the longest reusable prefix, counting only positions with a stored state "
     "(the reusable depth), ties least-loaded",
     MakeState},
    {"prefix-load",
     "least prefill to compute (queued + this request's past the cached attention prefix) "
     "plus active KV, NVIDIA Dynamo's cost with weight 1, ties least-loaded",
     MakePrefixLoad},
    {"state-load",
     "as prefix-load, with the reusable prefix (positions with a stored state) as the overlap",
     MakeStateLoad},
};

}  // namespace

std::span<const RouterSpec> Routers() { return kRouters; }

std::string RouterNames() {
  std::string s;
  for (const RouterSpec& r : kRouters) s += (s.empty() ? "" : ", ") + std::string(r.name);
  return s;
}

Result<std::unique_ptr<Router>> MakeRouter(std::string_view name) {
  for (const RouterSpec& r : kRouters) {
    if (name == r.name) return r.make();
  }
  return Status::InvalidArgument("unknown router '" + std::string(name) +
                                 "' (routers: " + RouterNames() + ", or all)");
}

Result<std::vector<std::string>> ParseRouters(std::string_view text) {
  std::vector<std::string> out;
  if (text == "all") {
    for (const RouterSpec& r : kRouters) out.emplace_back(r.name);
    return out;
  }
  std::stringstream in{std::string(text)};
  std::string item;
  while (std::getline(in, item, ',')) {
    if (auto made = MakeRouter(item); !made.ok()) return made.status();
    if (std::find(out.begin(), out.end(), item) != out.end()) {
      return Status::InvalidArgument("router '" + item + "' given twice");
    }
    out.push_back(item);
  }
  if (out.empty()) {
    return Status::InvalidArgument("no router given (routers: " + RouterNames() + ", or all)");
  }
  return out;
}

size_t LeastLoaded(std::span<const ReplicaView> replicas, std::span<const size_t> candidates) {
  size_t best = candidates.front();
  for (size_t r : candidates) {
    if (replicas[r].outstanding < replicas[best].outstanding) best = r;
  }
  return best;
}

}  // namespace marconi::sim::serving
