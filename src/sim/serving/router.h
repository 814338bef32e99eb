// Routers: which replica serves an arriving request (`marconi sim --serving --replicas N
// --router R`). One class per router behind one interface, and one table of them (names, help,
// errors and `--router all` derive from it). Routers read the replicas' caches through the pure
// ServedCache::Peek only: routing changes nothing.
#ifndef MARCONI_SIM_SERVING_ROUTER_H_
#define MARCONI_SIM_SERVING_ROUTER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "marconi/prefix_cache.h"
#include "marconi/status.h"
#include "sim/serving/served_cache.h"

namespace marconi::sim::serving {

// What a router sees of one replica when a request arrives.
struct ReplicaView {
  const ServedCache* cache = nullptr;  // its cache side (Peek: zeros without a cache)
  // Requests routed to it and not finished (waiting or running): the load of least-loaded and
  // the tie-break of the cache-aware routers.
  int64_t outstanding = 0;
  // Prefill tokens it has still to compute: running requests' prefill left, and waiting
  // requests' whole prefill (their hit is known only at their admission).
  int64_t prefill_tokens = 0;
  // KV tokens its running requests hold or share (their context): its decode load.
  int64_t active_tokens = 0;
};

struct RouteQuery {
  size_t request = 0;  // index in the trace
  std::span<const Token> input;
  std::string_view session;
};

class Router {
 public:
  virtual ~Router() = default;
  // The replica (an index into `replicas`, which is never empty) that serves `query`.
  virtual size_t Route(const RouteQuery& query, std::span<const ReplicaView> replicas) = 0;
};

struct RouterSpec {
  const char* name;
  const char* help;
  std::unique_ptr<Router> (*make)();
};

// Every router, in the order `--router all` runs them.
std::span<const RouterSpec> Routers();
// "round-robin, least-loaded, ..."
std::string RouterNames();
// kInvalidArgument naming the valid routers for an unknown name.
Result<std::unique_ptr<Router>> MakeRouter(std::string_view name);
// "all" or comma-separated names, in the order given; kInvalidArgument for an unknown or
// repeated name or an empty list.
Result<std::vector<std::string>> ParseRouters(std::string_view text);

// The least loaded among `candidates` (fewest outstanding requests, ties to the lower index).
size_t LeastLoaded(std::span<const ReplicaView> replicas, std::span<const size_t> candidates);

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_ROUTER_H_
