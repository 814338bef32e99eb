// The trace builder on fixtures written by the tests, with a byte-level encoder (and a tiny
// SentencePiece model trained here); one integration test on ../shared/data when present.
#include "sim/trace_builder.h"

#include <gtest/gtest.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "sim/file_io.h"

namespace marconi::sim {
namespace {

// One token per byte: easy to reason about, and exactly invertible.
std::vector<Token> Bytes(std::string_view s) {
  std::vector<Token> v;
  for (unsigned char c : s) v.push_back(static_cast<Token>(c) + 3);
  return v;
}
const Encoder kBytes = Bytes;

std::string Fixture(const std::string& name, const std::string& jsonl) {
  const std::string path = ::testing::TempDir() + "/" + name;
  EXPECT_TRUE(WriteFile(path, jsonl).ok());
  return path;
}

const char* kChat =
    R"({"id": "c1", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there friend"}, {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "how are you"}, {"role": "assistant", "content": "Fine."}]}
{"id": "c2", "messages": [{"role": "assistant", "content": "Earlier answer."}, {"role": "user", "content": "go on"}, {"role": "assistant", "content": "Sure."}]}
{"id": "c3", "messages": [{"role": "user", "content": "only a question"}]}
)";

Trace Build(const std::string& dataset, BuildOptions o, const std::string& out_name) {
  const std::string out = ::testing::TempDir() + "/" + out_name;
  auto w = TraceWriter::Open(out).value();
  auto report = BuildTrace(dataset, o, kBytes, *w);
  EXPECT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(w->Close().ok());
  auto t = ReadTrace(out);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  if (report.ok()) {
    EXPECT_EQ(report->requests, static_cast<int64_t>(t->requests.size()));
  }
  return std::move(t).value();
}

std::map<std::string, std::vector<TraceRequest>> BySession(const Trace& t) {
  std::map<std::string, std::vector<TraceRequest>> m;
  for (const auto& r : t.requests) m[r.session_id].push_back(r);
  for (auto& [id, v] : m) {
    std::sort(v.begin(), v.end(),
              [](const auto& a, const auto& b) { return a.turn_id < b.turn_id; });
  }
  return m;
}

std::vector<Token> Cat(std::initializer_list<std::vector<Token>> parts) {
  std::vector<Token> v;
  for (const auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

TEST(TraceBuilder, ChatTurnsFollowTheTemplateAndTheTypingDelay) {
  BuildOptions o;
  o.workload = Workload::kChat;
  o.sessions = 10;
  o.sps = 0.5;
  const Trace t = Build(Fixture("chat.jsonl", kChat), o, "chat_trace.jsonl");
  auto s = BySession(t);
  ASSERT_EQ(s.size(), 2u);  // c3 has no assistant reply
  const auto& c1 = s.at("c1");
  ASSERT_EQ(c1.size(), 2u);
  const auto sys = Bytes("<|system|>\nBe brief.\n");
  const auto u1 = Bytes("<|user|>\nhello there friend\n");
  const auto a1 = Bytes("<|assistant|>\nHi.\n");
  const auto u2 = Bytes("<|user|>\nhow are you\n");
  EXPECT_EQ(c1[0].input, Cat({{kBos}, sys, u1}));
  EXPECT_EQ(c1[0].output, a1);
  // Turn 2's input is exactly turn 1's input and output and the new message.
  EXPECT_EQ(c1[1].input, Cat({c1[0].input, c1[0].output, u2}));
  EXPECT_EQ(c1[1].output, Bytes("<|assistant|>\nFine.\n"));
  // "how are you": 3 words at 90 words per minute = 2 s after turn 1.
  EXPECT_DOUBLE_EQ(c1[1].ts - c1[0].ts, 2.0);
  // A conversation that starts with an assistant message keeps it as context.
  const auto& c2 = s.at("c2");
  ASSERT_EQ(c2.size(), 1u);
  EXPECT_EQ(c2[0].input,
            Cat({{kBos}, Bytes("<|assistant|>\nEarlier answer.\n"), Bytes("<|user|>\ngo on\n")}));
  // Sessions start at i / sps in the seeded order: one at 0 s, the other at 2 s.
  std::vector<double> starts = {c1[0].ts, c2[0].ts};
  std::sort(starts.begin(), starts.end());
  EXPECT_EQ(starts, (std::vector<double>{0.0, 2.0}));
  o.min_turns = 2;
  EXPECT_EQ(BySession(Build(Fixture("chat2.jsonl", kChat), o, "chat2_trace.jsonl")).size(), 1u);
}

std::string AgentRun(const std::string& id, int steps) {
  std::string m =
      R"([{"role": "system", "content": "sys"}, {"role": "user", "content": "task )" + id + "\"}";
  for (int i = 0; i < steps; ++i) {
    m += R"(, {"role": "assistant", "content": "cmd )" + std::to_string(i) + "\"}";
    m += R"(, {"role": "user", "content": "output )" + std::to_string(i) + "\\nline\"}";
  }
  return R"({"id": ")" + id + R"(", "messages": )" + m + "]}\n";
}

TEST(TraceBuilder, AgentStepsExtendTheHistoryAndRespectTheCaps) {
  const std::string data = Fixture("agent.jsonl", AgentRun("a", 12) + AgentRun("b", 3));
  BuildOptions o;
  o.workload = Workload::kAgent;
  o.max_steps = 10;
  o.art = 5;
  const Trace t = Build(data, o, "agent_trace.jsonl");
  auto s = BySession(t);
  ASSERT_EQ(s.at("a").size(), 10u);  // capped at 10 steps
  ASSERT_EQ(s.at("b").size(), 3u);
  const auto& a = s.at("a");
  for (size_t k = 1; k < a.size(); ++k) {
    const auto tool = Bytes("<|user|>\noutput " + std::to_string(k - 1) + "\nline\n");
    EXPECT_EQ(a[k].input, Cat({a[k - 1].input, a[k - 1].output, tool}));
    EXPECT_GT(a[k].ts, a[k - 1].ts);
  }
  // Deterministic for a seed, whatever the number of threads; another seed moves arrivals.
  o.threads = 1;
  const std::string one = FormatTrace(Build(data, o, "agent_t1.jsonl"));
  o.threads = 2;
  EXPECT_EQ(one, FormatTrace(Build(data, o, "agent_t2.jsonl")));
  o.seed = 2;
  EXPECT_NE(one, FormatTrace(Build(data, o, "agent_s2.jsonl")));
  // Input cap: a session ends before its input exceeds max_tokens.
  o.max_tokens = 150;
  for (const auto& r : Build(data, o, "agent_cap.jsonl").requests) {
    EXPECT_LE(r.input.size(), 150u);
  }
}

TEST(TraceBuilder, CollapsingOldOutputsKeepsTheFiveLatest) {
  BuildOptions o;
  o.workload = Workload::kAgent;
  o.collapse_old_outputs = true;
  const auto a =
      BySession(Build(Fixture("agent_c.jsonl", AgentRun("a", 9)), o, "agent_c_trace.jsonl"))
          .at("a");
  ASSERT_EQ(a.size(), 9u);
  const auto collapsed = Bytes("<|user|>\nOld environment output: (2 lines omitted)\n");
  auto contains = [](const std::vector<Token>& hay, const std::vector<Token>& needle) {
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
  };
  EXPECT_FALSE(contains(a[5].input, collapsed));  // 5 outputs: none collapsed yet
  EXPECT_TRUE(contains(a[6].input, collapsed));   // the 6th output collapses the oldest
  EXPECT_TRUE(contains(a[8].input, Bytes("<|user|>\noutput 7\nline\n")));
}

TEST(TraceBuilder, DocQaSharesTheDocumentPrefix) {
  const std::string data =
      Fixture("docqa.jsonl",
              R"({"id": "d1", "document": "A long story.", "questions": ["Who?", "Why?", "When?"]}
{"id": "d2", "document": "Another text.", "questions": ["What?"]}
)");
  BuildOptions o;
  o.workload = Workload::kDocQa;
  o.art = 3;
  const Trace t = Build(data, o, "docqa_trace.jsonl");
  auto s = BySession(t);
  const auto doc = Cat({{kBos}, Bytes("<|user|>\nA long story.\n\n")});
  ASSERT_EQ(s.at("d1").size(), 3u);
  for (const auto& r : s.at("d1")) {
    EXPECT_TRUE(std::equal(doc.begin(), doc.end(), r.input.begin()));
    EXPECT_TRUE(r.output.empty());
  }
  EXPECT_EQ(s.at("d1")[1].input, Cat({doc, Bytes("Question: Why?\n")}));
  for (size_t i = 1; i < t.requests.size(); ++i) {
    EXPECT_LE(t.requests[i - 1].ts, t.requests[i].ts);
  }
}

TEST(TraceBuilder, SystemPromptsWithZipfPopularity) {
  std::string prompts;
  for (int i = 0; i < 6; ++i) {
    prompts += R"({"id": "p)" + std::to_string(i) + R"(", "prompt": "You are assistant number )" +
               std::to_string(i) + "\"}\n";
  }
  const std::string data = Fixture("prompts.jsonl", prompts);
  BuildOptions o;
  o.workload = Workload::kSysprompt;
  o.sessions = 6;
  o.queries_per_prompt = 50;
  o.zipf = 1.2;
  {
    auto w = TraceWriter::Open(::testing::TempDir() + "/noq.jsonl").value();
    auto r = BuildTrace(data, o, kBytes, *w);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("--queries"), std::string::npos);
  }
  o.queries_path = Fixture("queries.jsonl", kChat);
  const Trace t = Build(data, o, "sys_trace.jsonl");
  ASSERT_EQ(t.requests.size(), 300u);
  std::map<std::vector<Token>, int> by_prompt;
  for (const auto& r : t.requests) {
    // BOS, the system message, then the user query (c1 is the only chat starting with a user).
    const auto user = Bytes("<|user|>\nhello there friend\n");
    ASSERT_TRUE(std::equal(user.rbegin(), user.rend(), r.input.rbegin()));
    by_prompt[std::vector<Token>(r.input.begin(),
                                 r.input.end() - static_cast<long>(user.size()))]++;
  }
  std::vector<int> counts;
  for (const auto& [p, n] : by_prompt) counts.push_back(n);
  std::sort(counts.rbegin(), counts.rend());
  ASSERT_GE(counts.size(), 3u);
  EXPECT_GT(counts[0], 2 * counts[2]);  // the most popular prompt dominates
}

TEST(TraceBuilder, BadInputNamesFileAndLine) {
  const std::string bad =
      Fixture("bad.jsonl", std::string(kChat) + "{\"id\": \"x\", \"messages\": [{\"role\": 1}]}\n");
  BuildOptions o;
  auto w = TraceWriter::Open(::testing::TempDir() + "/bad_out.jsonl").value();
  auto r = BuildTrace(bad, o, kBytes, *w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad.jsonl:4:"), std::string::npos) << r.status().message();
  EXPECT_FALSE(ParseWorkload("video").ok());
  o.workload = Workload::kDocQa;
  r = BuildTrace(Fixture("chat_as_doc.jsonl", kChat), o, kBytes, *w);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no record fits"), std::string::npos);
  EXPECT_FALSE(BuildTrace("/nonexistent.jsonl", o, kBytes, *w).ok());
  o.sps = 0;
  EXPECT_EQ(BuildTrace(bad, o, kBytes, *w).status().code(), StatusCode::kInvalidArgument);
}

TEST(TraceBuilder, SentencePieceModelTrainedHere) {
  const std::string dir = ::testing::TempDir();
  {
    std::ofstream corpus(dir + "/corpus.txt");
    for (int i = 0; i < 300; ++i) {
      corpus << "the cache keeps the state of the model at branch point " << i % 17
             << " and the last decoded token of every turn\n";
    }
  }
  const auto status = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + dir + "/corpus.txt --model_prefix=" + dir +
      "/tiny --vocab_size=60 --model_type=bpe --minloglevel=2");
  ASSERT_TRUE(status.ok()) << status.ToString();
  auto enc = LoadSentencePiece(dir + "/tiny.model");
  ASSERT_TRUE(enc.ok()) << enc.status().ToString();
  const auto ids = (*enc)("the cache keeps the state");
  EXPECT_FALSE(ids.empty());
  EXPECT_LT(ids.size(), std::string("the cache keeps the state").size());  // merges happened
  EXPECT_EQ(LoadSentencePiece(dir + "/missing.model").status().code(), StatusCode::kIoError);
  ASSERT_TRUE(WriteFile(dir + "/garbage.model", "not a model").ok());
  EXPECT_FALSE(LoadSentencePiece(dir + "/garbage.model").ok());
}

TEST(TraceBuilder, RealChatDataWithTheLlama2Tokenizer) {
  std::string root;
  for (const std::string prefix : {"", "../", "../../"}) {
    if (std::filesystem::exists(prefix + "../shared/data/tokenizer/llama2.model")) {
      root = prefix + "../shared/data/";
    }
  }
  if (root.empty()) GTEST_SKIP() << "../shared/data not found: skipping the real-data test";
  auto enc = LoadSentencePiece(root + "tokenizer/llama2.model").value();
  EXPECT_EQ(enc("Hello world"), (std::vector<Token>{15043, 3186}));  // Llama-2 ids
  BuildOptions o;
  o.workload = Workload::kChat;
  o.sessions = 5;
  o.min_turns = 2;
  const std::string out = ::testing::TempDir() + "/sharegpt5.jsonl.zst";
  auto w = TraceWriter::Open(out).value();
  auto report = BuildTrace(root + "chat/sharegpt.jsonl.zst", o, enc, *w);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_TRUE(w->Close().ok());
  EXPECT_EQ(report->sessions, 5);
  const auto sessions = BySession(ReadTrace(out).value());
  for (const auto& [id, turns] : sessions) {
    ASSERT_GE(turns.size(), 2u) << id;
    for (size_t k = 1; k < turns.size(); ++k) {
      const auto prev = Cat({turns[k - 1].input, turns[k - 1].output});
      ASSERT_TRUE(std::equal(prev.begin(), prev.end(), turns[k].input.begin())) << id;
    }
  }
}

}  // namespace
}  // namespace marconi::sim
