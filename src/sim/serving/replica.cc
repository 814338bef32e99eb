#include "sim/serving/replica.h"

#include <algorithm>
#include <string>

namespace marconi::sim::serving {

Replica::Replica(size_t index, const Trace& trace, const SimConfig& config,
                 const ServingConfig& serving, int64_t budget, PrefixCache* cache,
                 AlphaTuner* tuner, int64_t states_every, ServingResult* out)
    : index_(index),
      trace_(trace),
      config_(config),
      serving_(serving),
      budget_(budget),
      cache_(cache),
      tuner_(tuner),
      time_(config.model, serving.device, serving.step_overhead_s),
      kv_(config.model.KvBytesPerToken()),
      slot_(serving.state_slots * config.model.StateBytesPerCheckpoint()),
      states_every_(states_every),
      out_(out),
      live_(trace.requests.size()),
      arrival_(trace.requests.size(), 0) {}

// Whether `running_bytes` fit with the cache shrunk to the rest of the budget (the cache evicts
// unpinned content to get there; kResourceExhausted: its pinned content alone is over).
Result<bool> Replica::Fits(int64_t running_bytes) {
  if (running_bytes > budget_) return false;
  if (cache_ == nullptr) return true;
  const Status s = cache_->SetCapacity(budget_ - running_bytes);
  if (s.ok()) return true;
  if (s.code() == StatusCode::kResourceExhausted) return false;
  return s;
}

// What the cache cannot evict while `hit` tokens are pinned by a lease: their KV and the states
// on their path (one, or one per block for block checkpointing). An estimate: paths that share a
// prefix are counted once each, and other states left on a path by branches are missed.
int64_t Replica::PinnedBytes(int64_t hit) const {
  const int64_t states = states_every_ > 0 ? std::max<int64_t>(1, hit / states_every_) : 1;
  return hit * kv_ + states * config_.model.StateBytesPerCheckpoint();
}

void Replica::Pin(const Live& v) {
  if (!v.handle || !v.handle->holds_lease()) return;
  if (pins_[v.handle->resume_node()]++ == 0) pinned_estimate_ += PinnedBytes(v.hit);
}

void Replica::Unpin(const Live& v) {
  if (!v.handle || !v.handle->holds_lease()) return;
  const auto it = pins_.find(v.handle->resume_node());
  if (--it->second == 0) {
    pinned_estimate_ -= PinnedBytes(v.hit);
    pins_.erase(it);
  }
}

// Gives back the lease of a request that is not running: it is begun again when admitted.
void Replica::Release(Live& v) {
  Unpin(v);
  v.handle.reset();
  v.begun = false;
  v.restarted = false;
  v.hit = 0;
  v.matched = 0;
}

void Replica::Preempt(size_t id) {
  // Recompute, as vLLM does by default: the request gives back its memory and its lease (as
  // SGLang's retraction unlocks its prefix) and returns to the head of the queue; on
  // re-admission it is looked up again and prefills its input after the new hit and the tokens
  // it had generated. Keeping the lease instead would let waiting requests pin the cache while
  // holding no memory of their own.
  Live& v = live_[id];
  run_tokens_ -= v.held_tokens;
  recomputed_ += v.context - v.hit;
  Release(v);
  v.held_tokens = 0;
  v.running = false;
  v.decoding = false;
  v.context = 0;
  ++v.preemptions;
  ++preemptions_;
  running_.erase(std::find(running_.begin(), running_.end(), id));
  // Only the head of the queue holds a lease among waiting requests: the one it displaces gives
  // its lease back too (it is looked up again when it is the head again).
  if (!waiting_.empty()) Release(live_[waiting_.front()]);
  waiting_.push_front(id);
}

Status Replica::Begin(size_t id) {
  Live& v = live_[id];
  v.begun = true;
  if (cache_ == nullptr) return Status::Ok();
  auto h = cache_->BeginRequest(req(id).input, now_);
  if (!h.ok()) return h.status();
  v.hit = h->lookup().reusable_tokens;
  v.matched = h->lookup().matched_tokens;
  v.handle = std::move(h).value();
  Pin(v);
  return Status::Ok();
}

void Replica::Arrive(size_t id, double t) {
  if (!in_step_ && !busy()) now_ = t;  // idle until now: its next step starts at the arrival
  occupancy_.Advance(t);
  ++occupancy_.in_system;
  arrival_[id] = t;
  waiting_.push_back(id);
  ++outstanding_;
}

Status Replica::Finish(size_t id) {
  Live& v = live_[id];
  // Two counters kept apart must agree: the KV it holds is what it computed (context - hit; the
  // last generated token's KV is never written).
  if (v.held_tokens != v.context - v.hit) {
    return Status::FailedPrecondition(
        "serving: request " + std::to_string(id) + " holds " + std::to_string(v.held_tokens) +
        " tokens of KV but computed " + std::to_string(v.context - v.hit));
  }
  running_.erase(std::find(running_.begin(), running_.end(), id));
  run_tokens_ -= v.held_tokens;
  v.held_tokens = 0;
  v.running = false;
  const TraceRequest& r = req(id);
  if (cache_ != nullptr) {
    // The finished request's memory goes back to the cache before its content is inserted.
    if (auto f = Fits(RunningBytes(0, 0)); !f.ok()) return f.status();
    Unpin(v);
    const Status s = cache_->CompleteRequest(std::move(*v.handle), r.input, r.output, now_);
    v.handle.reset();
    // kResourceExhausted leaves the content inserted and the invariants holding; the next step
    // shrinks the cache or preempts.
    if (!s.ok() && s.code() != StatusCode::kResourceExhausted) return s;
    if (tuner_ != nullptr) {
      // Observed at its completion, begin and end alike: the tuner replays its window from a
      // snapshot taken at an earlier completion, so a begin before that snapshot (a request that
      // ran across it) would go back in time; the replay then inserts requests in completion
      // order, as the cache saw them.
      if (Status t = tuner_->Observe(*cache_, r.input, r.output, now_, now_); !t.ok()) {
        return t;
      }
    }
  }
  occupancy_.Advance(now_);
  --occupancy_.in_system;
  --outstanding_;
  ServingRecord& rec = out_->requests[id];
  rec.index = id;
  rec.replica = index_;
  rec.input_tokens = InputLen(id);
  rec.output_tokens = OutputLen(id);
  rec.hit_tokens = v.hit;
  rec.attention_hit_tokens = v.matched;
  rec.arrival = arrival_[id];
  rec.admitted = v.admitted;
  rec.first_token = v.first_token;
  rec.finish = now_;
  rec.preemptions = v.preemptions;
  out_->output_tokens += rec.output_tokens;
  out_->last_finish = std::max(out_->last_finish, now_);
  return Status::Ok();
}

Status Replica::StartStep() {
  // 1. Every decoding request writes the KV of one more token this step; preempt the most
  // recently admitted until that fits.
  int64_t growth = 0;
  for (size_t id : running_) growth += live_[id].decoding ? 1 : 0;
  while (true) {
    auto f = Fits(RunningBytes(growth, 0));
    if (!f.ok()) return f.status();
    if (*f) break;
    if (running_.empty()) break;  // only pinned content is over: admission sorts it out
    growth -= live_[running_.back()].decoding ? 1 : 0;
    Preempt(running_.back());
  }
  for (size_t id : running_) {
    if (live_[id].decoding) ++live_[id].held_tokens, ++run_tokens_;
  }
  // 2. The batch: decodes first, then prefill chunks in admission order, within the budget.
  StepCost cost;
  items_.clear();
  int64_t tokens_left = serving_.token_budget;
  for (size_t id : running_) {
    if (!live_[id].decoding) continue;
    time_.Add(live_[id].context, 1, &cost);
    items_.push_back({id, 0});
    --tokens_left;
  }
  const auto add_chunk = [&](size_t id) {
    Live& v = live_[id];
    const int64_t c = std::min({serving_.chunk_tokens, v.prefill_left, tokens_left});
    if (c <= 0) return;
    time_.Add(v.context, c, &cost);
    items_.push_back({id, c});
    tokens_left -= c;
  };
  for (size_t id : running_) {
    if (!live_[id].decoding) add_chunk(id);
  }
  // 3. Admission, FCFS: the head of the queue, if its memory can be found.
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < serving_.max_running &&
         tokens_left > 0) {
    const size_t id = waiting_.front();
    Live& v = live_[id];
    if (!v.begun) {
      if (Status s = Begin(id); !s.ok()) return s;
    }
    const int64_t need = InputLen(id) - v.hit + v.generated;
    // Shrinking the cache for a request that then does not fit would evict all its unpinned
    // content for nothing: like SGLang (free + evictable memory) and vLLM (free + cached
    // blocks), look before evicting, with the pinned bytes estimated.
    if (cache_ != nullptr && !running_.empty() &&
        RunningBytes(need, 1) + pinned_estimate_ + pinned_slack_ > budget_) {
      break;  // wait for memory to free up
    }
    auto f = Fits(RunningBytes(need, 1));
    if (!f.ok()) return f.status();
    if (!*f) {
      if (!running_.empty()) {
        if (cache_ != nullptr) {
          // The estimate was low: the cache is down to its pinned content, whose size is now
          // known. What it missed (states left on pinned paths, mostly) is kept as a margin.
          ++flushes_;
          pinned_slack_ = std::max<int64_t>(0, cache_->stats().bytes() - pinned_estimate_);
        }
        break;  // wait for memory to free up
      }
      if (v.handle && v.hit > 0 && !v.restarted) {
        // Alone, it is its own pinned path (with the states on it) that does not fit: give up
        // the hit, make room for the whole request with nothing pinned (evicting what has to
        // go, that path included if need be), and look it up again in what is left.
        Release(v);
        v.restarted = true;
        if (auto room = Fits(RunningBytes(InputLen(id) + v.generated, 1)); !room.ok()) {
          return room.status();
        }
        continue;
      }
      return Status::ResourceExhausted("request " + std::to_string(id) +
                                       " does not fit in the memory budget of " +
                                       std::to_string(budget_) + " bytes even alone");
    }
    waiting_.pop_front();
    v.running = true;
    v.decoding = false;
    v.held_tokens = need;
    v.prefill_left = need;
    v.context = v.hit;
    run_tokens_ += need;
    if (v.admitted < 0) v.admitted = now_;
    running_.push_back(id);
    add_chunk(id);
  }
  // 4. The memory invariant, checked every step.
  MemoryUse use;
  use.running_kv = run_tokens_ * kv_;
  use.running_state = static_cast<int64_t>(running_.size()) * slot_;
  if (cache_ != nullptr) {
    use.cached_kv = cache_->stats().kv_bytes;
    use.cached_state = cache_->stats().state_bytes;
  }
  if (use.total() > budget_) {
    return Status::FailedPrecondition("serving: memory in use " + std::to_string(use.total()) +
                                      " bytes exceeds the budget " + std::to_string(budget_) +
                                      " at t=" + std::to_string(now_));
  }
  MemoryUse& peak = out_->peak;
  peak.running_kv = std::max(peak.running_kv, use.running_kv);
  peak.running_state = std::max(peak.running_state, use.running_state);
  peak.cached_kv = std::max(peak.cached_kv, use.cached_kv);
  peak.cached_state = std::max(peak.cached_state, use.cached_state);
  out_->peak_bytes = std::max(out_->peak_bytes, use.total());
  if (items_.empty()) {
    return Status::FailedPrecondition("serving: a step with nothing to run at t=" +
                                      std::to_string(now_));
  }
  const double seconds = time_.Seconds(cost);
  if (serving_.on_step) {
    serving_.on_step({now_, static_cast<int64_t>(running_.size()),
                      static_cast<int64_t>(waiting_.size()), cost.tokens, seconds, use, budget_,
                      index_});
  }
  in_step_ = true;
  step_end_ = now_ + seconds;
  return Status::Ok();
}

Status Replica::EndStep(std::vector<size_t>* finished) {
  // 5. The step ran: its tokens are computed.
  now_ = step_end_;
  in_step_ = false;
  ++out_->steps;
  const size_t first = finished->size();
  for (const Item& it : items_) {
    Live& v = live_[it.id];
    if (it.tokens == 0) {
      ++v.context;
      ++v.generated;
    } else {
      v.context += it.tokens;
      v.prefill_left -= it.tokens;
      if (v.prefill_left == 0) {
        ++v.generated;  // the last chunk's logits give a token
        if (v.first_token < 0) v.first_token = now_;
        v.decoding = true;
      }
    }
    if (v.decoding && v.generated >= OutputLen(it.id)) finished->push_back(it.id);
  }
  for (size_t i = first; i < finished->size(); ++i) {
    if (Status s = Finish((*finished)[i]); !s.ok()) return s;
  }
  return Status::Ok();
}

void Replica::Close(double end) {
  occupancy_.Advance(end);
  out_->occupancy_integral += occupancy_.integral;
  out_->preemptions += preemptions_;
  out_->recomputed_tokens += recomputed_;
  out_->cache_flushes += flushes_;
}

}  // namespace marconi::sim::serving
