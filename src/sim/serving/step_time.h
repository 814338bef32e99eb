// The roofline time of one engine step: a batch of prefill chunks and decode tokens run through
// every layer of the model once. FLOPs come from the ModelSpec; bytes are the weights (read once
// per step, whatever the batch), the KV the attention reads and writes, and the recurrent states
// read and written.
#ifndef MARCONI_SIM_SERVING_STEP_TIME_H_
#define MARCONI_SIM_SERVING_STEP_TIME_H_

#include <cstdint>

#include "marconi/model_spec.h"
#include "sim/serving/device.h"

namespace marconi::sim::serving {

// Parameters of the model's layers x dtype bytes: what one step reads from HBM before any KV.
// Embedding and LM head are left out (ModelSpec has no vocabulary size); a MoE layer counts all
// its experts (a large batch touches all of them). The formulas are in docs/serving.md.
int64_t WeightBytes(const ModelSpec& model);

// FLOPs and bytes of a batch, accumulated one sequence at a time.
struct StepCost {
  double flops = 0;
  double bytes = 0;  // excluding the weights
  int64_t tokens = 0;
  int64_t sequences = 0;
};

class StepTimeModel {
 public:
  StepTimeModel(const ModelSpec& model, const DeviceSpec& device);

  // Adds one sequence computing `tokens` new tokens after `context` tokens already held (its
  // cached prefix, earlier chunks, generated tokens): ModelSpec::PrefillFlops(context, tokens)
  // FLOPs; context x kv read, tokens x kv written, and its state read and written once.
  void Add(int64_t context, int64_t tokens, StepCost* cost) const;
  // max(FLOPs / achieved FLOP/s, (weights + bytes) / achieved bandwidth) + the device's step
  // overhead; 0 for an
  // empty batch.
  double Seconds(const StepCost& cost) const;
  // The no-load prefill of `tokens` after `cached`: one step per chunk of min(chunk, tokens
  // left), each alone in its batch. What the serving model's TTFT is at a vanishing arrival rate.
  double PrefillSeconds(int64_t cached, int64_t tokens, int64_t chunk) const;

  int64_t weight_bytes() const { return weight_bytes_; }
  const ModelSpec& model() const { return model_; }

 private:
  const ModelSpec& model_;
  DeviceSpec device_;
  int64_t weight_bytes_ = 0;
  double kv_ = 0, state_ = 0;
};

}  // namespace marconi::sim::serving

#endif  // MARCONI_SIM_SERVING_STEP_TIME_H_
