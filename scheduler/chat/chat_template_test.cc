#include "scheduler/chat/chat_template.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

namespace ite {
namespace {

using OJson = nlohmann::ordered_json;

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// ctest passes ITE_SOURCE_DIR; the other variables have defaults relative to it.
std::string SourceDir() { return EnvOr("ITE_SOURCE_DIR", "."); }

std::string WriteTemp(const std::string& name, const std::string& text) {
  auto dir = std::filesystem::temp_directory_path() / "ite_chat_template_test";
  std::filesystem::create_directories(dir);
  auto path = dir / name;
  std::ofstream(path) << text;
  return path.string();
}

TEST(ChatTemplateTest, FromStringRendersConversation) {
  auto t = ChatTemplate::FromString(
      "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}"
      "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
      "<s>", "</s>");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  OJson messages = OJson::parse(R"([{"role":"user","content":"Hi"}])");
  auto out = t->Render(messages, true);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, "<s><user>Hi</s><assistant>");
  auto no_prompt = t->Render(messages, false);
  ASSERT_TRUE(no_prompt.ok());
  EXPECT_EQ(*no_prompt, "<s><user>Hi</s>");
}

TEST(ChatTemplateTest, NormalizesMessagesLikeTransformers) {
  auto t = ChatTemplate::FromString("{% for m in messages %}{{ m|tojson }}{% endfor %}", "", "");
  ASSERT_TRUE(t.ok());
  // None-valued keys are dropped; reasoning is aliased to thinking and reasoning_content.
  OJson messages =
      OJson::parse(R"([{"role":"assistant","content":"x","tool_calls":null,"reasoning":"r"}])");
  auto out = t->Render(messages, false);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, R"({"thinking": "r", "role": "assistant", "content": "x", "reasoning": "r", )"
                  R"("reasoning_content": "r"})");
}

TEST(ChatTemplateTest, ExtraVariablesToolsAndErrors) {
  auto t = ChatTemplate::FromString(
      "{% if tools is not none %}{{ tools|length }} tools;{% endif %}{{ date_string }}"
      "{% if messages[0].role == 'bad' %}{{ raise_exception('Bad role: ' + messages[0].role) }}"
      "{% endif %}",
      "", "");
  ASSERT_TRUE(t.ok());
  OJson user = OJson::parse(R"([{"role":"user","content":"x"}])");
  OJson extra = {{"tools", OJson::array({{{"type", "function"}}})}, {"date_string", "1 Jan"}};
  auto out = t->Render(user, true, extra);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, "1 tools;1 Jan");

  auto bad = t->Render(OJson::parse(R"([{"role":"bad","content":"x"}])"), true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "Bad role: bad");

  EXPECT_FALSE(t->Render(OJson::array(), true).ok());
  EXPECT_FALSE(t->Render(OJson::parse(R"(["not an object"])"), true).ok());
  EXPECT_FALSE(t->Render(OJson::object(), true).ok());
  EXPECT_FALSE(t->Render(user, true, OJson{{"tools", "not a list"}}).ok());
}

TEST(ChatTemplateTest, MalformedTemplateIsAnError) {
  auto t = ChatTemplate::FromString("{% for m in messages %}{{ m.content }", "", "");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  auto at_compile = ChatTemplate::FromString("{{ messages|nosuchfilter }}", "", "");
  ASSERT_FALSE(at_compile.ok());
  EXPECT_NE(at_compile.status().message().find("No filter named 'nosuchfilter'"),
            std::string::npos);
  // Inside an if, jinja2 (and we) fail only when the filter runs.
  auto unknown =
      ChatTemplate::FromString("{% if messages %}{{ messages|nosuchfilter }}{% endif %}", "", "");
  ASSERT_TRUE(unknown.ok());
  auto out = unknown->Render(OJson::parse(R"([{"role":"user","content":"x"}])"), true);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("nosuchfilter"), std::string::npos);
}

TEST(ChatTemplateTest, TokenizerConfigFiles) {
  EXPECT_EQ(ChatTemplate::FromTokenizerConfig("/nonexistent/tokenizer_config.json").status().code(),
            StatusCode::kNotFound);
  EXPECT_FALSE(ChatTemplate::FromTokenizerConfig(WriteTemp("bad.json", "{not json")).ok());
  auto missing = ChatTemplate::FromTokenizerConfig(WriteTemp("no_template.json", R"({"a":1})"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("chat_template"), std::string::npos);

  // Named templates: "tool_use" when tools are given, else "default".
  auto named = ChatTemplate::FromTokenizerConfig(WriteTemp("named.json", R"({
      "bos_token": {"content": "<B>", "special": true}, "eos_token": null,
      "chat_template": [{"name": "default", "template": "D{{ bos_token }}{{ eos_token }}"},
                        {"name": "tool_use", "template": "T"}]})"));
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  OJson user = OJson::parse(R"([{"role":"user","content":"x"}])");
  EXPECT_EQ(*named->Render(user, false), "D<B>");
  EXPECT_EQ(*named->Render(user, false, OJson{{"tools", OJson::array()}}), "T");

  std::string shared = EnvOr("ITE_SHARED_DIR", SourceDir() + "/../shared");
  std::string qwen3 = shared + "/tokenizers/qwen3/tokenizer_config.json";
  if (!std::filesystem::exists(qwen3)) GTEST_SKIP() << "no " << qwen3;
  auto q = ChatTemplate::FromTokenizerConfig(qwen3);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->special_tokens().count("bos_token"), 0u);  // null in the config
  EXPECT_EQ(q->special_tokens().at("eos_token"), "<|im_end|>");
  auto out = q->Render(user, true, OJson{{"enable_thinking", false}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplateTest, TemplateFileBesideConfig) {
  auto dir = std::filesystem::temp_directory_path() / "ite_chat_template_test" / "beside";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<e>"})";
  std::ofstream(dir / "chat_template.json") << R"({"chat_template": "J{{ eos_token }}"})";
  OJson user = OJson::parse(R"([{"role":"user","content":"x"}])");
  auto from_json = ChatTemplate::FromTokenizerConfig(dir.string());
  ASSERT_TRUE(from_json.ok()) << from_json.status().ToString();
  EXPECT_EQ(*from_json->Render(user, false), "J<e>");
  std::ofstream(dir / "chat_template.jinja") << "K{{ eos_token }}\n";
  auto from_jinja = ChatTemplate::FromFile((dir / "tokenizer_config.json").string());
  ASSERT_TRUE(from_jinja.ok()) << from_jinja.status().ToString();
  EXPECT_EQ(*from_jinja->Render(user, false), "K<e>");  // jinja2 drops one trailing newline
}

TEST(ChatTemplateTest, ConcurrentRendersShareOneTemplate) {
  auto t = ChatTemplate::FromString(
      "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
      "{{ m.content }}{% endfor %}{{ ns.n }}",
      "", "");
  ASSERT_TRUE(t.ok());
  std::vector<std::string> outputs(8);
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      OJson messages = OJson::array();
      for (int k = 0; k <= i; ++k) messages.push_back({{"role", "user"}, {"content", "m"}});
      for (int rep = 0; rep < 200; ++rep) {
        auto out = t->Render(messages, true);
        outputs[i] = out.ok() ? *out : out.status().message();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(outputs[i], std::string(i + 1, 'm') + std::to_string(i + 1));
}

TEST(ChatTemplateTest, GgufTemplateMatchesGguflibExtraction) {
  std::string gguf =
      EnvOr("ITE_MODEL_GGUF", SourceDir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
  if (gguf.empty() || !std::filesystem::exists(gguf)) GTEST_SKIP() << "no model GGUF";
  std::string golden_path = SourceDir() + "/tests/chat/goldens/smollm2_gguf.json";
  std::ifstream in(golden_path);
  ASSERT_TRUE(in) << golden_path;
  OJson golden = OJson::parse(in);
  auto t = ChatTemplate::FromGguf(gguf);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->source(), golden["chat_template"].get<std::string>());
  EXPECT_EQ(t->special_tokens().at("bos_token"), golden["bos_token"].get<std::string>());
  EXPECT_EQ(t->special_tokens().at("eos_token"), golden["eos_token"].get<std::string>());
  auto out = t->Render(OJson::parse(R"([{"role":"user","content":"Hi"}])"), true);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, golden["rendered_hi"].get<std::string>());

  EXPECT_FALSE(ChatTemplate::FromGguf(WriteTemp("fake.gguf", "GGUF garbage")).ok());
}

}  // namespace
}  // namespace ite
