// SharedPrefixCache: a thread-safe front over one PrefixCache, for engines whose scheduler thread
// and I/O or tokenizer threads share a cache.
//
// Thread-safety model: readers-writer. Lookup, PlanDecode, stats() and Read() take a shared lock
// and run in parallel with each other; BeginRequest, CompleteRequest, Insert, SetListener,
// SetAlpha and giving a request back (Request's destructor or Release) take the exclusive lock and
// run one at a time, each as one atomic step: a reader sees the cache before or after a mutation,
// never during one. Lock order: the front's lock is the only lock it takes; a CacheListener runs
// under the exclusive lock and must not call back into the front (it would deadlock).
//
// Time: each thread reads its own clock, so calls may arrive with timestamps slightly out of
// order. The front stamps every mutation with max(now, the latest time it has accepted), which
// keeps the cache's "time never decreases" precondition without refusing a late thread; a
// non-finite `now` is still refused (kInvalidArgument).
#ifndef MARCONI_SHARED_PREFIX_CACHE_H_
#define MARCONI_SHARED_PREFIX_CACHE_H_

#include <memory>
#include <shared_mutex>
#include <span>
#include <utility>
#include <vector>

#include "marconi/prefix_cache.h"

namespace marconi {

class SharedPrefixCache {
 public:
  // A request in flight, begun through the front. Holds the pin of its resume point; the pin is
  // given back under the front's exclusive lock when the request is completed, released or
  // destroyed, so a Request may be destroyed on any thread. Move-only. Must not outlive its front.
  class Request {
   public:
    Request() = default;
    Request(Request&& other) noexcept;
    Request& operator=(Request&& other) noexcept;
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    ~Request();

    // What BeginRequest found and planned (read-only).
    const RequestHandle& handle() const { return handle_; }
    // Gives the pin back without caching anything (an aborted request). Idempotent.
    void Release();

   private:
    friend class SharedPrefixCache;
    Request(SharedPrefixCache* owner, RequestHandle handle)
        : owner_(owner), handle_(std::move(handle)) {}
    SharedPrefixCache* owner_ = nullptr;
    RequestHandle handle_;
  };

  // Takes ownership of `cache`. kInvalidArgument if it is null. The front is heap-allocated and
  // never moves, since its Requests point at it.
  static Result<std::unique_ptr<SharedPrefixCache>> Create(std::unique_ptr<PrefixCache> cache);
  // Precondition: no Request of this front is alive (the cache aborts if a pin is still held).
  ~SharedPrefixCache() = default;
  SharedPrefixCache(const SharedPrefixCache&) = delete;
  SharedPrefixCache& operator=(const SharedPrefixCache&) = delete;

  // PrefixCache::Lookup under the shared lock.
  LookupResult Lookup(std::span<const Token> tokens) const;
  // A copy of the statistics, under the shared lock.
  CacheStats stats() const;
  // PrefixCache::PlanDecode under the shared lock. `request` must come from this front.
  std::vector<int64_t> PlanDecode(const Request& request, int64_t output_tokens) const;
  // Calls fn(const PrefixCache&) under the shared lock and returns its result (for
  // CheckInvariants, Clone, config(), ...). fn must not call back into the front.
  template <typename Fn>
  auto Read(Fn&& fn) const {
    std::shared_lock lock(mu_);
    return std::forward<Fn>(fn)(static_cast<const PrefixCache&>(*cache_));
  }

  // PrefixCache::BeginRequest under the exclusive lock (errors likewise: nothing changed).
  Result<Request> BeginRequest(std::span<const Token> input, Timestamp now);
  // PrefixCache::CompleteRequest (both forms) under the exclusive lock. `request` must come from
  // this front and hold its handle (not released): kFailedPrecondition otherwise, nothing changed.
  Status CompleteRequest(Request request, std::span<const Token> input,
                         std::span<const Token> output, Timestamp now);
  Status CompleteRequest(Request request, std::span<const Token> input,
                         std::span<const Token> output, Timestamp now,
                         std::span<const int64_t> captured,
                         std::span<const uint64_t> payloads = {});
  // PrefixCache::InsertChunk under the exclusive lock (the pin moves under it too). `request`
  // must come from this front and hold its handle: kFailedPrecondition otherwise.
  Status InsertChunk(Request& request, std::span<const Token> input, int64_t computed_tokens,
                     std::span<const int64_t> captured, Timestamp now,
                     std::span<const uint64_t> payloads = {});
  // PrefixCache::Insert under the exclusive lock.
  Status Insert(std::span<const Token> sequence, std::span<const int64_t> checkpoints,
                Timestamp now, std::span<const uint64_t> payloads = {});
  // PrefixCache::SetListener / SetAlpha under the exclusive lock.
  void SetListener(CacheListener* listener);
  Status SetAlpha(double alpha);

 private:
  explicit SharedPrefixCache(std::unique_ptr<PrefixCache> cache) : cache_(std::move(cache)) {}
  // Validates `now` and returns the time the cache is given (see the header comment); Accept
  // records it once the cache took the call. Both require the exclusive lock.
  Result<Timestamp> Stamp(Timestamp now) const;
  void Accept(Timestamp t, const Status& outcome);
  // One mutation, as every mutating call makes it: under the exclusive lock, `call(time)` with
  // `now` stamped, and the time recorded once the cache took the call. Returns what `call`
  // returns (a Status or a Result), or the refusal of a non-finite `now`.
  template <typename Call>
  auto Mutate(Timestamp now, Call&& call) -> decltype(call(now));
  // kFailedPrecondition unless `request` is one of this front's, holding its handle.
  Status CheckOwner(const Request& request, const char* call) const;
  // Gives a request's pin back. Takes the exclusive lock.
  void Give(RequestHandle& handle);

  mutable std::shared_mutex mu_;
  std::unique_ptr<PrefixCache> cache_;
  Timestamp latest_ = 0;
  bool any_time_ = false;
};

}  // namespace marconi

#endif  // MARCONI_SHARED_PREFIX_CACHE_H_
