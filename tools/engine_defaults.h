// The reference hybrid model the command line runs by default (`marconi bench engine`, `marconi
// serve`): small enough for a CPU, shaped like a hybrid LLM (3 Mamba2 layers per attention layer,
// a Llama-2-sized vocabulary so that traces tokenised for it need no folding).
#ifndef MARCONI_TOOLS_ENGINE_DEFAULTS_H_
#define MARCONI_TOOLS_ENGINE_DEFAULTS_H_

#include <cstdint>
#include <vector>

#include "engine/hybrid_model.h"

namespace marconi::tools {

inline engine::HybridConfig DefaultEngineConfig() {
  engine::HybridConfig c;
  c.pattern = "MMMAMMMA";
  c.vocab = 32000;
  c.d_model = 128;
  c.d_ff = 256;
  c.n_heads = 2;  // head_dim 64: a softmax exp per 256 attention FLOPs (7B models: 512)
  c.n_kv_heads = 1;
  c.head_dim = 64;
  c.ssm_heads = 8;
  c.ssm_head_dim = 16;
  c.d_state = 32;
  c.chunk_size = 64;
  return c;
}

// A much smaller model of the same shape, for quick runs and the command line's tests.
inline engine::HybridConfig TinyEngineConfig() {
  engine::HybridConfig c = DefaultEngineConfig();
  c.d_model = 32;
  c.d_ff = 64;
  c.head_dim = 32;
  c.ssm_heads = 2;
  c.d_state = 16;
  c.chunk_size = 16;
  return c;
}

// Folds tokens outside [0, vocab) into it (modulo vocab), so that a trace tokenised for a larger
// vocabulary still runs; equal tokens stay equal, so shared prefixes stay shared. Returns how
// many tokens were folded.
inline int64_t FoldIntoVocabulary(std::vector<Token>& tokens, int64_t vocab) {
  int64_t folded = 0;
  for (Token& t : tokens) {
    if (t < 0 || t >= vocab) {
      t = static_cast<Token>(((t % vocab) + vocab) % vocab);
      ++folded;
    }
  }
  return folded;
}

}  // namespace marconi::tools

#endif  // MARCONI_TOOLS_ENGINE_DEFAULTS_H_
