// The cache side of a replica for an emulated engine: its own pools hold the running requests'
// KV and state slots next to the cached content, and it admits, evicts and inserts by its own
// rules through EngineCache's request protocol (engine_cache.h). This adapter only translates.
#include <string>

#include "sim/serving/served_cache.h"

namespace marconi::sim::serving {
namespace {

class ServedEngine final : public ServedCache {
 public:
  ServedEngine(const Trace& trace, const ModelSpec& model, std::unique_ptr<EngineCache> engine,
               std::string_view name)
      : trace_(trace), model_(model), engine_(std::move(engine)), name_(name) {}

  EngineLookup Peek(std::span<const Token> input) const override { return engine_->Peek(input); }

  Result<AdmitOutcome> Admit(size_t id, int64_t prefill_end, bool alone, double now,
                             EngineLookup* found) override {
    const TraceRequest& r = trace_.requests[id];
    // The prefill's KV past the hit is held from admission, as for every served system.
    switch (engine_->Admit(id, r.input, r.output, prefill_end, EngineCache::kReserveToPrefillEnd,
                           now, found)) {
      case EngineAdmit::kAdmitted:
        // Counted at every admission's lookup (a preempted request's again), as PrefixCache
        // counts at every BeginRequest: the two kinds of rows count alike.
        engine_->CountRequest(model_, static_cast<int64_t>(r.input.size()), *found);
        return AdmitOutcome::kAdmitted;
      case EngineAdmit::kNoRoom:
        if (!alone) return AdmitOutcome::kWait;
        // Nothing runs and nothing else could free memory: waiting would never end.
        return Status::FailedPrecondition(name_ + ": request " + std::to_string(id) + " (" +
                                          std::to_string(r.input.size()) +
                                          " input tokens) finds no room with nothing else running");
      case EngineAdmit::kTooLarge:
        break;
    }
    return AdmitOutcome::kRejected;
  }

  // The engine's pools hold everything: nothing it admitted or reserved can be over.
  Result<bool> Fits() override { return true; }

  Result<size_t> Grow(std::span<const size_t> ids) override {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!engine_->Reserve(ids[i], 1)) return i;
    }
    return ids.size();
  }

  Status Computed(size_t id, int64_t pos, double /*now*/) override {
    engine_->Computed(id, pos);
    return Status::Ok();
  }

  Status Finish(size_t id, int64_t /*computed*/, double now) override {
    engine_->Finish(id, now);
    return Status::Ok();
  }

  void Preempt(size_t id) override { engine_->Abort(id); }
  void Displace(size_t) override {}  // a waiting request holds nothing in an engine

  MemoryUse Use() const override { return engine_->Memory(); }
  const CacheStats* stats() const override { return &engine_->stats(); }
  std::map<std::string, double> DerivedSizes() const override { return engine_->DerivedSizes(); }

 private:
  const Trace& trace_;
  const ModelSpec& model_;
  std::unique_ptr<EngineCache> engine_;
  std::string name_;
};

}  // namespace

std::unique_ptr<ServedCache> MakeServedEngine(const Trace& trace, const ModelSpec& model,
                                              std::unique_ptr<EngineCache> engine,
                                              std::string_view name) {
  return std::make_unique<ServedEngine>(trace, model, std::move(engine), name);
}

}  // namespace marconi::sim::serving
