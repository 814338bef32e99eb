#include "marconi/shared_prefix_cache.h"

#include <cmath>
#include <mutex>
#include <string>

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

namespace {

const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) {
  return r.status();
}

}  // namespace

template <typename Call>
auto SharedPrefixCache::Mutate(Timestamp now, Call&& call) -> decltype(call(now)) {
  std::unique_lock lock(mu_);
  auto t = Stamp(now);
  if (!t.ok()) return t.status();
  auto out = call(*t);
  Accept(*t, StatusOf(out));
  return out;
}

Status SharedPrefixCache::CheckOwner(const Request& request, const char* call) const {
  if (request.owner_ == this) return Status::Ok();
  return Status::FailedPrecondition(std::string(call) + ": the request is not one of this front's");
}

Result<SharedPrefixCache::Request> SharedPrefixCache::BeginRequest(std::span<const Token> input,
                                                                   Timestamp now) {
  auto h = Mutate(now, [&](Timestamp t) { return cache_->BeginRequest(input, t); });
  if (!h.ok()) return h.status();
  return Request(this, std::move(h).value());
}

Status SharedPrefixCache::CompleteRequest(Request request, std::span<const Token> input,
                                          std::span<const Token> output, Timestamp now) {
  if (Status s = CheckOwner(request, "CompleteRequest"); !s.ok()) return s;
  return Mutate(now, [&](Timestamp t) {
    request.owner_ = nullptr;  // the cache releases the pin, under this lock
    return cache_->CompleteRequest(std::move(request.handle_), input, output, t);
  });
}

Status SharedPrefixCache::CompleteRequest(Request request, std::span<const Token> input,
                                          std::span<const Token> output, Timestamp now,
                                          std::span<const int64_t> captured,
                                          std::span<const uint64_t> payloads) {
  if (Status s = CheckOwner(request, "CompleteRequest"); !s.ok()) return s;
  return Mutate(now, [&](Timestamp t) {
    request.owner_ = nullptr;  // the cache releases the pin, under this lock
    return cache_->CompleteRequest(std::move(request.handle_), input, output, t, captured,
                                   payloads);
  });
}

Status SharedPrefixCache::InsertChunk(Request& request, std::span<const Token> input,
                                      int64_t computed_tokens, std::span<const int64_t> captured,
                                      Timestamp now, std::span<const uint64_t> payloads) {
  if (Status s = CheckOwner(request, "InsertChunk"); !s.ok()) return s;
  return Mutate(now, [&](Timestamp t) {
    return cache_->InsertChunk(request.handle_, input, computed_tokens, captured, t, payloads);
  });
}

Status SharedPrefixCache::Insert(std::span<const Token> sequence,
                                 std::span<const int64_t> checkpoints, Timestamp now,
                                 std::span<const uint64_t> payloads) {
  return Mutate(now,
                [&](Timestamp t) { return cache_->Insert(sequence, checkpoints, t, payloads); });
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
