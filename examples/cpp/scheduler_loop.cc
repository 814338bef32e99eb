// A minimal engine scheduler loop over marconi's request protocol, to copy into an engine.
//
// The "model" is a toy recurrence: its state after p tokens is a hash chain over tokens[0, p)
// (like a recurrent layer's state, a function of the whole prefix), and the "logits" of a
// position are the state there. The engine keeps states in its own slot pool and hands the cache
// a slot id as each state's payload; the cache's eviction events tell it which slots to free.
// Every request checks that resuming from the cache gives exactly the logits of a full
// recompute, and at the end the engine's live slots must be exactly the cache's checkpoints.
//
// Per request: BeginRequest (lookup, pin) -> restore the pinned state from its slot -> prefill
// in chunks, capturing the planned states and handing each chunk to InsertChunk (which moves the
// pin forward) -> the last input token's logits -> decode, capturing what PlanDecode planned ->
// CompleteRequest with the states captured since the last chunk.
#include <marconi/policies.h>
#include <marconi/prefix_cache.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

namespace {

using marconi::Token;

constexpr uint64_t kSeed = 0x243F6A8885A308D3ull;

uint64_t Step(uint64_t state, Token token) {
  uint64_t x =
      state ^ (static_cast<uint64_t>(static_cast<uint32_t>(token)) * 0x9E3779B97F4A7C15ull);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}

uint64_t Recompute(const std::vector<Token>& tokens) {
  uint64_t s = kSeed;
  for (Token t : tokens) s = Step(s, t);
  return s;
}

// The engine's state memory: slots named by payload = index + 1 (0 means "no payload").
class SlotPool final : public marconi::CacheListener {
 public:
  uint64_t Store(uint64_t state) {
    size_t i;
    if (!free_.empty()) {
      i = free_.back();
      free_.pop_back();
      slots_[i] = state;
    } else {
      i = slots_.size();
      slots_.push_back(state);
    }
    ++live_;
    return i + 1;
  }
  uint64_t Load(uint64_t payload) const { return slots_[payload - 1]; }
  int64_t live() const { return live_; }

  // The cache dropped a state: its slot is free.
  void OnEvicted(const marconi::EvictionEvent& e) override { Free(e.payload); }
  // The cache already held that state under another slot: ours was not adopted.
  void OnNotAdopted(const marconi::NotAdoptedEvent& e) override { Free(e.payload); }

 private:
  void Free(uint64_t payload) {
    if (payload == 0) return;
    free_.push_back(payload - 1);
    --live_;
  }
  std::vector<uint64_t> slots_;
  std::vector<size_t> free_;
  int64_t live_ = 0;
};

struct Request {
  std::vector<Token> input, output;
};

// Chat-like sessions: a few shared system prompts, then turns that resend the conversation.
std::vector<Request> Workload(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto draw = [&](int n) {
    std::vector<Token> v(static_cast<size_t>(n));
    for (Token& t : v) t = static_cast<Token>(rng() % 32000);
    return v;
  };
  std::vector<std::vector<Token>> prompts = {draw(700), draw(1200), draw(300)};
  std::vector<Request> out;
  for (int session = 0; session < 24; ++session) {
    std::vector<Token> history = prompts[rng() % prompts.size()];
    for (int turn = 0; turn < 4; ++turn) {
      std::vector<Token> user = draw(50 + static_cast<int>(rng() % 400));
      history.insert(history.end(), user.begin(), user.end());
      Request r{history, draw(20 + static_cast<int>(rng() % 200))};
      history.insert(history.end(), r.output.begin(), r.output.end());
      out.push_back(std::move(r));
    }
  }
  // Sessions interleave: ordered by input length, a session's turns stay in order.
  std::shuffle(out.begin(), out.end(), rng);
  std::stable_sort(out.begin(), out.end(), [](const Request& a, const Request& b) {
    return a.input.size() < b.input.size();
  });
  return out;
}

int Fail(const char* what, const marconi::Status& s) {
  std::fprintf(stderr, "scheduler_loop: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  auto model = marconi::ModelSpec::Preset("nemotron-h-8b");
  if (!model.ok()) return Fail("model", model.status());
  marconi::PrefixCacheConfig config;
  config.capacity_bytes = 2'000'000'000;  // about 35 states and their KV: evictions happen
  config.leave_last_token = true;         // the engine computes the last input token's logits
  auto cache = marconi::PrefixCache::Create(config, *model, marconi::MakeJudiciousAdmission(),
                                            marconi::MakeFlopAwareEviction({}).value());
  if (!cache.ok()) return Fail("cache", cache.status());
  marconi::PrefixCache& c = **cache;
  SlotPool slots;
  c.SetListener(&slots);

  constexpr int64_t kChunk = 512;  // prefill chunk, as an engine's token budget per step
  int64_t exact = 0, requests = 0;
  double now = 0;
  for (const Request& r : Workload(7)) {
    now += 1;
    auto begun = c.BeginRequest(r.input, now);
    if (!begun.ok()) return Fail("BeginRequest", begun.status());
    marconi::RequestHandle req = std::move(begun).value();
    const int64_t n = static_cast<int64_t>(r.input.size());

    // Restore the pinned state, or start from scratch.
    int64_t pos = req.resume_tokens();
    uint64_t state = pos > 0 ? slots.Load(req.resume_payload()) : kSeed;
    const std::vector<int64_t> prefill_plan = req.prefill_checkpoints();
    const std::vector<int64_t> decode_plan =
        c.PlanDecode(req, static_cast<int64_t>(r.output.size()));

    // Chunked prefill; each chunk's states go to the cache at once and the pin moves forward.
    std::vector<int64_t> captured;
    std::vector<uint64_t> payloads;
    while (pos < n) {
      const int64_t end = std::min(pos + kChunk, n);
      for (; pos < end; ++pos) {
        state = Step(state, r.input[static_cast<size_t>(pos)]);
        if (std::binary_search(prefill_plan.begin(), prefill_plan.end(), pos + 1)) {
          captured.push_back(pos + 1);
          payloads.push_back(slots.Store(state));
        }
      }
      if (end < n && !captured.empty()) {
        if (auto s = c.InsertChunk(req, r.input, end, captured, now, payloads);
            !s.ok() && s.code() != marconi::StatusCode::kResourceExhausted) {
          return Fail("InsertChunk", s);
        }
        captured.clear();
        payloads.clear();
      }
    }
    // The first output token comes from the last input position's logits.
    ++requests;
    if (state == Recompute(r.input)) ++exact;

    // Decode (teacher-forced here), capturing the planned states.
    for (size_t i = 0; i < r.output.size(); ++i) {
      state = Step(state, r.output[i]);
      const int64_t p = n + static_cast<int64_t>(i) + 1;
      if (std::binary_search(decode_plan.begin(), decode_plan.end(), p)) {
        captured.push_back(p);
        payloads.push_back(slots.Store(state));
      }
    }
    if (auto s = c.CompleteRequest(std::move(req), r.input, r.output, now, captured, payloads);
        !s.ok() && s.code() != marconi::StatusCode::kResourceExhausted) {
      return Fail("CompleteRequest", s);
    }
  }

  const marconi::CacheStats& st = c.stats();
  std::printf("requests %lld, token hit rate %.1f%%, evictions %lld\n",
              static_cast<long long>(requests), 100 * st.token_hit_rate(),
              static_cast<long long>(st.evictions));
  std::printf("first tokens equal to a full recompute: %lld/%lld\n", static_cast<long long>(exact),
              static_cast<long long>(requests));
  std::printf("engine's live state slots %lld, cache's checkpoints %lld\n",
              static_cast<long long>(slots.live()), static_cast<long long>(st.checkpoints));
  const bool ok = exact == requests && slots.live() == st.checkpoints && st.hit_tokens > 0 &&
                  st.evictions > 0 && c.CheckInvariants().ok();
  std::puts(ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
