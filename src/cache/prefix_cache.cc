#include "marconi/prefix_cache.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "cache/prefix_cache_impl.h"

namespace marconi {

using internal::Node;
using internal::RadixTree;

// ---------------------------------------------------------------------------------------------
// Lease

Lease::Lease(PrefixCache* cache, NodeId node) : cache_(cache), node_(node) {
  ++cache_->live_leases_;
}

Lease::Lease(Lease&& other) noexcept : cache_(other.cache_), node_(other.node_) {
  other.cache_ = nullptr;
  other.node_ = kNoNode;
}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    cache_ = other.cache_;
    node_ = other.node_;
    other.cache_ = nullptr;
    other.node_ = kNoNode;
  }
  return *this;
}

Lease::~Lease() { Release(); }

void Lease::Release() {
  if (cache_ != nullptr) {
    cache_->Unpin(node_);
    --cache_->live_leases_;
  }
  cache_ = nullptr;
  node_ = kNoNode;
}

// ---------------------------------------------------------------------------------------------
// Impl

LookupResult PrefixCache::Impl::Lookup(std::span<const Token> q, NodeId* deepest) const {
  LookupResult r;
  const int64_t n = static_cast<int64_t>(q.size());
  NodeId at = RadixTree::kRoot;
  if (deepest != nullptr) *deepest = RadixTree::kRoot;
  int64_t pos = 0;
  while (pos < n) {
    const NodeId child = tree.FindChild(at, q[static_cast<size_t>(pos)]);
    if (child == kNoNode) {
      // The query leaves the tree at a node. Inserting it adds a child there: that is a new
      // branch worth a checkpoint unless the node already has one (or is the root, or a leaf,
      // whose continuation is the conversation case served by the last-token checkpoint).
      const Node& a = tree.node(at);
      if (at != RadixTree::kRoot && !a.has_checkpoint && !a.children.empty()) r.branch_point = pos;
      break;
    }
    const Node& c = tree.node(child);
    const auto rest = q.subspan(static_cast<size_t>(pos));
    const int64_t k = internal::CommonPrefix(
        c.edge.data(), rest.data(), static_cast<int64_t>(std::min(c.edge.size(), rest.size())));
    if (k < static_cast<int64_t>(c.edge.size())) {
      // Partial edge: never a resume point (the authors' prototype wrongly continued here).
      if (pos + k < n) r.branch_point = pos + k;
      if (deepest != nullptr && k > 0) *deepest = child;
      pos += k;
      break;
    }
    pos += k;
    at = child;
    if (deepest != nullptr) *deepest = child;
    if (c.has_checkpoint) {
      if (pos == n && config.leave_last_token) {
        r.whole_input_cached = true;  // the engine computes the last token: resume before it
      } else {
        r.reusable_tokens = pos;
        r.resume_node = child;
        r.resume_payload = c.payload;
      }
    }
  }
  // Pages: an engine reuses whole pages only (hits are at checkpoints, which are aligned).
  const int64_t page = config.page_size;
  r.matched_tokens = pos / page * page;
  r.branch_point = r.branch_point / page * page;
  return r;
}

Status PrefixCache::Impl::CheckTime(Timestamp now) const {
  if (!std::isfinite(now)) return Status::InvalidArgument("timestamp is not finite");
  if (any_call && now < last_now) {
    return Status::InvalidArgument("timestamp " + std::to_string(now) +
                                   " is earlier than the previous call's " +
                                   std::to_string(last_now));
  }
  return Status::Ok();
}

void PrefixCache::Impl::AlignPlan(std::vector<int64_t>* positions, int64_t above) const {
  const int64_t page = config.page_size;
  for (int64_t& p : *positions) p = p / page * page;
  std::erase_if(*positions, [&](int64_t p) { return p <= above; });
  std::sort(positions->begin(), positions->end());
  positions->erase(std::unique(positions->begin(), positions->end()), positions->end());
}

void PrefixCache::Impl::AdvanceTime(Timestamp now) {
  last_now = now;
  any_call = true;
}

bool PrefixCache::Impl::IsCandidate(NodeId id) const {
  const Node& n = tree.node(id);
  if (!n.alive || id == RadixTree::kRoot || !n.has_checkpoint || n.pins > 0) return false;
  const size_t max_children =
      eviction->candidate_scope() == EvictionPolicy::CandidateScope::kLeaves ? 0 : 1;
  return n.children.size() <= max_children;
}

EvictionCandidate PrefixCache::Impl::CandidateOf(NodeId id) const {
  const Node& n = tree.node(id);
  const int64_t parent_depth = n.depth - static_cast<int64_t>(n.edge.size());
  EvictionCandidate c;
  c.node = id;
  c.last_access = n.last_access;
  c.access_seq = n.access_seq;
  c.access_clock = n.access_clock;
  c.hits = n.hits;
  c.depth = n.depth;
  c.flops_saved = model.PrefillFlops(0, n.depth) - model.PrefillFlops(0, parent_depth);
  c.bytes_freed =
      model.StateBytesPerCheckpoint() +
      (n.children.empty() ? static_cast<int64_t>(n.edge.size()) * model.KvBytesPerToken() : 0);
  return c;
}

void PrefixCache::Impl::EraseFromPolicy(NodeId id) {
  Node& n = tree.node(id);
  if (n.in_policy) {
    eviction->Erase(id);
    n.in_policy = false;
  }
}

void PrefixCache::Impl::SyncPolicy() {
  for (NodeId id : tree.TakeDirty()) {
    Node& n = tree.node(id);
    if (!n.alive) continue;
    if (IsCandidate(id)) {
      eviction->Upsert(CandidateOf(id));
      n.in_policy = true;
    } else {
      EraseFromPolicy(id);
    }
  }
}

void PrefixCache::Impl::Stamp(NodeId id, Timestamp now, int64_t seq) {
  Node& n = tree.node(id);
  n.last_access = now;
  n.access_seq = seq;
  n.access_clock = clock;
  tree.MarkDirty(id);
}

void PrefixCache::Impl::StampAccess(NodeId id, Timestamp now, int64_t seq) {
  if (!eviction->touches_path()) {
    Stamp(id, now, seq);
    return;
  }
  for (NodeId at = id; at != RadixTree::kRoot; at = tree.node(at).parent) Stamp(at, now, seq);
}

void PrefixCache::Impl::Touch(NodeId id, Timestamp now) { StampAccess(id, now, ++last_seq); }

void PrefixCache::Impl::SetCheckpoint(NodeId id, Timestamp now, int64_t seq,
                                      const uint64_t* payload, std::span<const Token> path) {
  Node& n = tree.node(id);
  if (n.has_checkpoint && payload != nullptr && *payload != n.payload && listener != nullptr) {
    // The stored state stays: it may be in use (a lease, a lookup the engine acted on).
    listener->OnNotAdopted(NotAdoptedEvent{path, *payload, n.payload});
  }
  if (!n.has_checkpoint) {
    n.payload = payload != nullptr ? *payload : 0;
    n.has_checkpoint = true;
    ++stats.checkpoints;
    ++stats.checkpoints_admitted;
    stats.state_bytes += model.StateBytesPerCheckpoint();
  }
  Stamp(id, now, seq);
}

bool PrefixCache::Impl::OverBudget() const {
  const int64_t total = stats.kv_bytes + stats.state_bytes;
  return total > config.capacity_bytes || stats.kv_bytes > config.kv_capacity_bytes ||
         stats.state_bytes > config.state_capacity_bytes;
}

void PrefixCache::Impl::NotifyEviction(NodeId victim, bool leaf) {
  if (listener == nullptr) return;
  const Node& v = tree.node(victim);
  path_buffer.resize(static_cast<size_t>(v.depth));
  for (NodeId id = victim; id != RadixTree::kRoot; id = tree.node(id).parent) {
    const Node& n = tree.node(id);
    std::copy(n.edge.begin(), n.edge.end(),
              path_buffer.begin() + (n.depth - static_cast<int64_t>(n.edge.size())));
  }
  const int64_t kv_begin = leaf ? v.depth - static_cast<int64_t>(v.edge.size()) : v.depth;
  listener->OnEvicted(EvictionEvent{path_buffer, kv_begin, v.payload});
}

void PrefixCache::Impl::Evict(NodeId victim) {
  NotifyEviction(victim, tree.node(victim).children.empty());
  eviction->OnEvicted(CandidateOf(victim));
  EraseFromPolicy(victim);
  Node& v = tree.node(victim);
  v.has_checkpoint = false;
  v.payload = 0;
  --stats.checkpoints;
  stats.state_bytes -= model.StateBytesPerCheckpoint();
  ++stats.evictions;
  ++stats.evicted_checkpoints;
  if (!v.children.empty()) {
    // One child: the state goes, the KV stays, carried by the child.
    tree.MergeIntoChild(victim);
    return;
  }
  const NodeId parent = v.parent;
  const int64_t tokens = static_cast<int64_t>(v.edge.size());
  stats.cached_tokens -= tokens;
  stats.kv_bytes -= tokens * model.KvBytesPerToken();
  stats.evicted_tokens += tokens;
  tree.RemoveLeaf(victim);
  const Node& p = tree.node(parent);
  if (parent != RadixTree::kRoot && !p.has_checkpoint && p.children.size() == 1) {
    // A stateless node with one child is no branch any more: compress the path.
    EraseFromPolicy(parent);
    tree.MergeIntoChild(parent);
  }
}

void PrefixCache::Impl::UpdatePeaks() {
  stats.nodes = tree.size();
  stats.peak_kv_bytes = std::max(stats.peak_kv_bytes, stats.kv_bytes);
  stats.peak_state_bytes = std::max(stats.peak_state_bytes, stats.state_bytes);
  stats.peak_bytes = std::max(stats.peak_bytes, stats.kv_bytes + stats.state_bytes);
}

Status PrefixCache::Impl::CheckPositions(const char* call, std::span<const int64_t> positions,
                                         int64_t above, int64_t len) const {
  for (size_t i = 0; i < positions.size(); ++i) {
    const int64_t p = positions[i];
    if (p <= above || p > len || (i > 0 && p <= positions[i - 1])) {
      return Status::InvalidArgument(std::string(call) + ": checkpoint position " +
                                     std::to_string(p) + " at index " + std::to_string(i) +
                                     " must be in [" + std::to_string(above + 1) + ", " +
                                     std::to_string(len) + "] and above the previous one");
    }
    if (p % config.page_size != 0) {
      return Status::InvalidArgument(std::string(call) + ": checkpoint position " +
                                     std::to_string(p) + " at index " + std::to_string(i) +
                                     " is not a multiple of page_size " +
                                     std::to_string(config.page_size));
    }
  }
  return Status::Ok();
}

Status PrefixCache::Impl::CheckPayloads(const char* call, std::span<const uint64_t> payloads,
                                        size_t positions) {
  if (payloads.empty() || payloads.size() == positions) return Status::Ok();
  return Status::InvalidArgument(std::string(call) + ": " + std::to_string(payloads.size()) +
                                 " payloads for " + std::to_string(positions) +
                                 " checkpoint positions (give one per position, or none)");
}

Status PrefixCache::Impl::InsertImpl(std::span<const Token> seq,
                                     std::span<const int64_t> checkpoints, Timestamp now,
                                     NodeId held, NodeId* pin_last,
                                     std::span<const uint64_t> payloads) {
  // Plan: validate everything before the first mutation, so a rejected call changes nothing.
  if (seq.empty()) return Status::InvalidArgument("Insert: empty sequence");
  if (checkpoints.empty()) return Status::InvalidArgument("Insert: no checkpoint position");
  const int64_t len = static_cast<int64_t>(seq.size());
  if (Status s = CheckPositions("Insert", checkpoints, 0, len); !s.ok()) return s;
  if (Status s = CheckPayloads("Insert", payloads, checkpoints.size()); !s.ok()) return s;
  if (Status s = CheckTime(now); !s.ok()) return s;
  AdvanceTime(now);

  // Mutate: walk and extend the path up to the last checkpoint. The whole insert is one access.
  const int64_t access = ++last_seq;
  const int64_t end = checkpoints.back();
  std::vector<NodeId> own;  // what the inserting request holds: its checkpoints, its resume node
  own.reserve(checkpoints.size() + 1);
  if (held != kNoNode) own.push_back(held);
  NodeId at = RadixTree::kRoot;
  int64_t pos = 0;
  size_t next = 0;
  while (true) {
    if (next < checkpoints.size() && checkpoints[next] == pos) {
      SetCheckpoint(at, now, access, payloads.empty() ? nullptr : &payloads[next],
                    seq.first(static_cast<size_t>(pos)));
      own.push_back(at);
      ++next;
    }
    if (pos == end) break;
    const int64_t target = checkpoints[next];
    const auto rest = seq.subspan(static_cast<size_t>(pos), static_cast<size_t>(target - pos));
    const NodeId child = tree.FindChild(at, rest[0]);
    if (child == kNoNode) {
      at = tree.AddLeaf(at, rest);
      Stamp(at, now, access);
      stats.cached_tokens += target - pos;
      stats.kv_bytes += (target - pos) * model.KvBytesPerToken();
      pos = target;
      continue;
    }
    const auto& edge = tree.node(child).edge;
    const int64_t k = internal::CommonPrefix(
        edge.data(), rest.data(), static_cast<int64_t>(std::min(edge.size(), rest.size())));
    at = k < static_cast<int64_t>(edge.size()) ? tree.Split(child, k) : child;
    pos += k;
  }
  StampAccess(at, now, access);  // `at` holds the last checkpoint: already stamped, or the path
  ++stats.inserts;
  if (pin_last != nullptr) {
    // The caller's new lease: pinned before any eviction, so not even a self-eviction takes it.
    ++tree.node(at).pins;
    tree.MarkDirty(at);
    *pin_last = at;
  }

  // Evict until every budget holds. The request being inserted still holds its states while it
  // finishes, as in an engine: they are pinned while everything else is considered (without
  // this, a policy that ranks an old efficient node above the newest leaf evicts the state this
  // very call stored). Evicting a node never frees another one's id: merges keep the child, and
  // a pinned node is neither a victim nor a stateless parent merged away.
  for (NodeId id : own) {
    ++tree.node(id).pins;
    tree.MarkDirty(id);
  }
  const auto evict_until_within_budget = [&]() {
    while (OverBudget()) {
      SyncPolicy();
      const NodeId victim = eviction->Victim(clock);
      if (victim == kNoNode) return false;
      Evict(victim);
    }
    return true;
  };
  const bool fits_with_own_content = evict_until_within_budget();
  for (NodeId id : own) {
    --tree.node(id).pins;
    tree.MarkDirty(id);
  }
  Status result;
  if (!fits_with_own_content) {
    // Everything else is gone and the new content alone does not fit: it goes too, in the
    // policy's order, as if the request had released it and the cache then made room.
    const int64_t evicted_before = stats.evicted_checkpoints;
    if (!evict_until_within_budget()) {
      ++stats.over_capacity_inserts;
      result = Status::ResourceExhausted(
          "cache holds " + std::to_string(stats.kv_bytes + stats.state_bytes) +
          " bytes, over its capacity, and every remaining node is pinned by a request in flight");
    }
    stats.self_evictions += stats.evicted_checkpoints - evicted_before;
  }
  SyncPolicy();
  UpdatePeaks();
  return result;
}

// ---------------------------------------------------------------------------------------------
// PrefixCache

PrefixCache::PrefixCache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// A lease left behind would unpin through a dangling pointer when released: a use-after-free far
// from its cause, that corrupts memory silently in an optimised build. It is a programming error,
// so it fails here, loudly and in every build type (an assert would vanish in release builds,
// exactly where the corruption would go unnoticed).
PrefixCache::~PrefixCache() {
  if (live_leases_ != 0) {
    std::fprintf(stderr,
                 "marconi: PrefixCache destroyed while %lld of its Leases are held (a Lease must "
                 "not outlive its cache)\n",
                 static_cast<long long>(live_leases_));
    std::abort();
  }
}

Result<std::unique_ptr<PrefixCache>> PrefixCache::Create(const PrefixCacheConfig& config,
                                                         ModelSpec model,
                                                         std::unique_ptr<AdmissionPolicy> admission,
                                                         std::unique_ptr<EvictionPolicy> eviction) {
  if (!admission || !eviction) {
    return Status::InvalidArgument("PrefixCache: admission and eviction policies are required");
  }
  if (config.page_size < 1 || config.page_size > PrefixCacheConfig::kMaxPageSize) {
    return Status::InvalidArgument("PrefixCache: page_size must be in [1, " +
                                   std::to_string(PrefixCacheConfig::kMaxPageSize) + "], got " +
                                   std::to_string(config.page_size));
  }
  const int64_t state = model.StateBytesPerCheckpoint();
  const int64_t kv = model.KvBytesPerToken();
  const std::pair<const char*, int64_t> budgets[] = {
      {"capacity_bytes", config.capacity_bytes},
      {"kv_capacity_bytes", config.kv_capacity_bytes},
      {"state_capacity_bytes", config.state_capacity_bytes}};
  for (const auto& [what, bytes] : budgets) {
    if (bytes <= 0) {
      return Status::InvalidArgument(std::string("PrefixCache: ") + what + " must be > 0, got " +
                                     std::to_string(bytes));
    }
  }
  if (config.capacity_bytes < state + kv) {
    return Status::InvalidArgument(
        "PrefixCache: capacity_bytes " + std::to_string(config.capacity_bytes) +
        " cannot hold one checkpoint (" + std::to_string(state) + " bytes) and one token of KV (" +
        std::to_string(kv) + " bytes) of model " + model.name());
  }
  if (config.kv_capacity_bytes < kv || config.state_capacity_bytes < state) {
    return Status::InvalidArgument("PrefixCache: kv_capacity_bytes must hold one token (" +
                                   std::to_string(kv) + " bytes) and state_capacity_bytes one " +
                                   "checkpoint (" + std::to_string(state) + " bytes)");
  }
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->model = std::move(model);
  impl->admission = std::move(admission);
  impl->eviction = std::move(eviction);
  return std::unique_ptr<PrefixCache>(new PrefixCache(std::move(impl)));
}

LookupResult PrefixCache::Lookup(std::span<const Token> tokens) const {
  return impl_->Lookup(tokens);
}

Status PrefixCache::Insert(std::span<const Token> sequence, std::span<const int64_t> checkpoints,
                           Timestamp now, std::span<const uint64_t> payloads) {
  ++impl_->clock;  // a request of its own; a rejected call leaves an unobservable extra tick
  return impl_->InsertImpl(sequence, checkpoints, now, kNoNode, nullptr, payloads);
}

void PrefixCache::Unpin(NodeId node) {
  Node& n = impl_->tree.node(node);
  if (n.alive && n.pins > 0) {
    --n.pins;
    impl_->tree.MarkDirty(node);
    impl_->SyncPolicy();
  }
}

Status PrefixCache::SetCapacity(int64_t capacity_bytes) {
  if (capacity_bytes < 0) {
    return Status::InvalidArgument("SetCapacity: capacity must be >= 0, got " +
                                   std::to_string(capacity_bytes));
  }
  Impl& impl = *impl_;
  impl.config.capacity_bytes = capacity_bytes;
  // The same loop as InsertImpl's, without pinning anything of its own.
  while (impl.OverBudget()) {
    impl.SyncPolicy();
    const NodeId victim = impl.eviction->Victim(impl.clock);
    if (victim == kNoNode) {
      impl.SyncPolicy();
      impl.UpdatePeaks();
      return Status::ResourceExhausted(
          "SetCapacity: cache holds " + std::to_string(impl.stats.bytes()) + " bytes, over " +
          std::to_string(capacity_bytes) + ", and every remaining node is pinned");
    }
    impl.Evict(victim);
  }
  impl.SyncPolicy();
  impl.UpdatePeaks();
  return Status::Ok();
}

void PrefixCache::SetListener(CacheListener* listener) { impl_->listener = listener; }

Status PrefixCache::SetAlpha(double alpha) { return impl_->eviction->SetAlpha(alpha); }
double PrefixCache::alpha() const { return impl_->eviction->alpha(); }

std::unique_ptr<PrefixCache> PrefixCache::Clone() const {
  auto impl = std::make_unique<Impl>();
  impl->config = impl_->config;
  impl->model = impl_->model;
  impl->admission = impl_->admission->Clone();
  impl->eviction = impl_->eviction->Clone();
  impl->tree = impl_->tree;
  impl->stats = impl_->stats;
  impl->last_now = impl_->last_now;
  impl->any_call = impl_->any_call;
  impl->clock = impl_->clock;
  impl->last_seq = impl_->last_seq;
  // No request is in flight in the copy: drop the pins and let the nodes become candidates.
  for (size_t i = 0; i < impl->tree.slots(); ++i) {
    const NodeId id = static_cast<NodeId>(i);
    if (impl->tree.node(id).alive && impl->tree.node(id).pins > 0) {
      impl->tree.node(id).pins = 0;
      impl->tree.MarkDirty(id);
    }
  }
  impl->SyncPolicy();
  return std::unique_ptr<PrefixCache>(new PrefixCache(std::move(impl)));
}

const CacheStats& PrefixCache::stats() const { return impl_->stats; }
const ModelSpec& PrefixCache::model() const { return impl_->model; }
const PrefixCacheConfig& PrefixCache::config() const { return impl_->config; }
const EvictionPolicy& PrefixCache::eviction_policy() const { return *impl_->eviction; }
const AdmissionPolicy& PrefixCache::admission_policy() const { return *impl_->admission; }
Status PrefixCache::CheckInvariants() const { return CheckCacheInvariants(*impl_); }

}  // namespace marconi
