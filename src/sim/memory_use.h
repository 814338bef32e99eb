// Memory in use by a cache and the requests running next to it, by use. One struct for the
// serving model's budget invariant and for the engine emulations' pools.
#ifndef MARCONI_SIM_MEMORY_USE_H_
#define MARCONI_SIM_MEMORY_USE_H_

#include <cstdint>

namespace marconi::sim {

struct MemoryUse {
  int64_t running_kv = 0;     // KV of running requests' own (not cache-shared) tokens
  int64_t running_state = 0;  // their state slots
  int64_t cached_kv = 0;      // the cache's KV (a running request's hit prefix is here, pinned)
  int64_t cached_state = 0;   // the cache's checkpoints
  int64_t total() const { return running_kv + running_state + cached_kv + cached_state; }
};

}  // namespace marconi::sim

#endif  // MARCONI_SIM_MEMORY_USE_H_
