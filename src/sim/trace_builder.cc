#include "sim/trace_builder.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "sim/file_io.h"
#include "util/parallel_for.h"
#include "util/random.h"

namespace marconi::sim {
namespace {

using Json = nlohmann::json;

struct Message {
  std::string role, content;
};

// One dataset record in any of the four formats.
struct Record {
  std::string id;
  std::vector<Message> messages;  // chat, agent
  std::string document;           // docqa
  std::vector<std::string> questions;
  std::string prompt;  // sysprompts
};

Result<std::vector<Record>> ReadDataset(const std::string& path) {
  Result<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<Record> records;
  std::istringstream in(*text);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n) + ": ";
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return Status::ParseError(where + "not a JSON object");
    Record r;
    try {
      r.id =
          j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : std::to_string(n);
      if (j.contains("messages")) {
        for (const Json& m : j.at("messages")) {
          r.messages.push_back(
              {m.at("role").get<std::string>(), m.at("content").get<std::string>()});
        }
      }
      if (j.contains("document")) r.document = j["document"].get<std::string>();
      if (j.contains("questions")) r.questions = j["questions"].get<std::vector<std::string>>();
      if (j.contains("prompt")) r.prompt = j["prompt"].get<std::string>();
    } catch (const Json::exception& e) {
      return Status::ParseError(where + e.what());
    }
    records.push_back(std::move(r));
  }
  if (records.empty()) return Status::ParseError(path + ": no record");
  return records;
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

using internal::Exponential;

std::vector<size_t> Shuffled(size_t n, uint64_t seed) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(SplitMix(seed));
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

int64_t Words(const std::string& s) {
  int64_t words = 0;
  bool in_word = false;
  for (char c : s) {
    const bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    words += !space && !in_word ? 1 : 0;
    in_word = !space;
  }
  return words;
}

// A session's tokens (each piece encoded once) and its requests as lists of piece indices.
struct Request {
  double ts = 0;
  int64_t turn = 0;
  std::vector<size_t> input;  // piece indices
  size_t output = 0;          // piece index (an empty piece when there is no output)
};
struct Session {
  std::string id;
  std::vector<std::vector<Token>> pieces;  // pieces[0] = {BOS}, pieces[1] = {} (no output)
  std::vector<Request> requests;
  size_t Add(std::vector<Token> tokens) {
    pieces.push_back(std::move(tokens));
    return pieces.size() - 1;
  }
  int64_t Length(const std::vector<size_t>& input) const {
    int64_t n = 0;
    for (size_t i : input) n += static_cast<int64_t>(pieces[i].size());
    return n;
  }
};

std::string Render(const std::string& role, const std::string& content) {
  return "<|" + role + "|>\n" + content + "\n";
}

Session NewSession(std::string id) {
  Session s;
  s.id = std::move(id);
  s.pieces = {{kBos}, {}};
  return s;
}

// Chat: a request per assistant reply; the next user turn after a typing delay.
Session BuildChatSession(const Record& r, double start, const BuildOptions& o, const Encoder& enc) {
  Session s = NewSession(r.id);
  std::vector<size_t> history = {0};
  double ts = start;
  int64_t turn = 0;
  for (size_t i = 0; i < r.messages.size(); ++i) {
    const Message& m = r.messages[i];
    const size_t piece = s.Add(enc(Render(m.role, m.content)));
    if (m.role != "assistant") {
      history.push_back(piece);
      continue;
    }
    const bool answers_user = i > 0 && r.messages[i - 1].role == "user";
    if (answers_user) {
      if (s.Length(history) > o.max_tokens) break;
      if (turn > 0)
        ts += 60.0 * static_cast<double>(Words(r.messages[i - 1].content)) / o.words_per_minute;
      s.requests.push_back({ts, turn++, history, piece});
    }
    history.push_back(piece);  // a leading assistant message is context
  }
  return s;
}

// Agent: every assistant step is a request whose input is the whole history before it.
Session BuildAgentSession(const Record& r, double start, uint64_t seed, const BuildOptions& o,
                          const Encoder& enc) {
  Session s = NewSession(r.id);
  std::mt19937_64 rng(seed);
  std::vector<size_t> full, collapsed;  // per message: its piece, and its collapsed piece
  std::vector<bool> is_output;          // tool outputs: user messages after the task
  double ts = start;
  int64_t turn = 0;
  for (size_t i = 0; i < r.messages.size() && turn < o.max_steps; ++i) {
    const Message& m = r.messages[i];
    if (m.role == "assistant" && !full.empty()) {
      // Input: BOS and every earlier message; older tool outputs collapsed if asked.
      std::vector<size_t> input = {0};
      int64_t outputs_after = 0;
      for (size_t k = full.size(); k-- > 0;) {
        const bool collapse = o.collapse_old_outputs && is_output[k] && outputs_after >= 5;
        outputs_after += is_output[k] ? 1 : 0;
        input.push_back(collapse ? collapsed[k] : full[k]);
      }
      std::reverse(input.begin() + 1, input.end());
      if (s.Length(input) > o.max_tokens) break;
      const size_t out = s.Add(enc(Render(m.role, m.content)));
      s.requests.push_back({ts, turn++, std::move(input), out});
      ts += Exponential(rng, o.art);
      full.push_back(out);
      collapsed.push_back(out);
      is_output.push_back(false);
      continue;
    }
    full.push_back(s.Add(enc(Render(m.role, m.content))));
    const bool output = m.role == "user" && i >= 2;
    is_output.push_back(output);
    if (output && o.collapse_old_outputs) {
      const int64_t lines = std::count(m.content.begin(), m.content.end(), '\n') + 1;
      collapsed.push_back(s.Add(enc(Render(
          m.role, "Old environment output: (" + std::to_string(lines) + " lines omitted)"))));
    } else {
      collapsed.push_back(full.back());
    }
  }
  return s;
}

Session BuildDocQaSession(const Record& r, double start, uint64_t seed, const BuildOptions& o,
                          const Encoder& enc) {
  Session s = NewSession(r.id);
  std::mt19937_64 rng(seed);
  const size_t doc = s.Add(enc("<|user|>\n" + r.document + "\n\n"));
  double ts = start;
  int64_t turn = 0;
  for (const std::string& q : r.questions) {
    std::vector<size_t> input = {0, doc, s.Add(enc("Question: " + q + "\n"))};
    if (s.Length(input) > o.max_tokens) continue;
    s.requests.push_back({ts, turn++, std::move(input), 1});
    ts += Exponential(rng, o.art);
  }
  return s;
}

// Runs `build(i)` for i in [0, n) on a pool; results by index, so the order is deterministic.
// `progress(done, n)` after each, serialised.
std::vector<Session> Parallel(size_t n, const BuildOptions& o,
                              const std::function<Session(size_t)>& build) {
  std::vector<Session> out(n);
  std::mutex mutex;
  size_t done = 0;
  internal::ParallelFor(n, static_cast<size_t>(std::max(0, o.threads)), [&](size_t i) {
    out[i] = build(i);
    if (o.progress) {
      std::lock_guard<std::mutex> lock(mutex);
      o.progress(++done, n);
    }
  });
  return out;
}

Result<std::vector<Session>> BuildSysprompt(const std::vector<Record>& prompts,
                                            const BuildOptions& o, const Encoder& enc) {
  if (o.queries_path.empty()) {
    return Status::InvalidArgument(
        "the sysprompt workload needs --queries CHAT_DATASET (first-turn user queries)");
  }
  auto chats = ReadDataset(o.queries_path);
  if (!chats.ok()) return chats.status();
  struct Query {
    std::string text, answer;
  };
  std::vector<Query> queries;
  for (const Record& r : *chats) {
    // A first turn: the first user message (after any system message), answered next.
    size_t i = 0;
    while (i < r.messages.size() && r.messages[i].role == "system") ++i;
    if (i + 1 < r.messages.size() && r.messages[i].role == "user" &&
        r.messages[i + 1].role == "assistant") {
      queries.push_back({r.messages[i].content, r.messages[i + 1].content});
    }
  }
  if (queries.empty())
    return Status::ParseError(o.queries_path + ": no conversation starts with a user turn");
  const auto order = Shuffled(prompts.size(), o.seed);
  const size_t n = std::min<size_t>(prompts.size(), static_cast<size_t>(o.sessions));
  // Zipf over prompt ranks: P(rank k) ~ 1 / (k + 1)^s.
  std::vector<double> cdf(n);
  double total = 0;
  for (size_t k = 0; k < n; ++k)
    cdf[k] = total += 1.0 / std::pow(static_cast<double>(k + 1), o.zipf);
  std::mt19937_64 rng(SplitMix(o.seed + 7));
  struct Pick {
    size_t prompt, query;
    double ts;
  };
  std::vector<Pick> picks;
  double ts = 0;
  for (size_t i = 0; i < n * static_cast<size_t>(o.queries_per_prompt); ++i) {
    const double u = internal::UnitInterval(rng) * total;
    const size_t p = static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    picks.push_back({std::min(p, n - 1), static_cast<size_t>(rng() % queries.size()), ts});
    ts += Exponential(rng, 1.0 / o.sps);
  }
  return Parallel(picks.size(), o, [&](size_t i) {
    const Pick& pick = picks[i];
    const Record& r = prompts[order[pick.prompt]];
    Session s = NewSession("p" + std::to_string(pick.prompt) + "-" + std::to_string(i));
    const size_t sys = s.Add(enc(Render("system", r.prompt)));
    const size_t user = s.Add(enc(Render("user", queries[pick.query].text)));
    std::vector<Token> answer = enc(Render("assistant", queries[pick.query].answer));
    if (answer.size() > 512) answer.resize(512);
    const size_t out = s.Add(std::move(answer));
    std::vector<size_t> input = {0, sys, user};
    if (s.Length(input) <= o.max_tokens) s.requests.push_back({pick.ts, 0, std::move(input), out});
    return s;
  });
}

}  // namespace

Result<Workload> ParseWorkload(const std::string& name) {
  if (name == "chat") return Workload::kChat;
  if (name == "agent") return Workload::kAgent;
  if (name == "docqa") return Workload::kDocQa;
  if (name == "sysprompt") return Workload::kSysprompt;
  return Status::InvalidArgument("unknown workload '" + name +
                                 "' (workloads: chat, agent, docqa, sysprompt)");
}

Result<BuildReport> BuildTrace(const std::string& dataset, const BuildOptions& o,
                               const Encoder& encode, TraceWriter& out) {
  if (o.sessions < 1 || !(o.sps > 0) || !(o.art > 0) || o.max_tokens < 1 || o.max_steps < 1 ||
      !(o.words_per_minute > 0) || o.queries_per_prompt < 1 || !(o.zipf >= 0)) {
    return Status::InvalidArgument(
        "trace build: sessions, sps, art, max tokens, max steps, words per minute and queries "
        "per prompt must be positive, zipf >= 0");
  }
  auto records = ReadDataset(dataset);
  if (!records.ok()) return records.status();
  BuildReport report;
  report.records = static_cast<int64_t>(records->size());

  std::vector<Session> sessions;
  if (o.workload == Workload::kSysprompt) {
    auto s = BuildSysprompt(*records, o, encode);
    if (!s.ok()) return s.status();
    sessions = std::move(s).value();
  } else {
    // Eligible records in a seeded order; the first `sessions` of them are used.
    std::vector<const Record*> chosen;
    for (size_t i : Shuffled(records->size(), o.seed)) {
      const Record& r = (*records)[i];
      bool ok = false;
      if (o.workload == Workload::kDocQa) {
        ok = !r.document.empty() && !r.questions.empty();
      } else {
        int64_t replies = 0;
        for (size_t k = 1; k < r.messages.size(); ++k) {
          replies += r.messages[k].role == "assistant" &&
                     (o.workload == Workload::kAgent || r.messages[k - 1].role == "user");
        }
        ok = replies >= (o.workload == Workload::kChat ? o.min_turns : 1);
      }
      if (ok) chosen.push_back(&r);
      if (static_cast<int>(chosen.size()) == o.sessions) break;
    }
    if (chosen.empty()) {
      return Status::InvalidArgument(
          dataset + ": no record fits the " +
          std::string(o.workload == Workload::kDocQa ? "docqa" : "conversation") +
          " workload (check the format and --min-turns)");
    }
    sessions = Parallel(chosen.size(), o, [&](size_t i) {
      const double start = static_cast<double>(i) / o.sps;
      const uint64_t seed = SplitMix(o.seed ^ SplitMix(i + 1));
      switch (o.workload) {
        case Workload::kChat:
          return BuildChatSession(*chosen[i], start, o, encode);
        case Workload::kAgent:
          return BuildAgentSession(*chosen[i], start, seed, o, encode);
        default:
          return BuildDocQaSession(*chosen[i], start, seed, o, encode);
      }
    });
  }

  // Interleave by arrival: (ts, session, turn) is a total order, so the result is exact.
  struct Ref {
    double ts;
    size_t session, request;
  };
  std::vector<Ref> refs;
  for (size_t s = 0; s < sessions.size(); ++s) {
    report.sessions += sessions[s].requests.empty() ? 0 : 1;
    for (size_t r = 0; r < sessions[s].requests.size(); ++r) {
      refs.push_back({sessions[s].requests[r].ts, s, r});
    }
  }
  std::sort(refs.begin(), refs.end(), [](const Ref& a, const Ref& b) {
    return std::tie(a.ts, a.session, a.request) < std::tie(b.ts, b.session, b.request);
  });
  std::vector<std::span<const Token>> pieces;
  for (const Ref& ref : refs) {
    const Session& s = sessions[ref.session];
    const Request& r = s.requests[ref.request];
    pieces.clear();
    for (size_t i : r.input) pieces.emplace_back(s.pieces[i]);
    if (Status st = out.Write(s.id, r.turn, r.ts, pieces, s.pieces[r.output]); !st.ok()) return st;
    ++report.requests;
    report.input_tokens += s.Length(r.input);
    report.output_tokens += static_cast<int64_t>(s.pieces[r.output].size());
  }
  if (report.requests == 0)
    return Status::InvalidArgument(dataset + ": the workload has no request");
  return report;
}

}  // namespace marconi::sim
