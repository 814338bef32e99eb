// PrefixCache: a radix-tree prefix cache for hybrid models holding attention KV and recurrent
// (SSM) state checkpoints together.
//
// An edge of the tree holds the KV of its tokens; a node may hold one checkpoint: the recurrent
// state of every token from the root to it. A request can skip its first p tokens only if a node
// at depth p on its path holds a checkpoint and every token before p is cached (exact match: no
// resumption from a partially matched edge). Tokens after the last checkpoint of a path are never
// stored, since they could not be resumed from.
//
// Typical use by an engine, per request:
//   auto req = cache.BeginRequest(input, now);       // lookup, statistics, pin, plan
//   prefill from req->resume_tokens() (the state the engine stored as req->resume_payload()),
//   capturing states at req->prefill_checkpoints(); a long prefill may hand over each computed
//   chunk with cache.InsertChunk(*req, input, computed, captured, now, payloads), which moves
//   the pin forward; decode, capturing states at cache.PlanDecode(*req, output_length); then
//   cache.CompleteRequest(std::move(*req), input, output, now, positions_captured, payloads)
//   (or without positions: every planned one is taken as captured). The listener frees what
//   the cache evicts or does not adopt (CacheListener).
//
// Thread safety: none. A PrefixCache must be used by one thread at a time; const methods may run
// concurrently with each other. Clones are independent objects.
#ifndef MARCONI_PREFIX_CACHE_H_
#define MARCONI_PREFIX_CACHE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "marconi/admission_policy.h"
#include "marconi/cache_listener.h"
#include "marconi/cache_stats.h"
#include "marconi/eviction_policy.h"
#include "marconi/model_spec.h"
#include "marconi/status.h"
#include "marconi/types.h"

namespace marconi {

class PrefixCache;

struct PrefixCacheConfig {
  // Total bytes for KV and states together. Must hold at least one checkpoint and one token of
  // KV. Use kUnlimited for no limit.
  int64_t capacity_bytes = kUnlimited;
  // Optional separate budgets (kUnlimited = none). Eviction continues until every budget holds.
  int64_t kv_capacity_bytes = kUnlimited;
  int64_t state_capacity_bytes = kUnlimited;
  // An engine computes at least the last input token, whose logits give the first output: with
  // this set, a state at the very end of the input is not a resume point, and a lookup resumes
  // from the deepest state before it (reusable_tokens <= input length - 1), as every serving
  // engine does. Requests that this kept from a whole-input hit are counted in
  // CacheStats::last_token_recomputes. Off: the paper's convention (a whole-input hit skips all).
  bool leave_last_token = false;
  // Page granularity, as paged engines store KV (SGLang's and vLLM's page or block size): states
  // only at multiples of page_size, so that every hit and insert ends on a page boundary. The
  // cache floors its plans to page boundaries (dropping 0, positions at or before the resume
  // point, and duplicates), floors LookupResult::matched_tokens and branch_point, and rejects an
  // unaligned checkpoint position with kInvalidArgument (the engine holds no state there that a
  // paged engine could resume from). In [1, kMaxPageSize]; 1 = token granularity.
  // Approximation: the tree still shares KV token by token, so two sequences diverging inside a
  // page share its first tokens in the accounting while a paged engine stores that page twice:
  // under by less than page_size tokens of KV per such branch.
  int64_t page_size = 1;

  static constexpr int64_t kUnlimited = INT64_MAX;
  static constexpr int64_t kMaxPageSize = int64_t{1} << 20;
};

// Keeps a node pinned while a request uses it: a pinned node is never evicted, so the request's
// resume point stays valid. Move-only; releasing (destruction or Release()) unpins. Must not
// outlive its cache: destroying a cache while one of its leases is held aborts the program.
class Lease {
 public:
  Lease() = default;
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();

  NodeId node() const { return node_; }
  bool held() const { return cache_ != nullptr; }
  // Unpins now. Idempotent.
  void Release();

 private:
  friend class PrefixCache;
  Lease(PrefixCache* cache, NodeId node);
  PrefixCache* cache_ = nullptr;
  NodeId node_ = kNoNode;
};

// What BeginRequest found and decided for one request, and the pin that keeps its resume point
// alive. Read-only: only the cache sets its fields (an engine that edited them could make the
// cache account for states nobody holds, or count a request twice). Move-only, like its Lease.
// Destroying a handle (or Release()) abandons the request: the pin goes, nothing is inserted.
// A default-constructed handle belongs to no request and holds nothing.
class RequestHandle {
 public:
  RequestHandle() = default;
  RequestHandle(RequestHandle&&) noexcept = default;
  RequestHandle& operator=(RequestHandle&&) noexcept = default;
  RequestHandle(const RequestHandle&) = delete;
  RequestHandle& operator=(const RequestHandle&) = delete;

  // What the lookup at BeginRequest found (what the statistics counted).
  const LookupResult& lookup() const { return lookup_; }
  // The input's length.
  int64_t input_tokens() const { return input_tokens_; }
  // Input positions whose state the prefill must capture (from the admission policy).
  const std::vector<int64_t>& prefill_checkpoints() const { return prefill_checkpoints_; }
  // Whether the handle pins a node (its resume point); false when there was no hit.
  bool holds_lease() const { return lease_.held(); }
  // Depth of the state the handle pins: lookup().reusable_tokens after BeginRequest, the deepest
  // position of the last InsertChunk after one; 0 when no pin is held. The request can always
  // restart from here (a preempted request resumes from it).
  int64_t resume_tokens() const { return lease_.held() ? resume_tokens_ : 0; }
  // The node the handle pins, or kNoNode.
  NodeId resume_node() const { return lease_.node(); }
  // The engine's payload of the pinned state (0 when none is pinned, or it has none): after an
  // InsertChunk whose state was already cached, the stored payload, not the one offered.
  uint64_t resume_payload() const { return lease_.held() ? resume_payload_ : 0; }
  const Lease& lease() const { return lease_; }
  // Unpins now and abandons the request (CompleteRequest still works, as for a miss). Idempotent.
  void Release() { lease_.Release(); }

 private:
  friend class PrefixCache;
  LookupResult lookup_;
  int64_t input_tokens_ = 0;
  std::vector<int64_t> prefill_checkpoints_;
  int64_t resume_tokens_ = 0;    // the depth of lease_'s node
  uint64_t resume_payload_ = 0;  // its payload
  Lease lease_;  // pins the resume node: the lookup's, or the last InsertChunk's (or none)
};

class PrefixCache {
 public:
  // Fails with kInvalidArgument when a capacity is <= 0 or smaller than one checkpoint plus one
  // token of KV, page_size is outside [1, kMaxPageSize], or a policy is null. Takes ownership of
  // both policies.
  static Result<std::unique_ptr<PrefixCache>> Create(const PrefixCacheConfig& config,
                                                     ModelSpec model,
                                                     std::unique_ptr<AdmissionPolicy> admission,
                                                     std::unique_ptr<EvictionPolicy> eviction);
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  // Pure query: what `tokens` would find. Does not touch, pin or count. O(matched length +
  // depth x log(children)).
  LookupResult Lookup(std::span<const Token> tokens) const;

  // Starts a request: Lookup, counts it in the statistics, marks the node used as accessed at
  // `now`, pins it, and asks the admission policy for the prefill checkpoints.
  // Errors (nothing changed): kInvalidArgument for an empty input, a non-finite `now` or a `now`
  // earlier than a previous call's.
  Result<RequestHandle> BeginRequest(std::span<const Token> input, Timestamp now);

  // Finishes a request begun with BeginRequest: releases its lease, asks the admission policy for
  // the decode checkpoints and inserts input + output with every planned checkpoint. `input` must
  // be the one given to BeginRequest (kInvalidArgument if its length differs). Errors as for
  // Insert. The handle is consumed either way: on an error nothing is inserted and the pin goes.
  Status CompleteRequest(RequestHandle request, std::span<const Token> input,
                         std::span<const Token> output, Timestamp now);

  // The decode checkpoints the admission policy plans for `request` if it produces
  // `output_tokens` tokens: ascending positions in (input length, input length + output_tokens].
  // Pure and deterministic: what CompleteRequest(request, input, output, now) adds to
  // request.prefill_checkpoints(). An engine captures the state at each while decoding. With
  // page_size > 1 they are floored to page boundaries and may fall inside the input: an engine
  // asks before prefilling and captures those there (or leaves them out of `captured`).
  std::vector<int64_t> PlanDecode(const RequestHandle& request, int64_t output_tokens) const;

  // Chunked prefill (SGLang's cache_unfinished_req): caches what a long prefill has computed so
  // far, input[0, computed_tokens), up to the last of `captured`, the positions whose state the
  // engine now holds (strictly increasing, in (request.resume_tokens(), computed_tokens]: the
  // handle's planned prefill checkpoints, or any other). Moves the request's pin to the deepest
  // of them and releases the old one, so what the request needs stays and the earlier resume
  // node becomes evictable; request.resume_tokens() is then captured.back(). The pinned states,
  // old and new, are never victims of this call's evictions. Counted as an insert (the request
  // was counted by BeginRequest; CompleteRequest later counts one more insert, no request).
  // Nothing is inserted when `captured` is empty. `input` is BeginRequest's whole input.
  // Errors (nothing changed, the handle included): kInvalidArgument when input's length differs
  // from BeginRequest's, computed_tokens is not in (resume_tokens(), input length], a position
  // is bad, or `now` is. kResourceExhausted as for Insert: the content is in and the pin moved.
  // `payloads`: as for Insert.
  Status InsertChunk(RequestHandle& request, std::span<const Token> input, int64_t computed_tokens,
                     std::span<const int64_t> captured, Timestamp now,
                     std::span<const uint64_t> payloads = {});

  // Finishes a request with the states the engine actually holds, at `captured` (strictly
  // increasing positions in [1, input + output]; usually the plans minus what it could not
  // capture, such as a prefill position at or before its resume point, plus states it holds
  // already). The cache never accounts for a state nobody holds. Releases the lease and inserts
  // input + output up to the last of them; nothing when `captured` is empty. `payloads`: as for
  // Insert. Errors as for Insert, and a length of `input` other than BeginRequest's; the handle
  // is consumed either way (on an error nothing is inserted and the pin goes).
  Status CompleteRequest(RequestHandle request, std::span<const Token> input,
                         std::span<const Token> output, Timestamp now,
                         std::span<const int64_t> captured,
                         std::span<const uint64_t> payloads = {});

  // Caches `sequence` up to its last checkpoint position, storing a state at each position in
  // `checkpoints` (strictly increasing, in [1, sequence.size()], multiples of page_size), then
  // evicts until every budget holds. Existing shared prefixes are reused; re-admitted checkpoints
  // are refreshed to `now`. Errors: kInvalidArgument (nothing changed) for an empty sequence or
  // checkpoint list, a bad position or timestamp. kResourceExhausted when the content is inserted
  // but pinned nodes keep the cache over capacity: every unpinned candidate has been evicted, the
  // invariants hold and over_capacity_inserts is incremented.
  //
  // Engine payloads: `payloads`, if not empty, has one entry per checkpoint position, the
  // engine's own handle of that state (a state slot id; the engine can key its KV pages by it
  // too). The cache stores it with the state and hands it back in LookupResult::resume_payload,
  // RequestHandle::resume_payload and EvictionEvent::payload. A position that already holds a
  // state keeps its payload: an offered one that differs is not adopted, and the listener's
  // OnNotAdopted says so (the engine frees it). States stored without payloads have payload 0.
  // kInvalidArgument (nothing changed) when `payloads` is neither empty nor parallel.
  Status Insert(std::span<const Token> sequence, std::span<const int64_t> checkpoints,
                Timestamp now, std::span<const uint64_t> payloads = {});

  // Changes the total capacity (PrefixCacheConfig::capacity_bytes; the separate budgets are kept)
  // and evicts unpinned content in the eviction policy's order until every budget holds: how a
  // serving engine gives the cache the memory its running requests leave free. Unlike Create,
  // any capacity >= 0 is accepted (0: hold nothing unpinned). Errors: kInvalidArgument (nothing
  // changed) for a negative capacity; kResourceExhausted when pinned content alone exceeds it:
  // the capacity is set, every unpinned candidate has been evicted and the invariants hold.
  // O(evictions x the policy's cost per victim); O(1) when nothing needs evicting.
  Status SetCapacity(int64_t capacity_bytes);

  // Registers `listener` (not owned; nullptr to remove) to be told of every eviction and every
  // payload not adopted from now on.
  // It must outlive its registration. Clones start without a listener. Costs one walk from the
  // evicted node to the root per eviction while a listener is set.
  void SetListener(CacheListener* listener);

  // Changes the eviction policy's alpha (see EvictionPolicy::SetAlpha).
  Status SetAlpha(double alpha);
  double alpha() const;

  // An independent deep copy of the content, statistics and policies. Pins are not copied: the
  // copy has no request in flight. Payloads are copied as they are: they name the engine's
  // slots, which a copy (without a listener) only refers to. O(nodes + cached tokens).
  std::unique_ptr<PrefixCache> Clone() const;

  const CacheStats& stats() const;
  const ModelSpec& model() const;
  const PrefixCacheConfig& config() const;
  const EvictionPolicy& eviction_policy() const;
  const AdmissionPolicy& admission_policy() const;

  // Recomputes every byte counter and structural property from the tree and compares them with
  // the maintained ones, and the policy's candidate set with the one the tree implies. O(nodes +
  // cached tokens); for tests and debugging. Returns the first violation found.
  Status CheckInvariants() const;

 private:
  struct Impl;  // src/cache/prefix_cache_impl.h
  friend class Lease;
  friend Status CheckCacheInvariants(const Impl& impl);  // src/cache/invariant_checker.cc
  explicit PrefixCache(std::unique_ptr<Impl> impl);
  void Unpin(NodeId node);
  std::unique_ptr<Impl> impl_;
  int64_t live_leases_ = 0;  // Leases of this cache held now (see ~PrefixCache)
};

}  // namespace marconi

#endif  // MARCONI_PREFIX_CACHE_H_
