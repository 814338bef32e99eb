#include "engine/driver.h"

#include <algorithm>
#include <chrono>

namespace marconi::engine {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Driver::Driver(const HybridModel& model, PrefixCache* cache, Kernels kernels)
    : model_(model), cache_(cache), kernels_(kernels) {
  if (cache_ != nullptr) cache_->SetListener(this);
}

Driver::~Driver() {
  if (cache_ != nullptr) cache_->SetListener(nullptr);
}

void Driver::AppendHashes(std::span<const Token> tokens, std::vector<uint64_t>& hashes) {
  if (hashes.empty()) hashes.push_back(0x9e3779b97f4a7c15ull);  // the empty prefix
  for (Token t : tokens) {
    // splitmix64 of the previous hash and the token: a 64-bit name per prefix. A collision would
    // need ~2^32 stored prefixes; rows also keep their token, checked on load.
    uint64_t z = hashes.back() + 0x9e3779b97f4a7c15ull * (static_cast<uint32_t>(t) + 1ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    hashes.push_back(z ^ (z >> 31));
  }
}

int64_t Driver::stored_bytes() const {
  return stored_kv_tokens() * model_.KvBytesPerToken() + stored_states() * model_.CheckpointBytes();
}

void Driver::OnEvicted(const EvictionEvent& event) {
  std::vector<uint64_t> h;
  AppendHashes(event.path, h);
  const size_t depth = event.path.size();
  bool ok = states_.erase(event.payload) == 1;
  for (size_t i = static_cast<size_t>(event.kv_begin); i < depth; ++i) {
    ok = kv_.erase(h[i + 1]) == 1 && ok;
  }
  if (!ok && listener_error_.empty()) {
    listener_error_ = "the cache evicted bytes at depth " + std::to_string(depth) +
                      " that this driver never stored";
  }
}

// The cache holds that state in another slot already: this copy is not needed.
void Driver::OnNotAdopted(const NotAdoptedEvent& event) {
  if (states_.erase(event.payload) != 1 && listener_error_.empty()) {
    listener_error_ = "the cache did not adopt a state slot this driver never offered";
  }
}

Status Driver::Load(std::span<const Token> input, const std::vector<uint64_t>& hashes,
                    int64_t reuse, uint64_t slot, SequenceState& state) const {
  const auto it = states_.find(slot);
  if (it == states_.end()) {
    return Status::FailedPrecondition("cache hit at " + std::to_string(reuse) +
                                      " tokens whose state this driver does not hold");
  }
  auto cp = DeserializeCheckpoint(it->second);
  if (!cp.ok()) return cp.status();
  if (cp->position != reuse) {
    return Status::FailedPrecondition("cache hit at " + std::to_string(reuse) +
                                      " tokens names a state of another position");
  }
  SequenceState full = model_.NewSequence();
  for (int64_t i = 0; i < reuse; ++i) {
    const auto row = kv_.find(hashes[static_cast<size_t>(i + 1)]);
    if (row == kv_.end() || row->second.token != input[static_cast<size_t>(i)]) {
      return Status::FailedPrecondition("cache hit at " + std::to_string(reuse) +
                                        " tokens whose KV of token " + std::to_string(i) +
                                        " this driver does not hold");
    }
    if (Status s = model_.AppendKv(row->second.bytes, full); !s.ok()) return s;
  }
  auto resumed = model_.Resume(full, *cp);
  if (!resumed.ok()) return resumed.status();
  state = std::move(resumed).value();
  return Status::Ok();
}

uint64_t Driver::Store(const SequenceState& state, const Checkpoint& cp,
                       std::span<const Token> sequence, const std::vector<uint64_t>& hashes,
                       std::vector<uint64_t>* added_rows) {
  const uint64_t slot = next_slot_++;
  states_.emplace(slot, SerializeCheckpoint(cp));
  for (int64_t i = 0; i < cp.position; ++i) {
    const uint64_t row_key = hashes[static_cast<size_t>(i + 1)];
    if (kv_.count(row_key)) continue;
    kv_.emplace(row_key,
                KvRow{sequence[static_cast<size_t>(i)], model_.SerializeKv(state, i, i + 1)});
    added_rows->push_back(row_key);
  }
  return slot;
}

Result<ServedRequest> Driver::Serve(std::span<const Token> input, int64_t output_tokens,
                                    Timestamp now) {
  if (output_tokens < 0) return Status::InvalidArgument("serve: output_tokens must be >= 0");
  return ServeImpl(input, output_tokens, {}, now);
}

Result<ServedRequest> Driver::ServeForced(std::span<const Token> input,
                                          std::span<const Token> output, Timestamp now) {
  return ServeImpl(input, static_cast<int64_t>(output.size()), output, now);
}

Result<ServedRequest> Driver::ServeImpl(std::span<const Token> input, int64_t output_tokens,
                                        std::span<const Token> forced, Timestamp now) {
  if (!listener_error_.empty()) return Status::FailedPrecondition(listener_error_);
  if (input.empty()) return Status::InvalidArgument("serve: empty input");
  // Validate before the cache counts the request.
  if (Status bad = model_.CheckTokens(input, "serve: input"); !bad.ok()) return bad;
  if (Status bad = model_.CheckTokens(forced, "serve: output"); !bad.ok()) return bad;
  const int64_t n = static_cast<int64_t>(input.size());
  ServedRequest out;
  RequestHandle handle;
  if (cache_ != nullptr) {
    // The first output's logits come from the last input token: the cache must leave it to us,
    // so that what it counts as reused is what is reused.
    if (!cache_->config().leave_last_token) {
      return Status::FailedPrecondition(
          "serve: the driver's cache must leave the last input token to compute "
          "(PrefixCacheConfig::leave_last_token)");
    }
    auto h = cache_->BeginRequest(input, now);
    if (!h.ok()) return h.status();
    handle = std::move(h).value();
  }
  const int64_t reuse = handle.resume_tokens();  // < n: leave_last_token
  std::vector<Token> sequence(input.begin(), input.end());
  sequence.reserve(static_cast<size_t>(n + output_tokens));
  std::vector<uint64_t> hashes;
  hashes.reserve(static_cast<size_t>(n + output_tokens + 1));
  AppendHashes(input, hashes);
  SequenceState state = model_.NewSequence();
  const auto t_load = std::chrono::steady_clock::now();
  if (reuse > 0) {
    if (Status s = Load(input, hashes, reuse, handle.resume_payload(), state); !s.ok()) return s;
  }
  out.load_seconds = Since(t_load);

  // What to capture: the cache's prefill plan (all past the resume point) and decode plan, asked
  // before prefilling since with pages a decode position may fall inside the input.
  std::vector<int64_t> capture, decode_capture;
  if (cache_ != nullptr) {
    for (int64_t p : handle.prefill_checkpoints()) capture.push_back(p);
    for (int64_t p : cache_->PlanDecode(handle, output_tokens)) {
      if (p > reuse) (p <= n ? capture : decode_capture).push_back(p);
    }
    std::sort(capture.begin(), capture.end());
    capture.erase(std::unique(capture.begin(), capture.end()), capture.end());
  }
  // Every state this request stores, in position order, with its slot. The first `handed` (and
  // the first `rows_handed` KV rows) are the cache's already, through InsertChunk; on a failure
  // the rest is taken back.
  std::vector<int64_t> positions;
  std::vector<uint64_t> slots, added_rows;
  size_t handed = 0, rows_handed = 0;
  const auto take_back = [&](const Status& s) {
    for (size_t i = rows_handed; i < added_rows.size(); ++i) kv_.erase(added_rows[i]);
    for (size_t i = handed; i < slots.size(); ++i) states_.erase(slots[i]);
    return s;
  };
  const auto store = [&](const Checkpoint& cp) {
    positions.push_back(cp.position);
    slots.push_back(Store(state, cp, sequence, hashes, &added_rows));
  };

  // The prefill, in chunks if asked: each chunk's states go to the cache at once (InsertChunk),
  // which moves the request's pin to the deepest of them.
  const auto t_prefill = std::chrono::steady_clock::now();
  std::vector<float> last;
  const int64_t chunk = prefill_chunk_ > 0 && cache_ != nullptr ? prefill_chunk_ : n;
  for (int64_t from = reuse; from < n;) {
    const int64_t to = std::min(n, from + chunk);
    const auto first = std::lower_bound(capture.begin(), capture.end(), from + 1);
    const auto past = std::upper_bound(first, capture.end(), to);
    std::vector<Checkpoint> captured;
    auto logits = model_.Prefill(
        state, input.subspan(static_cast<size_t>(from), static_cast<size_t>(to - from)), kernels_,
        std::span<const int64_t>(first, past), &captured);
    if (!logits.ok()) return take_back(logits.status());
    last = std::move(logits).value();
    const size_t before = positions.size();
    for (const Checkpoint& cp : captured) store(cp);
    if (to < n && positions.size() > before) {
      const std::span<const int64_t> new_positions(positions.begin() + before, positions.end());
      const std::span<const uint64_t> new_slots(slots.begin() + before, slots.end());
      Status s = cache_->InsertChunk(handle, input, to, new_positions, now, new_slots);
      if (!s.ok() && s.code() != StatusCode::kResourceExhausted) return take_back(s);
      handed = positions.size();
      rows_handed = added_rows.size();
    }
    from = to;
  }
  out.prefill_seconds = Since(t_prefill);
  out.reused_tokens = reuse;
  out.computed_tokens = n - reuse;
  out.first_logits = last;

  // Decoding, token by token with the recurrent kernel; each token is fed back.
  for (int64_t i = 0; i < output_tokens; ++i) {
    const Token next =
        forced.empty()
            ? static_cast<Token>(std::max_element(last.begin(), last.end()) - last.begin())
            : forced[static_cast<size_t>(i)];
    out.output.push_back(next);
    sequence.push_back(next);
    const Token one[] = {next};
    AppendHashes(one, hashes);  // the decoded tokens extend the input's prefixes
    auto step = model_.Prefill(state, one, {ScanKernel::kSequential, kernels_.matmul});
    if (!step.ok()) return take_back(step.status());
    last = std::move(step).value();
    if (std::binary_search(decode_capture.begin(), decode_capture.end(), state.tokens)) {
      store({state.tokens, state.recurrent});
    }
  }
  if (cache_ == nullptr) return out;

  out.captured_states = static_cast<int64_t>(positions.size());
  // The states not handed over yet (the chunks' are in the cache, or were not adopted).
  const std::span<const int64_t> rest_positions(positions.begin() + static_cast<long>(handed),
                                                positions.end());
  const std::span<const uint64_t> rest_slots(slots.begin() + static_cast<long>(handed),
                                             slots.end());
  Status s = cache_->CompleteRequest(std::move(handle), input, std::span<const Token>(out.output),
                                     now, rest_positions, rest_slots);
  if (!s.ok() && s.code() != StatusCode::kResourceExhausted) return take_back(s);
  if (!listener_error_.empty()) return Status::FailedPrecondition(listener_error_);
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
