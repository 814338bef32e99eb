// One serving replica: a device with its own cache, memory budget, FCFS queue and running
// batch (the scheduler of docs/serving.md). The event loop in scheduler.cc drives one or more
// of them in time order: it hands each arriving request to a replica (Arrive), starts a step
// when a replica has work (StartStep) and ends it at its end time (EndStep).
#ifndef MARCONI_SIM_SERVING_REPLICA_H_
#define MARCONI_SIM_SERVING_REPLICA_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "marconi/status.h"
#include "sim/serving/scheduler.h"
#include "sim/serving/served_cache.h"

namespace marconi::sim::serving {

class Replica {
 public:
  // `out` is shared by every replica of a run: each writes the records of the requests it
  // finishes, adds its counters and raises the peaks.
  Replica(size_t index, const Trace& trace, const SimConfig& config, const ServingConfig& serving,
          int64_t budget, std::unique_ptr<ServedCache> cache, ServingResult* out);

  const ServedCache& cache() const { return *cache_; }
  // What a router sees of it now.
  ReplicaView View() const;
  // Requests handed to it and not finished.
  int64_t outstanding() const { return outstanding_; }
  // Has requests running or waiting (and so a step to start when not in one).
  bool busy() const { return !running_.empty() || !waiting_.empty(); }
  bool in_step() const { return in_step_; }
  // The start of its next step (when busy and not in a step) or the end of the current one.
  double now() const { return now_; }
  double step_end() const { return step_end_; }

  // Request `id` arrives at time `t` (not before the previous event).
  void Arrive(size_t id, double t);
  // Starts a step at now(): preemption, the batch, admission, the memory invariant. Requests
  // rejected at admission (they do not fit even alone) are appended to `rejected`; if that leaves
  // nothing to run, no step starts.
  Status StartStep(std::vector<size_t>* rejected);
  // Ends the step at step_end(): finished requests complete in the cache and are appended to
  // `finished`.
  Status EndStep(std::vector<size_t>* finished);
  // Adds its counters and occupancy to `out` at the end of the run.
  void Close(double end);

 private:
  // A request's progress in the engine (its memory and its hold on the cache are the
  // ServedCache's).
  struct Live {
    int64_t hit = 0;
    int64_t matched = 0;  // the lookup's attention-hit depth
    int64_t prefill_left = 0;
    int64_t context = 0;  // tokens whose KV it holds or shares: hit + computed
    int64_t generated = 0;
    bool running = false;
    bool decoding = false;
    double admitted = -1, first_token = -1;
    int64_t preemptions = 0;
  };
  // Little's law's L x T, by events: += n x (t - last) at each change of n.
  struct Occupancy {
    double integral = 0, last = 0;
    int64_t in_system = 0;
    void Advance(double t) {
      integral += static_cast<double>(in_system) * (t - last);
      last = t;
    }
  };
  struct Item {
    size_t id;
    int64_t tokens;  // 0: a decode
  };

  const TraceRequest& req(size_t i) const { return trace_.requests[i]; }
  int64_t InputLen(size_t i) const { return static_cast<int64_t>(req(i).input.size()); }
  int64_t OutputLen(size_t i) const {
    return std::max<int64_t>(1, static_cast<int64_t>(req(i).output.size()));
  }
  // Preempts the most recently admitted running request.
  void PreemptLast();
  Status Finish(size_t id);
  // A request that can never run: answered with an error now.
  void Reject(size_t id);
  // A request leaves the system (finished or rejected): its record and the occupancy.
  void Leave(size_t id);

  const size_t index_;
  const Trace& trace_;
  const ServingConfig& serving_;
  const int64_t budget_;
  std::unique_ptr<ServedCache> cache_;
  StepTimeModel time_;
  ServingResult* out_;
  std::vector<Live> live_;       // by request (only those handed to it are used)
  std::vector<double> arrival_;  // by request
  std::deque<size_t> waiting_;
  std::vector<size_t> running_;  // in admission order
  int64_t outstanding_ = 0;
  double now_ = 0, step_end_ = 0;
  bool in_step_ = false;
  std::vector<Item> items_;  // the current step's batch
  Occupancy occupancy_;
  int64_t preemptions_ = 0, recomputed_ = 0;
  std::vector<size_t> decoding_;  // scratch: the decoding requests of a step
};

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_REPLICA_H_
