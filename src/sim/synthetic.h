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

// Multi-turn chat over 4 shared system prompts (300-1500 tokens; 2-8 turns, user messages of
// 20-300 tokens, answers of 50-400, 10-60 s apart) and, every 4th session, a coding agent
// (a 2K-6K-token task, 10-25 steps of 200-1500-token tool outputs and 30-200-token commands,
// 5-10 s apart). Session i starts at i / sessions_per_second. Turn k's input is the previous
// turns' inputs and outputs followed by the new message.
Trace SyntheticMixed(int sessions, double sessions_per_second, uint64_t seed);

// Long coding-agent sessions (SWE-bench-like): a 6K-12K-token task, then steps whose context
// grows by a 400-1400-token tool output and a 30-150-token command each, up to 32K tokens;
// sessions start 2 s apart, steps 5-10 s apart. 24 sessions give ~600 requests and ~10M input
// tokens.
Trace SyntheticAgent(int sessions, uint64_t seed);

// The same requests with session i (in order of first arrival) starting at i /
// sessions_per_second; gaps inside a session are kept. sessions_per_second > 0.
Trace Retime(const Trace& trace, double sessions_per_second);
// The same as a schedule over `trace` (no tokens copied): Retime's order and times.
Schedule RetimeSchedule(const Trace& trace, double sessions_per_second);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_SYNTHETIC_H_
