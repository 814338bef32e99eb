// Basic vocabulary types shared by the public API.
#ifndef MARCONI_TYPES_H_
#define MARCONI_TYPES_H_

#include <cstdint>
#include <limits>

namespace marconi {

// A token id. Any int32 value is a valid token; the cache never interprets it.
using Token = int32_t;

// Index of a node in the cache's arena. Stable for as long as the node lives; a node held by a
// lease is never removed. kNoNode means "none".
using NodeId = int32_t;
inline constexpr NodeId kNoNode = -1;

// Time as the caller defines it (seconds of a trace, or a logical counter). The core never reads
// a wall clock, so every run is reproducible. Must be finite and must not decrease across the
// calls made on one cache.
using Timestamp = double;

}  // namespace marconi

#endif  // MARCONI_TYPES_H_
