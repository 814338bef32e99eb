#include "sim/synthetic.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_map>

#include "util/random.h"

namespace marconi::sim {
namespace {

std::vector<Token> RandomTokens(std::mt19937_64& rng, int64_t n) {
  std::vector<Token> v(static_cast<size_t>(n));
  for (Token& t : v) t = static_cast<Token>(3 + rng() % 31997);
  return v;
}

int64_t Between(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}

}  // namespace

Trace SyntheticDocQa(int documents, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Trace trace;
  trace.source = "synthetic-docqa";
  const std::vector<Token> instruction = RandomTokens(rng, 200);
  for (int d = 0; d < documents; ++d) {
    std::vector<Token> prefix = instruction;
    const auto doc = RandomTokens(rng, Between(rng, 1000, 12000));
    prefix.insert(prefix.end(), doc.begin(), doc.end());
    double ts = 5.0 * d;
    const int64_t questions = Between(rng, 8, 15);
    for (int64_t q = 0; q < questions; ++q) {
      TraceRequest r;
      r.session_id = "doc" + std::to_string(d);
      r.turn_id = q;
      r.ts = ts;
      r.input = prefix;
      const auto question = RandomTokens(rng, Between(rng, 20, 60));
      r.input.insert(r.input.end(), question.begin(), question.end());
      r.output = RandomTokens(rng, Between(rng, 10, 50));
      trace.requests.push_back(std::move(r));
      ts += internal::Exponential(rng, 2.0);
    }
  }
  SortByTime(&trace);
  return trace;
}

Trace SyntheticMixed(int sessions, double sessions_per_second, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Trace trace;
  trace.source = "synthetic-mixed";
  std::vector<std::vector<Token>> prompts;
  for (int i = 0; i < 4; ++i) prompts.push_back(RandomTokens(rng, Between(rng, 300, 1500)));
  for (int s = 0; s < sessions; ++s) {
    const bool agent = s % 4 == 3;
    std::vector<Token> history = agent ? RandomTokens(rng, Between(rng, 2000, 6000))
                                       : prompts[static_cast<size_t>(Between(rng, 0, 3))];
    double ts = s / sessions_per_second;
    const int64_t turns = agent ? Between(rng, 10, 25) : Between(rng, 2, 8);
    for (int64_t t = 0; t < turns; ++t) {
      const auto message =
          RandomTokens(rng, agent ? Between(rng, 200, 1500) : Between(rng, 20, 300));
      history.insert(history.end(), message.begin(), message.end());
      TraceRequest r;
      r.session_id = (agent ? "agent" : "chat") + std::to_string(s);
      r.turn_id = t;
      r.ts = ts;
      r.input = history;
      r.output = RandomTokens(rng, agent ? Between(rng, 30, 200) : Between(rng, 50, 400));
      history.insert(history.end(), r.output.begin(), r.output.end());
      trace.requests.push_back(std::move(r));
      ts += agent ? 5.0 + static_cast<double>(Between(rng, 0, 50)) / 10
                  : static_cast<double>(Between(rng, 10, 60));
    }
  }
  SortByTime(&trace);
  return trace;
}

Trace SyntheticAgent(int sessions, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Trace trace;
  trace.source = "synthetic-agent";
  for (int s = 0; s < sessions; ++s) {
    std::vector<Token> history = RandomTokens(rng, Between(rng, 6000, 12000));
    double ts = 2.0 * s;
    for (int64_t step = 0;; ++step) {
      const auto tool = RandomTokens(rng, Between(rng, 400, 1400));
      if (history.size() + tool.size() > 32000) break;
      history.insert(history.end(), tool.begin(), tool.end());
      TraceRequest r;
      r.session_id = "agent" + std::to_string(s);
      r.turn_id = step;
      r.ts = ts;
      r.input = history;
      r.output = RandomTokens(rng, Between(rng, 30, 150));
      history.insert(history.end(), r.output.begin(), r.output.end());
      trace.requests.push_back(std::move(r));
      ts += 5.0 + static_cast<double>(Between(rng, 0, 50)) / 10;
    }
  }
  SortByTime(&trace);
  return trace;
}

Schedule RetimeSchedule(const Trace& trace, double sessions_per_second) {
  // Sessions in order of first arrival; each keeps its own gaps between turns.
  std::vector<std::string> order;
  std::unordered_map<std::string, double> first;
  for (const TraceRequest& r : trace.requests) {
    auto [it, fresh] = first.emplace(r.session_id, r.ts);
    if (fresh) order.push_back(r.session_id);
    it->second = std::min(it->second, r.ts);
  }
  std::unordered_map<std::string, double> shift;
  for (size_t i = 0; i < order.size(); ++i) {
    shift[order[i]] = static_cast<double>(i) / sessions_per_second - first[order[i]];
  }
  std::vector<double> ts(trace.requests.size());
  Schedule out;
  out.order.resize(trace.requests.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    ts[i] = trace.requests[i].ts + shift[trace.requests[i].session_id];
    out.order[i] = i;
  }
  std::stable_sort(out.order.begin(), out.order.end(),
                   [&](size_t a, size_t b) { return ts[a] < ts[b]; });
  out.ts.reserve(ts.size());
  for (size_t i : out.order) out.ts.push_back(ts[i]);
  return out;
}

Trace Retime(const Trace& trace, double sessions_per_second) {
  const Schedule s = RetimeSchedule(trace, sessions_per_second);
  Trace out;
  out.source = trace.source;
  out.skipped_lines = trace.skipped_lines;
  out.reordered_requests = trace.reordered_requests;
  out.requests.reserve(s.order.size());
  for (size_t k = 0; k < s.order.size(); ++k) {
    out.requests.push_back(trace.requests[s.order[k]]);
    out.requests.back().ts = s.ts[k];
  }
  return out;
}

}  // namespace marconi::sim
