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
// `payload` is the engine's handle of the evicted state, as given when it was stored (0 if none).
struct EvictionEvent {
  std::span<const Token> path;
  int64_t kv_begin = 0;
  uint64_t payload = 0;
};

// A state the engine offered with a payload was already cached with another: the cache keeps the
// stored one (`kept`, which lookups keep returning) and did not adopt `payload`, whose bytes the
// engine may free now. Nothing else changes: the KV of `path` is the cache's either way.
struct NotAdoptedEvent {
  std::span<const Token> path;  // the tokens before the state
  uint64_t payload = 0;         // offered, not stored
  uint64_t kept = 0;            // stored, still live
};

class CacheListener {
 public:
  virtual ~CacheListener() = default;
  // Called once per evicted checkpoint, synchronously, on the thread that called Insert,
  // InsertChunk or CompleteRequest, just before the cache drops the node. `event.path` is valid
  // only during the call. Must not call back into the cache. Must not throw.
  virtual void OnEvicted(const EvictionEvent& event) = 0;
  // Called, under the same rules, once per state offered with a payload (Insert, InsertChunk or
  // CompleteRequest with `payloads`) at a position already holding a state with another payload.
  // Offering the stored payload again is a refresh, not reported. An engine that passes payloads
  // must override this, or leak what the cache did not adopt; others can ignore it.
  virtual void OnNotAdopted(const NotAdoptedEvent& event) { (void)event; }
};

}  // namespace marconi

#endif  // MARCONI_CACHE_LISTENER_H_
