// Building request traces from normalised datasets (../shared/data formats):
//   chat and agent: {"id", "source", "messages": [{"role", "content"}, ...]}
//   docqa:          {"id", "source", "document", "questions": [...]}
//   sysprompts:     {"id", "source", "prompt"}
//
// Chat template (documented, so that token counts are reproducible): a sequence starts with the
// BOS token (id 1) and each message is tokenised on its own as
//   "<|" + role + "|>\n" + content + "\n"
// and the pieces are concatenated. Turn k's input is therefore exactly the tokens of the previous
// turns' inputs and outputs followed by the new message: the property prefix caching lives on.
// Doc-QA requests are BOS, "<|user|>\n" + document + "\n\n", "Question: " + question + "\n";
// system-prompt requests are BOS, the system message, the user message.
#ifndef MARCONI_SIM_TRACE_BUILDER_H_
#define MARCONI_SIM_TRACE_BUILDER_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/trace.h"

namespace marconi::sim {

// Text to token ids, without BOS. Must be safe to call from several threads at once.
using Encoder = std::function<std::vector<Token>(std::string_view)>;

// The SentencePiece model at `path` (e.g. the Llama-2 tokenizer). kIoError / kParseError.
Result<Encoder> LoadSentencePiece(const std::string& path);

inline constexpr Token kBos = 1;

enum class Workload { kChat, kAgent, kDocQa, kSysprompt };
Result<Workload> ParseWorkload(const std::string& name);  // chat | agent | docqa | sysprompt

struct BuildOptions {
  Workload workload = Workload::kChat;
  int sessions = 100;  // conversations, agent runs, documents, or system prompts
  double sps = 1.0;    // sessions (documents) started per second; sysprompt: requests/s
  double art = 7.5;    // agent: mean seconds between steps; docqa: between questions
  uint64_t seed = 1;
  int64_t max_tokens = 32768;    // inputs longer than this end a session
  int max_steps = 50;            // agent steps per run
  int min_turns = 1;             // chat: conversations with fewer assistant replies are skipped
  double words_per_minute = 90;  // chat: the user's typing speed between turns
  bool collapse_old_outputs = false;  // agent: tool outputs older than the 5 latest collapsed
  int queries_per_prompt = 5;         // sysprompt: requests = prompts x this
  double zipf = 1.0;                  // sysprompt: popularity exponent over prompts
  std::string queries_path;           // sysprompt: a chat dataset giving first-turn queries
  int threads = 0;                    // tokenisation threads (0: all cores)
  // Called with (sessions tokenised, sessions) as sessions are built, from worker threads (not
  // concurrently).
  std::function<void(size_t, size_t)> progress;
};

struct BuildReport {
  int64_t records = 0;   // records read from the dataset
  int64_t sessions = 0;  // sessions that produced requests
  int64_t requests = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
};

// Reads `dataset`, builds the workload and streams it to `out` in arrival order (ties by session
// then turn). Deterministic for a given seed, whatever the thread count. Errors name the dataset
// file and line.
Result<BuildReport> BuildTrace(const std::string& dataset, const BuildOptions& options,
                               const Encoder& encode, TraceWriter& out);

}  // namespace marconi::sim

#endif  // MARCONI_SIM_TRACE_BUILDER_H_
