// The OpenAI request parser: what each field becomes in GenerateInput, and a table of malformed
// bodies, each rejected with INVALID_ARGUMENT naming the parameter OpenAI would name.
#include "scheduler/http/openai_request.h"

#include <gtest/gtest.h>

#include "scheduler/http/openai_response.h"

namespace ite {
namespace {

OpenAiRequest Parse(OpenAiEndpoint endpoint, const std::string& body) {
  StatusOr<OpenAiRequest> r = ParseOpenAiRequest(endpoint, body);
  EXPECT_TRUE(r.ok()) << body << ": " << r.status().ToString();
  return r.ok() ? std::move(r).value() : OpenAiRequest();
}

TEST(OpenAiRequestTest, CompletionFields) {
  OpenAiRequest r = Parse(OpenAiEndpoint::kCompletions, R"({
    "model": "m", "prompt": "Hello", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
    "n": 3, "stop": "\n", "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -1,
    "logprobs": 2, "stream": true, "stream_options": {"include_usage": true}, "user": "u",
    "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.1, "min_tokens": 2, "ignore_eos": true,
    "stop_token_ids": [3, 4], "include_stop_str_in_output": true, "unknown_field": {"x": 1}})");
  ASSERT_EQ(r.inputs.size(), 1u);
  const GenerateInput& in = r.inputs[0];
  EXPECT_EQ(in.prompt.text, "Hello");
  EXPECT_EQ(in.model, "m");
  EXPECT_EQ(in.max_tokens, 7);
  EXPECT_EQ(in.sampling.temperature, 0.5f);
  EXPECT_EQ(in.sampling.top_p, 0.9f);
  EXPECT_EQ(in.sampling.seed, 42u);
  EXPECT_EQ(in.sampling.presence_penalty, 0.5f);
  EXPECT_EQ(in.sampling.frequency_penalty, -1.0f);
  EXPECT_EQ(in.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(in.sampling.min_p.value_or(0), 0.1f);
  EXPECT_EQ(in.sampling.repetition_penalty, 1.1f);
  EXPECT_EQ(in.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(in.stop_token_ids, (std::vector<int32_t>{3, 4}));
  EXPECT_EQ(in.min_tokens, 2);
  EXPECT_TRUE(in.ignore_eos);
  EXPECT_TRUE(in.include_stop_str_in_output);
  EXPECT_TRUE(in.logprobs);
  EXPECT_EQ(in.top_logprobs, 2);
  EXPECT_EQ(r.n, 3);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.completion_logprobs, 2);
  EXPECT_EQ(r.user, "u");
}

TEST(OpenAiRequestTest, PromptShapes) {
  OpenAiRequest r = Parse(OpenAiEndpoint::kCompletions, R"({"prompt": ["a", [1, 2], "b"]})");
  ASSERT_EQ(r.inputs.size(), 3u);
  EXPECT_EQ(r.inputs[0].prompt.text, "a");
  EXPECT_EQ(r.inputs[1].prompt.token_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(r.inputs[2].prompt.text, "b");
  r = Parse(OpenAiEndpoint::kCompletions, R"({"prompt": [5, 6, 7], "top_k": -1})");
  ASSERT_EQ(r.inputs.size(), 1u);
  EXPECT_EQ(r.inputs[0].prompt.token_ids, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(r.inputs[0].sampling.top_k, 0);
  EXPECT_FALSE(r.inputs[0].max_tokens.has_value());  // the server's default
  EXPECT_FALSE(r.inputs[0].logprobs);
}

TEST(OpenAiRequestTest, ChatFields) {
  OpenAiRequest r = Parse(OpenAiEndpoint::kChat, R"({
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "Hi"},
                                              {"type": "text", "text": "there"}]},
                 {"role": "assistant", "content": null}],
    "max_tokens": 3, "max_completion_tokens": 9, "logprobs": true, "top_logprobs": 4,
    "response_format": {"type": "text"}, "tools": []})");
  ASSERT_EQ(r.inputs.size(), 1u);
  const GenerateInput& in = r.inputs[0];
  ASSERT_TRUE(in.prompt.chat.has_value());
  ASSERT_EQ(in.prompt.chat->size(), 3u);
  EXPECT_EQ((*in.prompt.chat)[0].role, "system");
  EXPECT_EQ((*in.prompt.chat)[0].content[0].text, "Be brief.");
  ASSERT_EQ((*in.prompt.chat)[1].content.size(), 2u);
  EXPECT_EQ((*in.prompt.chat)[1].content[1].text, "there");
  EXPECT_EQ((*in.prompt.chat)[2].content[0].text, "");
  EXPECT_EQ(in.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_TRUE(in.logprobs);
  EXPECT_EQ(in.top_logprobs, 4);
  EXPECT_TRUE(r.chat_logprobs);
}

TEST(OpenAiRequestTest, ImageUrlPartsBecomeImageParts) {
  // "GIF89a" in base64; whether it decodes is the intake's question, not the parser's.
  OpenAiRequest r = Parse(OpenAiEndpoint::kChat, R"({
    "messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlh"}},
      {"type": "text", "text": "What is shown?"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
                                          "detail": "low"}}]}]})");
  ASSERT_EQ(r.inputs.size(), 1u);
  const std::vector<ContentPart>& parts = (*r.inputs[0].prompt.chat)[0].content;
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].kind, ContentPart::Kind::kImage);
  EXPECT_EQ(parts[0].image.data, "GIF89a");
  EXPECT_EQ(parts[0].image.mime_type, "image/gif");
  EXPECT_EQ(parts[1].kind, ContentPart::Kind::kText);
  EXPECT_EQ(parts[1].text, "What is shown?");
  EXPECT_EQ(parts[2].kind, ContentPart::Kind::kImage);
  EXPECT_EQ(parts[2].image.data, "\x89PNG\r\n\x1a\n");
  // /tokenize takes the same messages.
  StatusOr<TokenizeBody> t = ParseTokenizeBody(R"({"messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lGODlh"}}]}]})");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t->prompt.chat)[0].content[0].kind, ContentPart::Kind::kImage);
}

TEST(OpenAiRequestTest, BadImageUrlPartsNameThePart) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"type": "image_url"})", "image_url: expected an object with a url"},
      {R"({"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="})",
       "image_url: expected an object with a url"},
      {R"({"type": "image_url", "image_url": {}})", "image_url.url: expected a string"},
      {R"({"type": "image_url", "image_url": {"url": 5}})", "image_url.url: expected a string"},
      {R"({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
          "detail": "ultra"}})",
       "image_url.detail"},
      {R"({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})",
       "image_url.url: 'https://example.com/a.png': only data: URLs are accepted"},
      {R"({"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!!"}})",
       "image_url.url: invalid base64"},
      {R"({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,SUkq"}})",
       "image_url.url: unsupported image type 'image/tiff'"},
  };
  for (const auto& [part, says] : cases) {
    const std::string body =
        R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, )" + part +
        "]}]}";
    StatusOr<OpenAiRequest> r = ParseOpenAiRequest(OpenAiEndpoint::kChat, body);
    ASSERT_FALSE(r.ok()) << body;
    const std::string m(r.status().message());
    EXPECT_EQ(m.rfind("messages[0].content[1].", 0), 0u) << m;
    EXPECT_NE(m.find(says), std::string::npos) << m;
    EXPECT_EQ(OpenAiParamOf(m), "messages");
    EXPECT_EQ(OpenAiErrorFor(r.status()).http_status, 400);
  }
}

struct BadCase {
  OpenAiEndpoint endpoint;
  std::string body;
  std::string param;  // what OpenAiParamOf must find ("" = none)
};

TEST(OpenAiRequestTest, MalformedBodiesNameTheParameter) {
  const auto C = OpenAiEndpoint::kCompletions;
  const auto H = OpenAiEndpoint::kChat;
  const std::vector<BadCase> cases = {
      {C, "", ""},
      {C, R"({"prompt": "abc)", ""},
      {C, "[1, 2]", ""},
      {C, "{\"prompt\": \"\xff\xfe\"}", ""},  // invalid UTF-8 inside a JSON string
      {C, std::string(5000, '[') + std::string(5000, ']'), ""},
      {C, R"({})", "prompt"},
      {C, R"({"prompt": 5})", "prompt"},
      {C, R"({"prompt": []})", "prompt"},
      {C, R"({"prompt": [1, "a"]})", "prompt"},
      {C, R"({"prompt": [[1, -2]]})", "prompt"},
      {C, R"({"prompt": "x", "max_tokens": "5"})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 2.5})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 1e400})", ""},  // a number JSON cannot hold
      {C, R"({"prompt": "x", "temperature": 2.5})", "temperature"},
      {C, R"({"prompt": "x", "temperature": true})", "temperature"},
      {C, R"({"prompt": "x", "presence_penalty": -3})", "presence_penalty"},
      {C, R"({"prompt": "x", "frequency_penalty": 2.1})", "frequency_penalty"},
      {C, R"({"prompt": "x", "n": 0})", "n"},
      {C, R"({"prompt": "x", "n": 1000})", "n"},
      {C, R"({"prompt": "x", "stop": 3})", "stop"},
      {C, R"({"prompt": "x", "stop": ["a", 1]})", "stop"},
      {C, R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options"},
      {C, R"({"prompt": "x", "stream": true, "stream_options": 3})", "stream_options"},
      {C, R"({"prompt": "x", "stream": "yes"})", "stream"},
      {C, R"({"prompt": "x", "logprobs": 21})", "logprobs"},
      {C, R"({"prompt": "x", "echo": true})", "echo"},
      {C, R"({"prompt": "x", "logit_bias": {"5": 10}})", "logit_bias"},
      {C, R"({"prompt": "x", "seed": "s"})", "seed"},
      {C, R"({"prompt": "x", "top_k": -2})", "top_k"},
      {C, R"({"prompt": "x", "stop_token_ids": 5})", "stop_token_ids"},
      {C, R"({"prompt": "x", "model": 5})", "model"},
      {H, R"({})", "messages"},
      {H, R"({"messages": []})", "messages"},
      {H, R"({"messages": "hi"})", "messages"},
      {H, R"({"messages": [{"content": "hi"}]})", "messages"},
      {H, R"({"messages": [{"role": "user", "content": 5}]})", "messages"},
      {H, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 1})", "logprobs"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})",
       "tools"},
      {H,
       R"({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}})",
       "response_format"},
  };
  for (const BadCase& c : cases) {
    StatusOr<OpenAiRequest> r = ParseOpenAiRequest(c.endpoint, c.body);
    ASSERT_FALSE(r.ok()) << "accepted: " << c.body.substr(0, 200);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << c.body.substr(0, 200);
    EXPECT_EQ(OpenAiParamOf(r.status().message()), c.param)
        << c.body.substr(0, 200) << " -> " << r.status().message();
    OpenAiError e = OpenAiErrorFor(r.status());
    EXPECT_EQ(e.http_status, 400);
    EXPECT_EQ(e.body["error"]["message"], r.status().message());
    EXPECT_EQ(e.body["error"]["type"], "invalid_request_error");
  }
}

TEST(OpenAiRequestTest, IntakeMessagesMapToOpenAiParams) {
  EXPECT_EQ(OpenAiParamOf("sampling.top_p = 2: must be in (0, 1]"), "top_p");
  EXPECT_EQ(OpenAiParamOf("chat.messages[1].role: empty"), "messages");
  EXPECT_EQ(OpenAiParamOf("prompt_token_ids[0] = 99999: outside the vocabulary"), "prompt");
  EXPECT_EQ(OpenAiParamOf("max_tokens = 0: must be >= 1"), "max_tokens");
  EXPECT_EQ(OpenAiParamOf("the request needs 9 KV blocks"), "");
  OpenAiError e =
      OpenAiErrorFor(InvalidArgument("model: unknown model 'x' (this server serves 'y')"));
  EXPECT_EQ(e.http_status, 404);
  EXPECT_EQ(e.body["error"]["code"], "model_not_found");
  EXPECT_EQ(OpenAiErrorFor(Unavailable("no worker")).http_status, 503);
  EXPECT_EQ(OpenAiErrorFor(Internal("bug")).http_status, 500);
}

TEST(OpenAiRequestTest, TokenizeBodies) {
  StatusOr<TokenizeBody> t = ParseTokenizeBody(R"({"prompt": "hi", "add_special_tokens": false})");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->prompt.text, "hi");
  EXPECT_EQ(t->prompt.add_special_tokens, false);
  t = ParseTokenizeBody(R"({"messages": [{"role": "user", "content": "hi"}]})");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->prompt.chat.has_value());
  EXPECT_FALSE(ParseTokenizeBody(R"({})").ok());
  EXPECT_FALSE(ParseTokenizeBody(R"({"prompt": "a", "messages": []})").ok());
  StatusOr<std::vector<int32_t>> d = ParseDetokenizeBody(R"({"tokens": [1, 2]})");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, (std::vector<int32_t>{1, 2}));
  EXPECT_FALSE(ParseDetokenizeBody(R"({"tokens": "12"})").ok());
  EXPECT_FALSE(ParseDetokenizeBody(R"({"tokens": [1.5]})").ok());
}

}  // namespace
}  // namespace ite
