// CacheListener: how an engine that holds the real bytes (KV slots, state buffers) learns what
// the PrefixCache dropped, so that it frees exactly what the cache's accounting says is gone.
#ifndef MARCONI_CACHE_LISTENER_H_
#define MARCONI_CACHE_LISTENER_H_

#include <cstdint>
#include <span>

#include "marconi/types.h"

namespace marconi {

// One eviction: the checkpoint after `path` (the tokens from the root to the evicted node) is
// gone, and with it the KV of path[kv_begin, path.size()) when the node was a leaf (kv_begin ==
// path.size() when only the state went and the KV stays, carried by the node's child).
struct EvictionEvent {
  std::span<const Token> path;
  int64_t kv_begin = 0;
};

class CacheListener {
 public:
  virtual ~CacheListener() = default;
  // Called once per evicted checkpoint, synchronously, on the thread that called Insert or
  // CompleteRequest, just before the cache drops the node. `event.path` is valid only
  // during the call. Must not call back into the cache. Must not throw.
  virtual void OnEvicted(const EvictionEvent& event) = 0;
};

}  // namespace marconi

#endif  // MARCONI_CACHE_LISTENER_H_
