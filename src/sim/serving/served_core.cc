// The cache side of a replica for the systems built on PrefixCache (and vanilla, without one):
// running requests hold their memory beside the cache, which is shrunk to the rest of the budget
// with PrefixCache::SetCapacity; a request's lease pins its hit. docs/serving.md, "Memory budget"
// and "Scheduler", states the rules.
#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>

#include "marconi/alpha_tuner.h"
#include "sim/serving/served_cache.h"

namespace marconi::sim::serving {
namespace {

class ServedCore final : public ServedCache {
 public:
  ServedCore(const Trace& trace, const ModelSpec& model, SystemInstance system, int64_t budget,
             int64_t slot_bytes, int64_t states_every)
      : trace_(trace),
        model_(model),
        system_(std::move(system)),
        cache_(system_.cache.get()),
        budget_(budget),
        kv_(model.KvBytesPerToken()),
        slot_(slot_bytes),
        states_every_(states_every),
        live_(trace.requests.size()) {}

  EngineLookup Peek(std::span<const Token> input) const override {
    if (cache_ == nullptr) return {};
    const LookupResult l = cache_->Lookup(input);
    return {l.matched_tokens, l.reusable_tokens};
  }

  Result<AdmitOutcome> Admit(size_t id, int64_t prefill_end, bool alone, double now,
                             EngineLookup* found) override {
    const TraceRequest& r = trace_.requests[id];
    // KV of the whole sequence and the slots: what it holds at its end if nothing is shared. Over
    // the budget, it could never finish (its decode would preempt it again and again).
    const int64_t output = std::max<int64_t>(1, static_cast<int64_t>(r.output.size()));
    if ((static_cast<int64_t>(r.input.size()) + output) * kv_ + slot_ > budget_) {
      return AdmitOutcome::kRejected;
    }
    Live& v = live_[id];
    while (true) {
      if (!v.begun) {
        if (Status s = Begin(id, now); !s.ok()) return s;
      }
      const int64_t need = prefill_end - v.hit;
      // Shrinking the cache for a request that then does not fit would evict all its unpinned
      // content for nothing: like SGLang (free + evictable memory) and vLLM (free + cached
      // blocks), look before evicting, with the pinned bytes estimated.
      if (cache_ != nullptr && !alone &&
          RunningBytes(need, 1) + pinned_estimate_ + pinned_slack_ > budget_) {
        return AdmitOutcome::kWait;
      }
      auto f = Fits(RunningBytes(need, 1));
      if (!f.ok()) return f.status();
      if (*f) {
        v.held = need;
        run_tokens_ += need;
        ++running_;
        *found = {v.matched, v.hit};
        return AdmitOutcome::kAdmitted;
      }
      if (!alone) {
        if (cache_ != nullptr) {
          // The estimate was low: the cache is down to its pinned content, whose size is now
          // known. What it missed (states left on pinned paths, mostly) is kept as a margin.
          ++flushes_;
          pinned_slack_ = std::max<int64_t>(0, cache_->stats().bytes() - pinned_estimate_);
        }
        return AdmitOutcome::kWait;
      }
      if (v.handle && v.hit > 0 && !v.restarted) {
        // Alone, it is its own pinned path (with the states on it) that does not fit: give up
        // the hit, make room for the whole request with nothing pinned (evicting what has to
        // go, that path included if need be), and look it up again in what is left.
        Release(v);
        v.restarted = true;
        if (auto room = Fits(RunningBytes(prefill_end, 1)); !room.ok()) return room.status();
        continue;
      }
      // Unreachable: alone and with nothing pinned, a request within the budget fits.
      return Status::FailedPrecondition("serving: request " + std::to_string(id) +
                                        " does not fit in the memory budget of " +
                                        std::to_string(budget_) + " bytes even alone");
    }
  }

  Result<bool> Fits() override { return Fits(RunningBytes(0, 0)); }

  Result<size_t> Grow(std::span<const size_t> ids) override {
    // All or nothing: the decodes' KV fits next to the cache's pinned content or not.
    const int64_t growth = static_cast<int64_t>(ids.size());
    auto f = Fits(RunningBytes(growth, 0));
    if (!f.ok()) return f.status();
    if (!*f) return size_t{0};
    for (size_t id : ids) ++live_[id].held;
    run_tokens_ += growth;
    return ids.size();
  }

  Status Computed(size_t id, int64_t pos, double now) override {
    // SGLang's cache_unfinished_req: a prefill chunk that captured planned checkpoints is handed
    // to the cache (PrefixCache::InsertChunk): its KV up to the deepest of them moves from the
    // request's memory to the cache, pinned by the request's lease, which moves there.
    Live& v = live_[id];
    if (cache_ == nullptr || !v.handle) return Status::Ok();
    const TraceRequest& r = trace_.requests[id];
    const int64_t from = v.handle->resume_tokens();
    const int64_t upto = std::min(pos, static_cast<int64_t>(r.input.size()));
    if (upto <= v.scanned) return Status::Ok();  // decoding: the input is done
    // The planned checkpoints (ascending) this chunk captured: in (scanned, upto], past the pin.
    const std::vector<int64_t>& planned = v.handle->prefill_checkpoints();
    captured_.assign(std::upper_bound(planned.begin(), planned.end(), std::max(from, v.scanned)),
                     std::upper_bound(planned.begin(), planned.end(), upto));
    v.scanned = upto;
    if (captured_.empty()) return Status::Ok();
    // The captured states are new memory (the KV only changes hands): like an engine without a
    // free slot, a request whose states find no room keeps them for its completion, when
    // CompleteRequest inserts every planned checkpoint.
    const int64_t states =
        static_cast<int64_t>(captured_.size()) * model_.StateBytesPerCheckpoint();
    auto room = Fits(RunningBytes(0, 0) + states);
    if (!room.ok()) return room.status();
    if (*room) {
      Unpin(v);
      const Status s = cache_->InsertChunk(*v.handle, r.input, upto, captured_, now, {});
      Pin(v);
      // kResourceExhausted leaves the content inserted and the pin moved; the next step shrinks
      // the cache or preempts. Any other error changed nothing.
      if (!s.ok() && s.code() != StatusCode::kResourceExhausted) return s;
      const int64_t moved = v.handle->resume_tokens() - from;
      v.held -= moved;
      v.moved += moved;
      run_tokens_ -= moved;
    }
    // The cache's capacity back to what the running requests leave.
    if (auto f = Fits(RunningBytes(0, 0)); !f.ok()) return f.status();
    return Status::Ok();
  }

  Status Finish(size_t id, int64_t computed, double now) override {
    Live& v = live_[id];
    // Two counters kept apart must agree: the KV it holds, and the KV it handed to the cache by
    // chunks, are what it computed.
    if (v.held + v.moved != computed) {
      return Status::FailedPrecondition("serving: request " + std::to_string(id) + " holds " +
                                        std::to_string(v.held) + " tokens of KV and handed " +
                                        std::to_string(v.moved) + " to the cache, but computed " +
                                        std::to_string(computed));
    }
    run_tokens_ -= v.held;
    --running_;
    v.held = v.moved = 0;
    if (cache_ == nullptr) return Status::Ok();
    const TraceRequest& r = trace_.requests[id];
    // The finished request's memory goes back to the cache before its content is inserted.
    if (auto f = Fits(RunningBytes(0, 0)); !f.ok()) return f.status();
    Unpin(v);
    const Status s = cache_->CompleteRequest(std::move(*v.handle), r.input, r.output, now);
    v.handle.reset();
    // kResourceExhausted leaves the content inserted and the invariants holding; the next step
    // shrinks the cache or preempts.
    if (!s.ok() && s.code() != StatusCode::kResourceExhausted) return s;
    if (system_.tuner != nullptr) {
      // Observed at its completion, begin and end alike: the tuner replays its window from a
      // snapshot taken at an earlier completion, so a begin before that snapshot (a request that
      // ran across it) would go back in time; the replay then inserts requests in completion
      // order, as the cache saw them.
      return system_.tuner->Observe(*cache_, r.input, r.output, now, now);
    }
    return Status::Ok();
  }

  void Preempt(size_t id) override {
    // Recompute, as vLLM does by default: the request gives back its memory and its lease (as
    // SGLang's retraction unlocks its prefix); on re-admission it is looked up again. Keeping
    // the lease instead would let waiting requests pin the cache while holding no memory.
    Live& v = live_[id];
    run_tokens_ -= v.held;
    --running_;
    v.held = v.moved = 0;  // what it handed to the cache stays cached, unpinned
    Release(v);
  }

  void Displace(size_t id) override { Release(live_[id]); }

  MemoryUse Use() const override {
    MemoryUse use;
    use.running_kv = run_tokens_ * kv_;
    use.running_state = running_ * slot_;
    if (cache_ != nullptr) {
      use.cached_kv = cache_->stats().kv_bytes;
      use.cached_state = cache_->stats().state_bytes;
    }
    return use;
  }

  int64_t flushes() const override { return flushes_; }
  const CacheStats* stats() const override {
    return cache_ != nullptr ? &cache_->stats() : nullptr;
  }
  double alpha() const override { return cache_ != nullptr ? cache_->alpha() : 0; }
  std::vector<TuningRound> rounds() const override {
    return system_.tuner != nullptr ? system_.tuner->rounds() : std::vector<TuningRound>{};
  }

 private:
  // A request's hold on the cache and its memory.
  struct Live {
    std::optional<RequestHandle> handle;  // from BeginRequest, held until CompleteRequest
    // BeginRequest called for its current admission attempt: once, again after a preemption,
    // and once more if, alone, it gave up its hit to fit (restarted).
    bool begun = false;
    bool restarted = false;
    int64_t hit = 0;
    int64_t matched = 0;  // the lookup's attention-hit depth
    int64_t held = 0;     // KV tokens in running memory (its own, not the cache's)
    int64_t moved = 0;    // KV tokens it computed and handed to the cache (InsertChunk)
    int64_t scanned = 0;  // input positions whose chunk was offered to the cache
  };

  int64_t RunningBytes(int64_t extra_tokens, int64_t extra_requests) const {
    return (run_tokens_ + extra_tokens) * kv_ + (running_ + extra_requests) * slot_;
  }

  // Whether `running_bytes` fit with the cache shrunk to the rest of the budget (the cache
  // evicts unpinned content to get there; false: its pinned content alone is over).
  Result<bool> Fits(int64_t running_bytes) {
    if (running_bytes > budget_) return false;
    if (cache_ == nullptr) return true;
    const Status s = cache_->SetCapacity(budget_ - running_bytes);
    if (s.ok()) return true;
    if (s.code() == StatusCode::kResourceExhausted) return false;
    return s;
  }

  // What the cache cannot evict while a lease pins the state at depth `hit`: the KV and the
  // states on its path (one, or one per block for block checkpointing). An estimate: paths
  // that share a prefix are counted once each, and other states left on a path by branches are
  // missed.
  int64_t PinnedBytes(int64_t hit) const {
    const int64_t states = states_every_ > 0 ? std::max<int64_t>(1, hit / states_every_) : 1;
    return hit * kv_ + states * model_.StateBytesPerCheckpoint();
  }

  void Pin(const Live& v) {
    if (!v.handle || !v.handle->holds_lease()) return;
    if (pins_[v.handle->resume_node()]++ == 0) {
      pinned_estimate_ += PinnedBytes(v.handle->resume_tokens());
    }
  }

  void Unpin(const Live& v) {
    if (!v.handle || !v.handle->holds_lease()) return;
    const auto it = pins_.find(v.handle->resume_node());
    if (--it->second == 0) {
      pinned_estimate_ -= PinnedBytes(v.handle->resume_tokens());
      pins_.erase(it);
    }
  }

  // Gives back the lease of a request that is not running: it is begun again when admitted.
  void Release(Live& v) {
    Unpin(v);
    v.handle.reset();
    v.begun = false;
    v.restarted = false;
    v.hit = 0;
    v.matched = 0;
  }

  Status Begin(size_t id, double now) {
    Live& v = live_[id];
    v.begun = true;
    v.scanned = 0;
    if (cache_ == nullptr) return Status::Ok();
    auto h = cache_->BeginRequest(trace_.requests[id].input, now);
    if (!h.ok()) return h.status();
    v.hit = h->lookup().reusable_tokens;
    v.matched = h->lookup().matched_tokens;
    v.handle = std::move(h).value();
    Pin(v);
    return Status::Ok();
  }

  const Trace& trace_;
  const ModelSpec& model_;
  SystemInstance system_;
  PrefixCache* cache_;
  const int64_t budget_;
  const int64_t kv_, slot_;
  const int64_t states_every_;     // block checkpointing's block size, else 0
  std::vector<Live> live_;         // by request
  std::vector<int64_t> captured_;  // scratch: a chunk's captured checkpoints
  int64_t run_tokens_ = 0;         // sum of held over running requests
  int64_t running_ = 0;
  int64_t flushes_ = 0;
  std::unordered_map<NodeId, int64_t> pins_;  // leases held, by node
  int64_t pinned_estimate_ = 0;               // sum of PinnedBytes over pins_
  int64_t pinned_slack_ = 0;                  // what the estimate missed at the last flush
};

}  // namespace

std::unique_ptr<ServedCache> MakeServedCore(const Trace& trace, const ModelSpec& model,
                                            SystemInstance system, int64_t budget,
                                            int64_t slot_bytes, int64_t states_every) {
  return std::make_unique<ServedCore>(trace, model, std::move(system), budget, slot_bytes,
                                      states_every);
}

}  // namespace marconi::sim::serving
