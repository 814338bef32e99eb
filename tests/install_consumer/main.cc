// Built against the installed package only: a cache from a preset, one request, then the next turn
// of the conversation, which must hit what the first one cached.
#include <cstdio>
#include <utility>
#include <vector>

#include "marconi/policies.h"
#include "marconi/prefix_cache.h"

namespace {

int Fail(const char* what, const marconi::Status& s) {
  std::fprintf(stderr, "install consumer: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main() {
  auto model = marconi::ModelSpec::Preset("nemotron-h-8b");
  if (!model.ok()) return Fail("preset", model.status());
  auto eviction = marconi::MakeFlopAwareEviction({});
  if (!eviction.ok()) return Fail("eviction", eviction.status());
  auto cache = marconi::PrefixCache::Create(
      {}, std::move(model).value(), marconi::MakeJudiciousAdmission(), std::move(eviction).value());
  if (!cache.ok()) return Fail("create", cache.status());

  std::vector<marconi::Token> input, output;
  for (marconi::Token t = 1; t <= 300; ++t) input.push_back(t);
  for (marconi::Token t = 1000; t < 1040; ++t) output.push_back(t);
  auto first = (*cache)->BeginRequest(input, 1.0);
  if (!first.ok()) return Fail("first request", first.status());
  if (first->lookup().reusable_tokens != 0) return Fail("first request", marconi::Status::Ok());
  if (marconi::Status s = (*cache)->CompleteRequest(std::move(first).value(), input, output, 2.0);
      !s.ok()) {
    return Fail("complete", s);
  }

  std::vector<marconi::Token> next = input;
  next.insert(next.end(), output.begin(), output.end());
  next.push_back(7);
  auto second = (*cache)->BeginRequest(next, 3.0);
  if (!second.ok()) return Fail("second request", second.status());
  const long long hit = second->lookup().reusable_tokens;
  std::printf("second turn: %lld of %zu tokens reused\n", hit, next.size());
  if (hit != static_cast<long long>(input.size() + output.size())) {
    std::fprintf(stderr, "install consumer: expected a hit of %zu tokens\n",
                 input.size() + output.size());
    return 1;
  }
  second->Release();
  return (*cache)->CheckInvariants().ok() ? 0 : 1;
}
