// Renders the real chat templates of ../shared/data/tokenizers and compares them byte for byte
// with what transformers renders (tests/data/chat_templates, made by
// scripts/render_chat_templates.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "model/jinja/jinja.h"

namespace tandem::jinja {
namespace {

using nlohmann::ordered_json;

const std::filesystem::path kGoldenDir =
    std::filesystem::path(TANDEM_SOURCE_DIR) / "tests" / "data" / "chat_templates";
const std::filesystem::path kTokenizersDir =
    std::filesystem::path(TANDEM_SOURCE_DIR) / ".." / "shared" / "data" / "tokenizers";

bool ReadFile(const std::filesystem::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

// The source of a template named as the script names it: a .jinja path, a tokenizer_config.json
// path (its chat_template string), or such a path with "#name" (one of its named templates).
bool LoadTemplate(const std::string& name, std::string* source, std::string* error) {
  const size_t hash = name.find('#');
  const std::string file = name.substr(0, hash);
  std::string text;
  if (!ReadFile(kTokenizersDir / file, &text)) {
    *error = "cannot read " + (kTokenizersDir / file).string();
    return false;
  }
  if (file.size() < 5 || file.substr(file.size() - 5) != ".json") {
    *source = text;
    return true;
  }
  const ordered_json config = ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.contains("chat_template")) {
    *error = file + " has no chat_template";
    return false;
  }
  const ordered_json& chat_template = config["chat_template"];
  if (chat_template.is_string()) {
    *source = chat_template.get<std::string>();
    return true;
  }
  for (const ordered_json& item : chat_template) {
    if (hash != std::string::npos && item.value("name", "") == name.substr(hash + 1)) {
      *source = item.value("template", "");
      return true;
    }
  }
  *error = "no template " + name;
  return false;
}

class ChatTemplatesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kTokenizersDir)) {
      GTEST_SKIP() << "chat templates not found: " << kTokenizersDir
                   << " (the shared data folder is not checked out next to the repository)";
    }
    std::string cases_text;
    std::string expected_text;
    ASSERT_TRUE(ReadFile(kGoldenDir / "cases.json", &cases_text));
    ASSERT_TRUE(ReadFile(kGoldenDir / "expected.json", &expected_text));
    cases_ = ordered_json::parse(cases_text, nullptr, false);
    expected_ = ordered_json::parse(expected_text, nullptr, false);
    ASSERT_FALSE(cases_.is_discarded());
    ASSERT_FALSE(expected_.is_discarded());
  }

  // The context the script rendered with (same keys in the same order).
  ordered_json Context(const ordered_json& render) const {
    const ordered_json& conversation = cases_["conversations"][render["case"].get<std::string>()];
    ordered_json context = ordered_json::object();
    context["messages"] = conversation["messages"];
    context["tools"] = conversation["tools"].get<bool>() ? cases_["tools"] : ordered_json();
    context["documents"] = nullptr;
    context["add_generation_prompt"] = render["add_generation_prompt"];
    for (const auto& [key, value] :
         cases_["templates"][render["template"].get<std::string>()].items()) {
      context[key] = value;
    }
    return context;
  }

  ordered_json cases_;
  ordered_json expected_;
};

TEST_F(ChatTemplatesTest, RendersAsTransformersDoes) {
  std::map<std::string, std::unique_ptr<Template>> templates;
  int matched = 0;
  int total = 0;
  for (const ordered_json& render : expected_["renders"]) {
    const std::string name = render["template"].get<std::string>();
    const std::string label = name + " / " + render["case"].get<std::string>() +
                              " / add_generation_prompt=" + render["add_generation_prompt"].dump();
    ++total;
    auto it = templates.find(name);
    if (it == templates.end()) {
      std::string source;
      std::string error;
      ASSERT_TRUE(LoadTemplate(name, &source, &error)) << error;
      StatusOr<std::unique_ptr<Template>> parsed = Template::Parse(source);
      ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.status();
      it = templates.emplace(name, std::move(parsed).value()).first;
    }
    const StatusOr<std::string> rendered = it->second->RenderOrdered(Context(render));
    if (render.contains("expected")) {
      if (!rendered.ok()) {
        ADD_FAILURE() << label << ": " << rendered.status();
        continue;
      }
      EXPECT_EQ(*rendered, render["expected"].get<std::string>()) << label;
      if (*rendered == render["expected"].get<std::string>()) ++matched;
    } else {
      const std::string expected_error = render["expected_error"].get<std::string>();
      if (rendered.ok()) {
        ADD_FAILURE() << label << ": rendered, expected error: " << expected_error;
        continue;
      }
      // The template's own messages (raise_exception) and Python's type errors match exactly.
      EXPECT_NE(rendered.status().message().find(expected_error), std::string::npos)
          << label << ": " << rendered.status() << "\nexpected: " << expected_error;
      if (rendered.status().message().find(expected_error) != std::string::npos) ++matched;
    }
  }
  EXPECT_GT(total, 0);
  std::cout << matched << " of " << total << " (template, case) renders match\n";
}

// nlohmann::json sorts object keys; Python keeps insertion order. With sorted input the tool
// schemas print sorted, so only RenderOrdered reproduces transformers for dicts shown by tojson.
TEST_F(ChatTemplatesTest, SortedJsonContextRendersTemplatesWithoutTools) {
  for (const ordered_json& render : expected_["renders"]) {
    if (render["case"] != "system_user" || !render.contains("expected")) continue;
    std::string source;
    std::string error;
    ASSERT_TRUE(LoadTemplate(render["template"].get<std::string>(), &source, &error)) << error;
    StatusOr<std::unique_ptr<Template>> parsed = Template::Parse(source);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    const nlohmann::json context = nlohmann::json::parse(Context(render).dump());
    const StatusOr<std::string> rendered = (*parsed)->Render(context);
    ASSERT_TRUE(rendered.ok()) << rendered.status();
    EXPECT_EQ(*rendered, render["expected"].get<std::string>()) << render["template"];
  }
}

}  // namespace
}  // namespace tandem::jinja
