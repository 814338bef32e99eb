// The request protocol of PrefixCache: BeginRequest, PlanDecode, InsertChunk, CompleteRequest.
// Every call validates its whole input before the first mutation, so a rejected call changes
// nothing (the handle included).
#include <algorithm>
#include <string>

#include "cache/prefix_cache_impl.h"
#include "marconi/prefix_cache.h"

namespace marconi {

using internal::Node;
using internal::RadixTree;

Result<RequestHandle> PrefixCache::BeginRequest(std::span<const Token> input, Timestamp now) {
  if (input.empty()) return Status::InvalidArgument("BeginRequest: empty input");
  if (Status s = impl_->CheckTime(now); !s.ok()) return s;
  impl_->AdvanceTime(now);
  ++impl_->clock;
  const int64_t n = static_cast<int64_t>(input.size());
  RequestHandle h;
  h.input_tokens_ = n;
  NodeId deepest = RadixTree::kRoot;
  h.lookup_ = impl_->Lookup(input, &deepest);
  const int64_t hit = h.lookup_.reusable_tokens;
  CacheStats& st = impl_->stats;
  ++st.requests;
  if (h.lookup_.whole_input_cached) ++st.last_token_recomputes;
  st.input_tokens += n;
  st.hit_tokens += hit;
  st.matched_tokens += h.lookup_.matched_tokens;
  st.flops_saved += impl_->model.FlopsSaved(hit, n);
  st.flops_without_cache += impl_->model.PrefillFlops(0, n);
  if (h.lookup_.resume_node != kNoNode) {
    ++st.hit_requests;
    Node& node = impl_->tree.node(h.lookup_.resume_node);
    ++node.hits;
    ++node.pins;
    h.lease_ = Lease(this, h.lookup_.resume_node);
    h.resume_tokens_ = hit;
    h.resume_payload_ = h.lookup_.resume_payload;
  }
  if (impl_->eviction->touches_path()) {
    // LRU over leaves refreshes every node the lookup went through, the one whose edge matched
    // only partly included (as SGLang's _match_prefix_helper does), hit or not.
    if (deepest != RadixTree::kRoot) impl_->Touch(deepest, now);
  } else if (h.lookup_.resume_node != kNoNode) {
    impl_->Touch(h.lookup_.resume_node, now);  // only the state actually used
  }
  const AdmissionContext ctx{n, h.lookup_};
  impl_->admission->Observe(ctx);
  impl_->admission->PlanPrefill(ctx, &h.prefill_checkpoints_);
  impl_->AlignPlan(&h.prefill_checkpoints_, hit);
  impl_->SyncPolicy();
  return h;
}

std::vector<int64_t> PrefixCache::PlanDecode(const RequestHandle& request,
                                             int64_t output_tokens) const {
  std::vector<int64_t> positions;
  const AdmissionContext ctx{request.input_tokens_, request.lookup_};
  impl_->admission->PlanDecode(ctx, output_tokens, &positions);
  // With pages, a floored position may fall inside the input (capture it while prefilling, or
  // leave it out of what CompleteRequest is told). Only 0 is dropped, so that at page size 1 the
  // plan is the policy's exactly.
  impl_->AlignPlan(&positions, 0);
  return positions;
}

Status PrefixCache::CompleteRequest(RequestHandle request, std::span<const Token> input,
                                    std::span<const Token> output, Timestamp now) {
  std::vector<int64_t> positions = PlanDecode(request, static_cast<int64_t>(output.size()));
  positions.insert(positions.end(), request.prefill_checkpoints_.begin(),
                   request.prefill_checkpoints_.end());
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  return CompleteRequest(std::move(request), input, output, now, positions);
}

Status PrefixCache::CompleteRequest(RequestHandle request, std::span<const Token> input,
                                    std::span<const Token> output, Timestamp now,
                                    std::span<const int64_t> positions,
                                    std::span<const uint64_t> payloads) {
  if (input.empty()) return Status::InvalidArgument("CompleteRequest: empty input");
  if (static_cast<int64_t>(input.size()) != request.input_tokens_) {
    return Status::InvalidArgument("CompleteRequest: input has " + std::to_string(input.size()) +
                                   " tokens, BeginRequest's had " +
                                   std::to_string(request.input_tokens_));
  }
  if (request.lease_.held() && request.lease_.cache_ != this) {
    return Status::InvalidArgument("CompleteRequest: the request was begun on another cache");
  }
  // The resume node stays held through the insert (InsertImpl pins it with the new states).
  const NodeId resume = request.lease_.held() ? request.lease_.node() : kNoNode;
  request.lease_.Release();
  if (positions.empty()) return Status::Ok();  // the policy admits nothing for this request
  std::vector<Token> sequence;
  sequence.reserve(input.size() + output.size());
  sequence.insert(sequence.end(), input.begin(), input.end());
  sequence.insert(sequence.end(), output.begin(), output.end());
  return impl_->InsertImpl(sequence, positions, now, resume, nullptr, payloads);
}

Status PrefixCache::InsertChunk(RequestHandle& request, std::span<const Token> input,
                                int64_t computed_tokens, std::span<const int64_t> captured,
                                Timestamp now, std::span<const uint64_t> payloads) {
  // Plan: everything InsertImpl would refuse is refused here, before the old pin is released.
  const int64_t n = static_cast<int64_t>(input.size());
  if (n == 0 || n != request.input_tokens_) {
    return Status::InvalidArgument("InsertChunk: input has " + std::to_string(n) +
                                   " tokens, BeginRequest's had " +
                                   std::to_string(request.input_tokens_));
  }
  if (request.lease_.held() && request.lease_.cache_ != this) {
    return Status::InvalidArgument("InsertChunk: the request was begun on another cache");
  }
  const int64_t resume = request.resume_tokens();
  if (computed_tokens <= resume || computed_tokens > n) {
    return Status::InvalidArgument("InsertChunk: computed_tokens " +
                                   std::to_string(computed_tokens) + " must be in [" +
                                   std::to_string(resume + 1) + ", " + std::to_string(n) +
                                   "] (after the resume point, within the input)");
  }
  if (Status s = impl_->CheckPositions("InsertChunk", captured, resume, computed_tokens); !s.ok()) {
    return s;
  }
  if (Status s = Impl::CheckPayloads("InsertChunk", payloads, captured.size()); !s.ok()) return s;
  if (Status s = impl_->CheckTime(now); !s.ok()) return s;
  if (captured.empty()) return Status::Ok();  // nothing held yet past the resume point

  // Mutate: the old resume node is held through the insert, as CompleteRequest holds it, and the
  // deepest new state takes over the pin. The old one becomes evictable: the request resumes
  // (after a preemption, say) from the new one.
  const NodeId old = request.lease_.held() ? request.lease_.node() : kNoNode;
  request.lease_.Release();
  NodeId pinned = kNoNode;
  const Status s = impl_->InsertImpl(input.first(static_cast<size_t>(captured.back())), captured,
                                     now, old, &pinned, payloads);
  if (pinned != kNoNode) {  // always, as everything InsertImpl checks was checked above
    request.lease_ = Lease(this, pinned);
    request.resume_tokens_ = captured.back();
    request.resume_payload_ = impl_->tree.node(pinned).payload;  // the kept one if not adopted
  }
  return s;
}

}  // namespace marconi
