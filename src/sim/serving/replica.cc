#include "sim/serving/replica.h"

#include <algorithm>
#include <string>

namespace marconi::sim::serving {

Replica::Replica(size_t index, const Trace& trace, const SimConfig& config,
                 const ServingConfig& serving, int64_t budget, std::unique_ptr<ServedCache> cache,
                 ServingResult* out)
    : index_(index),
      trace_(trace),
      serving_(serving),
      budget_(budget),
      cache_(std::move(cache)),
      time_(config.model, serving.device),
      out_(out),
      live_(trace.requests.size()),
      arrival_(trace.requests.size(), 0) {}

void Replica::PreemptLast() {
  // Recompute: the request gives back its memory and its hold on the cache and returns to the
  // head of the queue; on re-admission it is looked up again and prefills its input after the
  // new hit and the tokens it had generated.
  const size_t id = running_.back();
  Live& v = live_[id];
  recomputed_ += v.context - v.hit;
  cache_->Preempt(id);
  v.hit = v.matched = 0;
  v.running = false;
  v.decoding = false;
  v.context = 0;
  ++v.preemptions;
  ++preemptions_;
  running_.pop_back();
  // Only the head of the queue may hold a lease among waiting requests: the one it displaces
  // gives its lease back too (it is looked up again when it is the head again).
  if (!waiting_.empty()) cache_->Displace(waiting_.front());
  waiting_.push_front(id);
}

ReplicaView Replica::View() const {
  ReplicaView v{cache_.get(), outstanding_};
  for (size_t id : running_) {
    v.prefill_tokens += live_[id].prefill_left;
    v.active_tokens += live_[id].context;
  }
  for (size_t id : waiting_) v.prefill_tokens += InputLen(id) + live_[id].generated;
  return v;
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
  running_.erase(std::find(running_.begin(), running_.end(), id));
  v.running = false;
  if (Status s = cache_->Finish(id, v.context - v.hit, now_); !s.ok()) return s;
  Leave(id);
  out_->output_tokens += OutputLen(id);
  return Status::Ok();
}

void Replica::Reject(size_t id) {
  Live& v = live_[id];
  v.admitted = v.first_token = now_;
  Leave(id);
  out_->requests[id].rejected = true;
  ++out_->rejected;
}

void Replica::Leave(size_t id) {
  const Live& v = live_[id];
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
  out_->last_finish = std::max(out_->last_finish, now_);
}

Status Replica::StartStep(std::vector<size_t>* rejected) {
  // 1. Every decoding request writes the KV of one more token this step; preempt the most
  // recently admitted until that fits.
  decoding_.clear();
  for (size_t id : running_) {
    if (live_[id].decoding) decoding_.push_back(id);
  }
  // Then the memory in use must fit (content pinned by running requests may be over after a
  // completion or a chunk that the cache took in over its capacity).
  size_t grown = 0;
  while (true) {
    if (grown < decoding_.size()) {
      auto g = cache_->Grow(std::span(decoding_).subspan(grown));
      if (!g.ok()) return g.status();
      grown += *g;
    }
    if (grown == decoding_.size()) {
      auto f = cache_->Fits();
      if (!f.ok()) return f.status();
      if (*f) break;
    }
    if (running_.empty()) break;  // only pinned content is over: admission sorts it out
    // Decoding requests are a subsequence of running_ in admission order: the last running one,
    // if it decodes, is the last of decoding_ (it may have grown: its memory goes with it).
    if (live_[running_.back()].decoding) {
      decoding_.pop_back();
      grown = std::min(grown, decoding_.size());
    }
    PreemptLast();
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
    const int64_t prefill_end = InputLen(id) + v.generated;
    EngineLookup found;
    auto admitted = cache_->Admit(id, prefill_end, running_.empty(), now_, &found);
    if (!admitted.ok()) return admitted.status();
    if (*admitted == AdmitOutcome::kWait) break;  // wait for memory (head-of-line blocking)
    waiting_.pop_front();
    if (*admitted == AdmitOutcome::kRejected) {
      Reject(id);
      rejected->push_back(id);
      continue;
    }
    v.hit = found.reusable_tokens;
    v.matched = found.attention_hit_tokens;
    v.running = true;
    v.decoding = false;
    v.prefill_left = prefill_end - v.hit;
    v.context = v.hit;
    if (v.admitted < 0) v.admitted = now_;
    running_.push_back(id);
    add_chunk(id);
  }
  // 4. The memory invariant, checked every step.
  const MemoryUse use = cache_->Use();
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
    // Every request it had was rejected: no step.
    if (!busy()) return Status::Ok();
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
    if (Status s = cache_->Computed(it.id, v.context, now_); !s.ok()) return s;
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
  out_->cache_flushes += cache_->flushes();
}

}  // namespace marconi::sim::serving
