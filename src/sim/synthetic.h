// Built-in deterministic synthetic workloads, used when no trace is given.
#ifndef MARCONI_SIM_SYNTHETIC_H_
#define MARCONI_SIM_SYNTHETIC_H_

#include <cstdint>

#include "sim/trace.h"

namespace marconi::sim {

// Many questions about a few long documents (QuALITY-like), all behind one shared 200-token
// instruction: request = instruction + document + question. Documents of 1K-12K tokens, 8-15
// questions each, a document every 5 s, its questions at exponential gaps of mean 2 s.
Trace SyntheticDocQa(int documents, uint64_t seed);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_SYNTHETIC_H_
