// The incremental parsers on the hot path: HTTP/1.1 framing, server-sent events and the
// OpenAI chunk scanner, fed whole and split at every byte.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/bench/http_response_parser.h"
#include "cli/bench/sse.h"
#include "cli/bench/stream_chunk.h"

namespace tandem::bench {
namespace {

struct Parsed {
  int status = 0;
  bool keep_alive = false;
  std::string content_type;
  std::string body;
  bool done = false;
  std::string error;
};

// Feeds `pieces` in order; OnEof after them when `eof`.
Parsed Parse(const std::vector<std::string>& pieces, bool eof = false) {
  HttpResponseParser p;
  Parsed out;
  for (const std::string& piece : pieces) {
    std::string_view in(piece), body;
    while (true) {
      const auto e = p.Next(&in, &body);
      if (e == HttpResponseParser::Event::kNeedMore) break;
      if (e == HttpResponseParser::Event::kHead) out.status = p.status();
      if (e == HttpResponseParser::Event::kBody) out.body.append(body);
      if (e == HttpResponseParser::Event::kDone) {
        out.done = true;
        break;
      }
      if (e == HttpResponseParser::Event::kError) {
        out.error = p.error();
        return out;
      }
    }
    if (out.done) break;
  }
  if (eof && !out.done) {
    if (p.OnEof() == HttpResponseParser::Event::kDone) {
      out.done = true;
    } else {
      out.error = p.error();
    }
  }
  out.keep_alive = p.keep_alive();
  out.content_type = p.content_type();
  return out;
}

std::vector<std::string> SplitAt(const std::string& s, size_t at) {
  return {s.substr(0, at), s.substr(at)};
}

const std::string kChunked =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTRANSFER-encoding: chunked\r\n\r\n"
    "6\r\nhello \r\n5;ext=1\r\nworld\r\n0\r\nTrailer: x\r\n\r\n";

TEST(HttpResponseParserTest, ChunkedBodySplitAtEveryByte) {
  for (size_t at = 0; at <= kChunked.size(); ++at) {
    const Parsed p = Parse(SplitAt(kChunked, at));
    ASSERT_TRUE(p.done) << "split at " << at << ": " << p.error;
    EXPECT_EQ(p.status, 200);
    EXPECT_EQ(p.body, "hello world") << "split at " << at;
    EXPECT_TRUE(p.keep_alive);
    EXPECT_EQ(p.content_type, "text/event-stream");
  }
}

TEST(HttpResponseParserTest, ContentLengthAndConnectionClose) {
  const Parsed p =
      Parse({"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabcEXTRA"});
  EXPECT_TRUE(p.done);
  EXPECT_EQ(p.status, 500);
  EXPECT_EQ(p.body, "abc");
  EXPECT_FALSE(p.keep_alive);
}

TEST(HttpResponseParserTest, BodyUntilCloseEndsAtEof) {
  const Parsed p = Parse({"HTTP/1.0 200 OK\r\n\r\nsome", " body"}, /*eof=*/true);
  EXPECT_TRUE(p.done);
  EXPECT_EQ(p.body, "some body");
  EXPECT_FALSE(p.keep_alive);
}

TEST(HttpResponseParserTest, InterimResponsesAreSkipped) {
  const Parsed p = Parse({"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"});
  EXPECT_TRUE(p.done);
  EXPECT_EQ(p.status, 204);
}

TEST(HttpResponseParserTest, CutOrMalformedResponsesAreErrors) {
  EXPECT_NE(Parse({kChunked.substr(0, kChunked.size() - 20)}, true).error, "");
  EXPECT_NE(Parse({"HTTP/1.1 200 OK\r\n"}, true).error.find("mid-response"), std::string::npos);
  EXPECT_NE(Parse({""}, true).error.find("before a response"), std::string::npos);
  EXPECT_NE(Parse({"SPDY/3 200 OK\r\n\r\n"}).error.find("status line"), std::string::npos);
  EXPECT_NE(Parse({"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"})
                .error.find("chunk size"),
            std::string::npos);
  EXPECT_NE(Parse({"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"}).error.find("Content-Length"),
            std::string::npos);
}

std::vector<std::string> Events(const std::vector<std::string>& pieces) {
  SseParser p;
  std::vector<std::string> out;
  for (const std::string& piece : pieces) {
    std::string_view in(piece), data;
    while (p.Next(&in, &data)) out.emplace_back(data);
  }
  return out;
}

TEST(SseParserTest, EventsSplitAtEveryByte) {
  const std::string stream =
      ": comment\n\ndata: {\"a\":1}\n\nevent: x\r\ndata:two\r\ndata: lines\r\n\r\ndata: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "two\nlines", "[DONE]"};
  for (size_t at = 0; at <= stream.size(); ++at) {
    EXPECT_EQ(Events(SplitAt(stream, at)), want) << "split at " << at;
  }
}

TEST(SseParserTest, UnfinishedEventIsSeen) {
  SseParser p;
  std::string_view in = "data: {\"partial\"", data;
  EXPECT_FALSE(p.Next(&in, &data));
  EXPECT_TRUE(p.mid_event());
}

TEST(StreamChunkTest, CompletionChunkWithTextCarriesContent) {
  StreamChunk c;
  ASSERT_TRUE(
      ScanStreamChunk(
          R"({"id":"x","object":"text_completion","choices":[{"index":0,"text":"Hi","logprobs":null,"finish_reason":null}],"usage":null})",
          &c)
          .ok());
  EXPECT_TRUE(c.has_content);
  EXPECT_EQ(c.completion_tokens, -1);
  EXPECT_FALSE(c.is_error);
}

TEST(StreamChunkTest, ChatDeltasCountOnlyWhenTheyCarryText) {
  StreamChunk c;
  ASSERT_TRUE(
      ScanStreamChunk(R"({"choices":[{"delta":{"role":"assistant","content":""}}]})", &c).ok());
  EXPECT_FALSE(c.has_content);
  ASSERT_TRUE(ScanStreamChunk(R"({"choices": [ {"delta": {"content": "\"x\""} } ]})", &c).ok());
  EXPECT_TRUE(c.has_content);
  ASSERT_TRUE(ScanStreamChunk(R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})", &c).ok());
  EXPECT_TRUE(c.has_content);
  // "text" outside a choice is not generated text.
  ASSERT_TRUE(ScanStreamChunk(R"({"text":"no","choices":[]})", &c).ok());
  EXPECT_FALSE(c.has_content);
}

TEST(StreamChunkTest, UsageWithCachedTokens) {
  StreamChunk c;
  ASSERT_TRUE(
      ScanStreamChunk(
          R"({"choices":[],"usage":{"prompt_tokens":100,"completion_tokens":7,"total_tokens":107,"prompt_tokens_details":{"cached_tokens":64}}})",
          &c)
          .ok());
  EXPECT_FALSE(c.has_content);
  EXPECT_EQ(c.prompt_tokens, 100);
  EXPECT_EQ(c.completion_tokens, 7);
  EXPECT_EQ(c.cached_tokens, 64);
  ASSERT_TRUE(
      ScanStreamChunk(R"({"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}})", &c)
          .ok());
  EXPECT_EQ(c.cached_tokens, -1);  // Absent: unknown.
}

TEST(StreamChunkTest, ErrorEvents) {
  StreamChunk c;
  ASSERT_TRUE(
      ScanStreamChunk(R"({"error":{"message":"worker lost","type":"server_error"}})", &c).ok());
  EXPECT_TRUE(c.is_error);
  EXPECT_EQ(c.error_message, "worker lost");
  ASSERT_TRUE(ScanStreamChunk(R"({"error":"plain"})", &c).ok());
  EXPECT_TRUE(c.is_error);
  EXPECT_EQ(c.error_message, "plain");
  ASSERT_TRUE(ScanStreamChunk(R"({"error":null,"choices":[]})", &c).ok());
  EXPECT_FALSE(c.is_error);
}

TEST(StreamChunkTest, MalformedJsonIsRefused) {
  StreamChunk c;
  for (const char* bad : {"", "{", "[]", "{\"a\":}", "{\"a\":1,}", "{\"a\":tru}", "{\"a\":1} x",
                          "{\"a\":\"unterminated}", "{\"a\":-}", "{\"a\":1.}", "not json"}) {
    EXPECT_FALSE(ScanStreamChunk(bad, &c).ok()) << bad;
  }
  std::string deep(200, '[');
  EXPECT_FALSE(ScanStreamChunk("{\"a\":" + deep + std::string(200, ']') + "}", &c).ok());
  EXPECT_TRUE(
      ScanStreamChunk(R"({"a":[1,-2.5e3,true,false,null,{"b":[]}],"c":"\\\u00e9"})", &c).ok());
}

}  // namespace
}  // namespace tandem::bench
