#include "sim/trace.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "sim/file_io.h"
#include "sim/synthetic.h"

namespace marconi::sim {
namespace {

const char* kGood =
    R"({"session_id": "a", "turn_id": 0, "ts": 1.5, "num_input_tokens": 3, "num_output_tokens": 1, "input_tokens": [1, 2, 3], "output_tokens": [4], "extra": {"x": [1]}}
{"session_id": 7, "turn_id": 1, "ts": 0.5, "input_tokens": [1, 2, 3, 4, 9]}

)";

TEST(Trace, ParsesAndSortsByTimestamp) {
  auto t = ParseTrace(kGood, "good.jsonl");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->requests.size(), 2u);
  EXPECT_EQ(t->requests[0].session_id, "7");  // sorted by ts
  EXPECT_EQ(t->requests[0].line, 2);
  EXPECT_EQ(t->requests[0].input, (std::vector<Token>{1, 2, 3, 4, 9}));
  EXPECT_TRUE(t->requests[0].output.empty());
  EXPECT_EQ(t->requests[1].session_id, "a");
  EXPECT_EQ(t->requests[1].ts, 1.5);
  EXPECT_EQ(t->requests[1].output, std::vector<Token>{4});
  EXPECT_EQ(t->input_tokens(), 8);
}

struct Case {
  const char* text;
  const char* expect;  // a part of the error message
};

// Every case fails to parse as "bad.jsonl" with a parse error whose message contains `expect`.
void ExpectParseErrors(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    auto t = ParseTrace(c.text, "bad.jsonl");
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_EQ(t.status().code(), StatusCode::kParseError);
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos)
        << "got: " << t.status().message() << "\nwant: " << c.expect;
  }
}

TEST(Trace, ErrorsNameFileAndLine) {
  const std::vector<Case> cases = {
      {"{\"ts\": 1, \"input_tokens\": [1]}\n{\"ts\": 2}\n",
       "bad.jsonl:2: missing field 'input_tokens'"},
      {"{\"input_tokens\": [1]}\n", "bad.jsonl:1: missing field 'ts'"},
      {"{\"ts\": 1, \"input_tokens\": []}\n", "bad.jsonl:1: field 'input_tokens' is empty"},
      {"{\"ts\": 1, \"input_tokens\": [1, \"x\"]}\n", "bad.jsonl:1: field 'input_tokens'"},
      {"{\"ts\": 1, \"input_tokens\": [99999999999]}\n", "outside int32"},
      {"{\"ts\": 1, \"num_input_tokens\": 2, \"input_tokens\": [1]}\n", "num_input_tokens 2"},
      {"[1, 2]\n", "bad.jsonl:1: not a JSON object"},
      {"{\"ts\": 1, \"input_tokens\": [1]} {\"ts\": 2}\n", "bad.jsonl:1: trailing content"},
      {"{\"ts\": \"soon\", \"input_tokens\": [1]}\n", "bad.jsonl:1: field 'ts'"},
      {"{\"ts\": 1, \"input_tokens\": [1,\n", "bad.jsonl:1:"},
      {"", "bad.jsonl: no request in the trace"},
      {"\n  \n", "no request"},
  };
  ExpectParseErrors(cases);
}

// Each fault is named (simdjson alone said "not a JSON object" or a generic structure error).
TEST(Trace, ParseErrorsSayWhatIsWrong) {
  const std::vector<Case> cases = {
      {"{\"ts\": 1, \"input_tokens\": [1]} xyz\n",
       "bad.jsonl:1: trailing content after the JSON object (column 32)"},
      {"{\"ts\": 1, \"input_tokens\": [1, 2\n", "bad.jsonl:1: truncated"},
      {"{\"ts\": 1, \"input_tokens\": [1]}\n\xEF\xBB\xBF{\"ts\": 2, \"input_tokens\": [1]}\n",
       "bad.jsonl:2: UTF-8 byte order mark"},
      {"{\"ts\": 1e999, \"input_tokens\": [1]}\n",
       "bad.jsonl:1: field 'ts': malformed or out-of-range"},
      {"{\"ts\": 1, \"input_tokens\": [99999999999999999999]}\n",
       "bad.jsonl:1: field 'input_tokens': not an integer"},
      {"{\"ts\": 1, \"turn_id\": 2.5, \"input_tokens\": [1]}\n",
       "bad.jsonl:1: field 'turn_id': not an integer"},
      {"{\"ts\": 1, \"input_tokens\": [1, \"x\"]}\n",
       "field 'input_tokens': a token is not a number"},
      {"{\"ts\": 1, \"num_input_tokens\": -5, \"input_tokens\": [1]}\n",
       "bad.jsonl:1: field 'num_input_tokens' is negative (-5)"},
      {"{\"ts\": 1, \"num_output_tokens\": -1, \"input_tokens\": [1]}\n",
       "field 'num_output_tokens' is negative"},
      {"{\"ts\": 1, \"num_output_tokens\": 3, \"input_tokens\": [1]}\n",
       "num_output_tokens 3 but there is no output_tokens array"},
      {"{\"ts\": 1, \"input_tokens\": [1],}\n", "bad.jsonl:1: malformed JSON"},
      {"ts: 1\n", "bad.jsonl:1: not a JSON object (the line starts with 't')"},
  };
  ExpectParseErrors(cases);
}

TEST(Trace, ByteOrderMarkAtTheStartIsSkipped) {
  auto t = ParseTrace(std::string("\xEF\xBB\xBF") + kGood, "bom.jsonl");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->requests.size(), 2u);
}

TEST(Trace, TurnsOfASessionOutOfTimeOrderAreRefused) {
  auto t = ParseTrace(
      "{\"session_id\": \"s\", \"ts\": 5, \"input_tokens\": [1]}\n"
      "{\"session_id\": \"other\", \"ts\": 1, \"input_tokens\": [7]}\n"
      "{\"session_id\": \"s\", \"ts\": 3, \"input_tokens\": [1, 2, 3]}\n",
      "turns.jsonl");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kParseError);
  EXPECT_NE(t.status().message().find("turns.jsonl:3: session 's': ts 3 is earlier than ts 5 of "
                                      "its previous turn (line 1)"),
            std::string::npos)
      << t.status().message();
}

TEST(Trace, RequestsOfDifferentSessionsOutOfOrderAreSortedAndCounted) {
  auto t = ParseTrace(
      "{\"session_id\": \"a\", \"ts\": 5, \"input_tokens\": [1]}\n"
      "{\"session_id\": \"b\", \"ts\": 1, \"input_tokens\": [2]}\n"
      "{\"session_id\": \"c\", \"ts\": 2, \"input_tokens\": [3]}\n"
      "{\"session_id\": \"a\", \"ts\": 6, \"input_tokens\": [1, 4, 5]}\n",
      "sorted.jsonl");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->reordered_requests, 2);
  ASSERT_EQ(t->requests.size(), 4u);
  EXPECT_EQ(t->requests[0].session_id, "b");
  EXPECT_EQ(t->requests[3].line, 4);
  auto in_order = ParseTrace(kGood, "good.jsonl");
  ASSERT_TRUE(in_order.ok());
  EXPECT_EQ(in_order->reordered_requests, 1);  // kGood's second line is earlier than its first
}

TEST(Trace, SkipBadLinesCountsThem) {
  const std::string text = std::string("garbage\n") + kGood + "{\"ts\": 3}\n";
  auto t = ParseTrace(text, "mixed.jsonl", {true});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->requests.size(), 2u);
  EXPECT_EQ(t->skipped_lines, 2);
  auto none = ParseTrace("x\ny\n", "all-bad.jsonl", {true});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("2 bad lines"), std::string::npos);
}

TEST(Trace, RoundTripsThroughPlainAndZstdFiles) {
  Trace t = SyntheticDocQa(3, 5);
  t.requests[0].session_id = "quote\"and\\slash\n";
  for (const char* name : {"/trace_rt.jsonl", "/trace_rt.jsonl.zst"}) {
    const std::string path = ::testing::TempDir() + name;
    ASSERT_TRUE(WriteTrace(path, t).ok());
    auto back = ReadTrace(path);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_EQ(back->requests.size(), t.requests.size());
    for (size_t i = 0; i < t.requests.size(); ++i) {
      EXPECT_EQ(back->requests[i].session_id, t.requests[i].session_id);
      EXPECT_EQ(back->requests[i].ts, t.requests[i].ts);
      EXPECT_EQ(back->requests[i].input, t.requests[i].input);
      EXPECT_EQ(back->requests[i].output, t.requests[i].output);
    }
  }
}

TEST(Trace, FileErrors) {
  EXPECT_EQ(ReadTrace("/nonexistent/trace.jsonl").status().code(), StatusCode::kIoError);
  const std::string path = ::testing::TempDir() + "/corrupt.jsonl.zst";
  // Written without compression under a .zst name: the reader must reject the frame.
  ASSERT_TRUE(WriteFile(::testing::TempDir() + "/corrupt.jsonl", "this is not a zstd frame").ok());
  std::rename((::testing::TempDir() + "/corrupt.jsonl").c_str(), path.c_str());
  auto r = ReadTrace(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kParseError);
  EXPECT_NE(r.status().message().find("corrupt zstd"), std::string::npos);
}

TEST(Synthetic, DocQaIsDeterministicAndSharesDocuments) {
  const Trace a = SyntheticDocQa(4, 9), b = SyntheticDocQa(4, 9);
  EXPECT_EQ(FormatTrace(a), FormatTrace(b));
  EXPECT_NE(FormatTrace(a), FormatTrace(SyntheticDocQa(4, 10)));
  for (size_t i = 1; i < a.requests.size(); ++i) EXPECT_LE(a.requests[i - 1].ts, a.requests[i].ts);
}

}  // namespace
}  // namespace marconi::sim
