#include "marconi/shared_prefix_cache.h"

#include <cmath>
#include <mutex>

namespace marconi {

SharedPrefixCache::Request::Request(Request&& other) noexcept
    : owner_(std::exchange(other.owner_, nullptr)), handle_(std::move(other.handle_)) {}

SharedPrefixCache::Request& SharedPrefixCache::Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    handle_ = std::move(other.handle_);
  }
  return *this;
}

SharedPrefixCache::Request::~Request() { Release(); }

void SharedPrefixCache::Request::Release() {
  if (owner_ != nullptr) owner_->Give(handle_);
  owner_ = nullptr;
}

Result<std::unique_ptr<SharedPrefixCache>> SharedPrefixCache::Create(
    std::unique_ptr<PrefixCache> cache) {
  if (cache == nullptr) return Status::InvalidArgument("SharedPrefixCache: null cache");
  return std::unique_ptr<SharedPrefixCache>(new SharedPrefixCache(std::move(cache)));
}

LookupResult SharedPrefixCache::Lookup(std::span<const Token> tokens) const {
  std::shared_lock lock(mu_);
  return cache_->Lookup(tokens);
}

CacheStats SharedPrefixCache::stats() const {
  std::shared_lock lock(mu_);
  return cache_->stats();
}

std::vector<int64_t> SharedPrefixCache::PlanDecode(const Request& request,
                                                   int64_t output_tokens) const {
  std::shared_lock lock(mu_);
  return cache_->PlanDecode(request.handle_, output_tokens);
}

Result<Timestamp> SharedPrefixCache::Stamp(Timestamp now) const {
  if (!std::isfinite(now)) return Status::InvalidArgument("SharedPrefixCache: non-finite time");
  return any_time_ && latest_ > now ? latest_ : now;
}

void SharedPrefixCache::Accept(Timestamp t, const Status& outcome) {
  // A refused call changed nothing (kInvalidArgument, kFailedPrecondition); an insert left over
  // capacity (kResourceExhausted) did happen, at t.
  if (outcome.ok() || outcome.code() == StatusCode::kResourceExhausted) {
    latest_ = t;
    any_time_ = true;
  }
}

Result<SharedPrefixCache::Request> SharedPrefixCache::BeginRequest(std::span<const Token> input,
                                                                   Timestamp now) {
  std::unique_lock lock(mu_);
  auto t = Stamp(now);
  if (!t.ok()) return t.status();
  auto h = cache_->BeginRequest(input, *t);
  Accept(*t, h.status());
  if (!h.ok()) return h.status();
  return Request(this, std::move(h).value());
}

template <typename Call>
Status SharedPrefixCache::Complete(Request& request, Timestamp now, Call&& call) {
  if (request.owner_ != this) {
    return Status::FailedPrecondition("CompleteRequest: the request is not one of this front's");
  }
  std::unique_lock lock(mu_);
  auto t = Stamp(now);
  if (!t.ok()) return t.status();
  request.owner_ = nullptr;  // the cache releases the pin, under this lock
  Status s = call(std::move(request.handle_), *t);
  Accept(*t, s);
  return s;
}

Status SharedPrefixCache::CompleteRequest(Request request, std::span<const Token> input,
                                          std::span<const Token> output, Timestamp now) {
  return Complete(request, now, [&](RequestHandle h, Timestamp t) {
    return cache_->CompleteRequest(std::move(h), input, output, t);
  });
}

Status SharedPrefixCache::CompleteRequest(Request request, std::span<const Token> input,
                                          std::span<const Token> output, Timestamp now,
                                          std::span<const int64_t> captured,
                                          std::span<const uint64_t> payloads) {
  return Complete(request, now, [&](RequestHandle h, Timestamp t) {
    return cache_->CompleteRequest(std::move(h), input, output, t, captured, payloads);
  });
}

Status SharedPrefixCache::InsertChunk(Request& request, std::span<const Token> input,
                                      int64_t computed_tokens, std::span<const int64_t> captured,
                                      Timestamp now, std::span<const uint64_t> payloads) {
  if (request.owner_ != this) {
    return Status::FailedPrecondition("InsertChunk: the request is not one of this front's");
  }
  std::unique_lock lock(mu_);
  auto t = Stamp(now);
  if (!t.ok()) return t.status();
  Status s = cache_->InsertChunk(request.handle_, input, computed_tokens, captured, *t, payloads);
  Accept(*t, s);
  return s;
}

Status SharedPrefixCache::Insert(std::span<const Token> sequence,
                                 std::span<const int64_t> checkpoints, Timestamp now,
                                 std::span<const uint64_t> payloads) {
  std::unique_lock lock(mu_);
  auto t = Stamp(now);
  if (!t.ok()) return t.status();
  Status s = cache_->Insert(sequence, checkpoints, *t, payloads);
  Accept(*t, s);
  return s;
}

void SharedPrefixCache::SetListener(CacheListener* listener) {
  std::unique_lock lock(mu_);
  cache_->SetListener(listener);
}

Status SharedPrefixCache::SetAlpha(double alpha) {
  std::unique_lock lock(mu_);
  return cache_->SetAlpha(alpha);
}

void SharedPrefixCache::Give(RequestHandle& handle) {
  std::unique_lock lock(mu_);
  handle.Release();
}

}  // namespace marconi
