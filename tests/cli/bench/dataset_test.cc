// The four workload formats: what each reads, and one clear error (file, line, cause) for each
// kind of malformed input. The real traces in ../shared/data/traces are parsed when present.
#include "cli/bench/dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "cli_test_util.h"

namespace tandem::bench {
namespace {

namespace fs = std::filesystem;
using cli::testing::TempDirTest;

const fs::path kTraces = fs::path(TANDEM_SOURCE_DIR) / "../shared/data/traces";

class DatasetTest : public TempDirTest {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
};

void ExpectErrorMentions(const Status& s, const std::vector<std::string>& parts) {
  ASSERT_FALSE(s.ok());
  for (const std::string& part : parts) {
    EXPECT_NE(s.message().find(part), std::string::npos) << s.message() << " lacks " << part;
  }
}

TEST(RandomDatasetTest, LengthsStayInTheRangeAndRepeatWithTheSeed) {
  DatasetOptions o;
  o.input_len = 100;
  o.output_len = 10;
  o.range_ratio = 0.5;
  o.num_requests = 500;
  o.seed = 7;
  const Dataset a = MakeRandomDataset(o);
  ASSERT_EQ(a.requests.size(), 500u);
  EXPECT_FALSE(a.has_timestamps);
  int distinct_min = 1000, distinct_max = 0;
  for (const RequestSpec& r : a.requests) {
    EXPECT_GE(r.input_len, 50);
    EXPECT_LE(r.input_len, 150);
    EXPECT_GE(r.output_len, 5);
    EXPECT_LE(r.output_len, 15);
    distinct_min = std::min(distinct_min, r.input_len);
    distinct_max = std::max(distinct_max, r.input_len);
  }
  EXPECT_LT(distinct_min, 60);
  EXPECT_GT(distinct_max, 140);
  const Dataset b = MakeRandomDataset(o);
  for (size_t i = 0; i < a.requests.size(); ++i) {
    EXPECT_EQ(a.requests[i].input_len, b.requests[i].input_len);
  }
}

TEST(RandomDatasetTest, ZeroRangeGivesExactLengths) {
  DatasetOptions o;
  o.input_len = 32;
  o.output_len = 8;
  o.num_requests = 3;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  for (const RequestSpec& r : d->requests) {
    EXPECT_EQ(r.input_len, 32);
    EXPECT_EQ(r.output_len, 8);
  }
}

TEST(LoadDatasetTest, RejectsBadOptionsNamingTheFlag) {
  DatasetOptions o;
  o.range_ratio = 1.5;
  ExpectErrorMentions(LoadDataset(o).status(), {"--range-ratio"});
  o = DatasetOptions();
  o.kind = DatasetKind::kMooncake;
  ExpectErrorMentions(LoadDataset(o).status(), {"--path"});
  o = DatasetOptions();
  o.path = "x.json";
  ExpectErrorMentions(LoadDataset(o).status(), {"--path", "trace"});
  o = DatasetOptions();
  o.num_requests = 0;
  ExpectErrorMentions(LoadDataset(o).status(), {"--num-requests"});
  EXPECT_FALSE(ParseDatasetKind("bogus").ok());
}

TEST_F(DatasetTest, UnreadableFileIsAnErrorNamingIt) {
  DatasetOptions o;
  o.kind = DatasetKind::kAzure;
  o.path = (dir_ / "missing.csv").string();
  ExpectErrorMentions(LoadDataset(o).status(), {"missing.csv", "cannot open"});
}

TEST_F(DatasetTest, ShareGptTakesTheFirstAnsweredHumanTurnAndCountsSkips) {
  const std::string path = Write("sg.json", R"([
    {"id": "a", "conversations": [{"from": "human", "value": "hello there"},
                                  {"from": "gpt", "value": "0123456789abcdef"}]},
    {"id": "b", "conversations": [{"from": "gpt", "value": "orphan"},
                                  {"from": "human", "value": "question"},
                                  {"from": "gpt", "value": "answer"}]},
    {"id": "c", "conversations": [{"from": "human", "value": "unanswered"}]},
    {"id": "d", "conversations": []},
    {"id": "e"},
    42
  ])");
  auto d = LoadShareGpt(path);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->requests.size(), 2u);
  EXPECT_EQ(d->skipped, 4);
  EXPECT_EQ(d->requests[0].text, "hello there");
  EXPECT_EQ(d->requests[0].output_len, 4);  // 16 characters ~ 4 tokens.
  EXPECT_EQ(d->requests[1].text, "question");
  EXPECT_FALSE(d->has_timestamps);
}

TEST_F(DatasetTest, ShareGptOutputLenFlagReplacesTheEstimate) {
  DatasetOptions o;
  o.kind = DatasetKind::kShareGpt;
  o.path = Write("sg.json", R"([{"conversations": [{"from": "human", "value": "q"},
                                                  {"from": "gpt", "value": "a"}]}])");
  o.output_len = 77;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->requests[0].output_len, 77);
}

TEST_F(DatasetTest, ShareGptMalformedJsonIsAnError) {
  ExpectErrorMentions(LoadShareGpt(Write("bad.json", "[{")).status(), {"bad.json", "JSON"});
  ExpectErrorMentions(LoadShareGpt(Write("obj.json", "{}")).status(), {"obj.json", "list"});
}

TEST_F(DatasetTest, MooncakeReadsTimestampsLengthsAndHashIds) {
  const std::string path =
      Write("mc.jsonl",
            R"({"timestamp": 1000, "input_length": 1000, "output_length": 5, "hash_ids": [0, 1]}
{"timestamp": 1500, "input_length": 600, "output_length": 7, "hash_ids": [0, 2, 3]}

{"timestamp": 4000, "input_length": 10, "output_length": 1, "hash_ids": []}
)");
  auto d = LoadMooncake(path, 512);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->requests.size(), 3u);
  EXPECT_TRUE(d->has_timestamps);
  EXPECT_DOUBLE_EQ(*d->requests[0].timestamp_s, 0.0);  // Relative to the first entry.
  EXPECT_DOUBLE_EQ(*d->requests[1].timestamp_s, 0.5);
  EXPECT_DOUBLE_EQ(*d->requests[2].timestamp_s, 3.0);
  EXPECT_EQ(d->requests[0].hash_ids, (std::vector<int64_t>{0, 1}));
  // 600 tokens need 2 blocks of 512; the third id would be cut anyway.
  EXPECT_EQ(d->requests[1].hash_ids, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(d->requests[1].output_len, 7);
}

TEST_F(DatasetTest, MooncakeMalformedLinesNameTheLineAndTheCause) {
  const std::string good =
      R"({"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [1]})";
  struct Case {
    std::string line;
    std::string cause;
  };
  const std::vector<Case> cases = {
      {"{not json", "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {R"({"input_length": 5, "output_length": 1, "hash_ids": []})", "timestamp"},
      {R"({"timestamp": 0, "input_length": -3, "output_length": 1, "hash_ids": []})",
       "input_length"},
      {R"({"timestamp": 0, "input_length": 5, "output_length": "x", "hash_ids": []})",
       "output_length"},
      {R"({"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": 3})", "hash_ids"},
      {R"({"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["a"]})", "hash_ids"},
  };
  for (const Case& c : cases) {
    const std::string path = Write("bad.jsonl", good + "\n" + good + "\n" + c.line + "\n");
    ExpectErrorMentions(LoadMooncake(path, 512).status(), {"bad.jsonl:3", c.cause});
  }
}

TEST_F(DatasetTest, AzureReadsRelativeTimesFromTheFirstRow) {
  const std::string path = Write("az.csv",
                                 "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
                                 "2023-11-16 18:17:03.9799600,4808,10\r\n"
                                 "2023-11-16 18:17:04.0319600,3180,8\r\n"
                                 "2023-11-17 00:00:00,0,0\r\n");
  auto d = LoadAzure(path);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->requests.size(), 3u);
  EXPECT_DOUBLE_EQ(*d->requests[0].timestamp_s, 0.0);
  EXPECT_NEAR(*d->requests[1].timestamp_s, 0.052, 1e-6);
  EXPECT_NEAR(*d->requests[2].timestamp_s, 5 * 3600 + 42 * 60 + 56.02004, 1e-4);
  EXPECT_EQ(d->requests[0].input_len, 4808);
  EXPECT_EQ(d->requests[0].output_len, 10);
  EXPECT_EQ(d->requests[2].input_len, 1);  // Zeros become 1: a request needs both.
  EXPECT_EQ(d->requests[2].output_len, 1);
}

TEST_F(DatasetTest, AzureMalformedRowsNameTheLineAndTheCause) {
  const std::string header = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
  const std::string good = "2023-11-16 18:17:03.9799600,4808,10\n";
  ExpectErrorMentions(LoadAzure(Write("h.csv", "time,a,b\n" + good)).status(),
                      {"h.csv:1", "header"});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"2023-11-16 18:17:03,12", "3 comma-separated"},
      {"2023-13-16 18:17:03,12,4", "TIMESTAMP"},
      {"yesterday,12,4", "TIMESTAMP"},
      {"2023-11-16 18:17:03,-5,4", "ContextTokens"},
      {"2023-11-16 18:17:03,5,x", "GeneratedTokens"},
  };
  for (const auto& [row, cause] : cases) {
    ExpectErrorMentions(LoadAzure(Write("bad.csv", header + good + row + "\n")).status(),
                        {"bad.csv:3", cause});
  }
}

TEST_F(DatasetTest, NumRequestsCutsATrace) {
  DatasetOptions o;
  o.kind = DatasetKind::kAzure;
  o.path = Write("az.csv",
                 "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:17:03,1,1\n2023-11-16 18:17:04,2,2\n2023-11-16 18:17:05,3,3\n");
  o.num_requests = 2;
  auto d = LoadDataset(o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->requests.size(), 2u);
}

TEST(RealTracesTest, EveryTraceInSharedDataParses) {
  if (!fs::exists(kTraces)) {
    GTEST_SKIP() << "no traces at " << kTraces << " (the shared data folder is absent)";
  }
  auto sharegpt = LoadShareGpt((kTraces / "sharegpt_sample/original_example.json").string());
  ASSERT_TRUE(sharegpt.ok()) << sharegpt.status();
  EXPECT_EQ(sharegpt->requests.size() + sharegpt->skipped, 5u);
  EXPECT_FALSE(sharegpt->requests.empty());
  for (const char* name : {"conversation_trace.jsonl", "synthetic_trace.jsonl"}) {
    auto mooncake = LoadMooncake((kTraces / "mooncake" / name).string(), 512);
    ASSERT_TRUE(mooncake.ok()) << mooncake.status();
    EXPECT_GT(mooncake->requests.size(), 1000u) << name;
  }
  for (const char* name : {"AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv"}) {
    auto azure = LoadAzure((kTraces / "azure_llm_inference_2023" / name).string());
    ASSERT_TRUE(azure.ok()) << azure.status();
    EXPECT_GT(azure->requests.size(), 1000u) << name;
    EXPECT_GT(*azure->requests.back().timestamp_s, 0.0);
  }
}

}  // namespace
}  // namespace tandem::bench
