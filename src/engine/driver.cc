#include "engine/driver.h"

#include <algorithm>
#include <chrono>

namespace marconi::engine {

uint64_t Driver::PrefixKey(std::span<const Token> prefix) {
  uint64_t h = 1469598103934665603ull ^ prefix.size();  // FNV-1a over the tokens and length
  for (Token t : prefix) {
    h ^= static_cast<uint32_t>(t);
    h *= 1099511628211ull;
  }
  return h;
}

void Driver::Store(const SequenceState& s, const Checkpoint& cp, std::span<const Token> tokens) {
  const uint64_t key = PrefixKey(tokens.first(static_cast<size_t>(cp.position)));
  if (store_.count(key)) return;
  const SequenceState view = model_.Resume(s, cp);  // KV sliced to the prefix
  Stored st{SerializeCheckpoint(cp), view.keys, view.values};
  stored_bytes_ += static_cast<int64_t>(st.checkpoint.size());
  for (const auto& k : st.keys) stored_bytes_ += static_cast<int64_t>(2 * k.size() * sizeof(float));
  store_.emplace(key, std::move(st));
}

Result<ServedRequest> Driver::Serve(std::span<const Token> input, int64_t output_tokens,
                                    Timestamp now) {
  auto handle = cache_.BeginRequest(input, now);
  if (!handle.ok()) return handle.status();
  ServedRequest out;
  const int64_t n = static_cast<int64_t>(input.size());
  // Leave at least one token to prefill: its logits are the first output.
  int64_t reuse = handle->lookup.reusable_tokens;
  SequenceState state = model_.NewSequence();
  if (reuse >= n) reuse = 0;  // an exact repeat: recompute rather than store logits
  if (reuse > 0) {
    auto it = store_.find(PrefixKey(input.first(static_cast<size_t>(reuse))));
    if (it == store_.end()) {
      return Status::FailedPrecondition("cache hit at " + std::to_string(reuse) +
                                        " tokens whose state this driver never stored");
    }
    auto cp = DeserializeCheckpoint(it->second.checkpoint);
    if (!cp.ok()) return cp.status();
    SequenceState full = model_.NewSequence();
    full.keys = it->second.keys;
    full.values = it->second.values;
    state = model_.Resume(full, *cp);
  }
  std::vector<int64_t> capture;
  for (int64_t p : handle->prefill_checkpoints) {
    if (p > reuse && p <= n) capture.push_back(p);
  }
  std::vector<Checkpoint> captured;
  const auto t0 = std::chrono::steady_clock::now();
  auto logits =
      model_.Prefill(state, input.subspan(static_cast<size_t>(reuse)), kernel_, capture, &captured);
  out.prefill_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!logits.ok()) return logits.status();
  for (const Checkpoint& cp : captured) Store(state, cp, input);
  out.reused_tokens = reuse;
  out.computed_tokens = n - reuse;
  out.first_logits = *logits;
  // Greedy decoding, token by token with the recurrent kernel.
  std::vector<Token> sequence(input.begin(), input.end());
  std::vector<float> last = *logits;
  for (int64_t i = 0; i < output_tokens; ++i) {
    const Token next =
        static_cast<Token>(std::max_element(last.begin(), last.end()) - last.begin());
    out.output.push_back(next);
    sequence.push_back(next);
    const Token one[] = {next};
    auto step = model_.Prefill(state, one, ScanKernel::kSequential);
    if (!step.ok()) return step.status();
    last = std::move(step).value();
  }
  // The state after the last decoded token, and any other position the policy plans for decode.
  std::vector<int64_t> decode_positions;
  cache_.admission_policy().PlanDecode(AdmissionContext{n, handle->lookup}, output_tokens,
                                       &decode_positions);
  if (std::find(decode_positions.begin(), decode_positions.end(), state.tokens) !=
      decode_positions.end()) {
    Checkpoint cp{state.tokens, state.recurrent};
    Store(state, cp, sequence);
  }
  Status s = cache_.CompleteRequest(std::move(handle).value(), input,
                                    std::span<const Token>(out.output), now);
  if (!s.ok() && s.code() != StatusCode::kResourceExhausted) return s;
  return out;
}

ModelSpec SpecOf(const HybridModel& model) {
  const HybridConfig& c = model.config();
  std::vector<LayerSpec> layers;
  for (char kind : c.pattern) {
    if (kind == 'A') {
      layers.push_back(AttentionLayer{c.n_heads, c.n_kv_heads, c.head_dim});
    } else {
      layers.push_back(Mamba2Layer{c.ssm_heads, c.ssm_head_dim, c.d_state, c.n_groups, c.d_conv});
    }
    layers.push_back(MlpLayer{c.d_ff, true});
  }
  return ModelSpec::Create("reference-hybrid", c.d_model, 4, std::move(layers)).value();
}

}  // namespace marconi::engine
