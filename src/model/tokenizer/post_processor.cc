#include "model/tokenizer/post_processor.h"

#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "model/tokenizer/json_spec.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

// One piece of a template: a run of special-token ids, or the sequence itself.
struct TemplatePiece {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};

// Ids around the sequence: `prefix` + ids + `suffix`.
class TemplateProcessor : public PostProcessor {
 public:
  explicit TemplateProcessor(std::vector<TemplatePiece> pieces) : pieces_(std::move(pieces)) {}
  void Process(std::vector<int32_t>& ids) const override {
    std::vector<int32_t> out;
    out.reserve(ids.size() + 4);
    for (const TemplatePiece& piece : pieces_) {
      if (piece.is_sequence) {
        out.insert(out.end(), ids.begin(), ids.end());
      } else {
        out.insert(out.end(), piece.ids.begin(), piece.ids.end());
      }
    }
    ids.swap(out);
  }

 private:
  std::vector<TemplatePiece> pieces_;
};

class IdentityProcessor : public PostProcessor {
 public:
  void Process(std::vector<int32_t>&) const override {}
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<std::unique_ptr<PostProcessor>> steps)
      : steps_(std::move(steps)) {}
  void Process(std::vector<int32_t>& ids) const override {
    for (const auto& step : steps_) step->Process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> steps_;
};

StatusOr<std::unique_ptr<PostProcessor>> ParseTemplate(const Json& spec, std::string_view source,
                                                       const std::string& path) {
  auto single = spec.find("single");
  if (single == spec.end() || !single->is_array()) {
    return FieldError(source, path + ".single", "must be an array");
  }
  auto specials = spec.find("special_tokens");
  std::vector<TemplatePiece> pieces;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& piece = (*single)[i];
    const std::string piece_path = path + ".single[" + std::to_string(i) + "]";
    if (!piece.is_object() || piece.size() != 1) {
      return FieldError(source, piece_path,
                        "must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
    const auto only = piece.begin();
    const std::string& kind = only.key();
    const Json& body = only.value();
    if (kind == "Sequence") {
      pieces.push_back({true, {}});
      continue;
    }
    if (kind != "SpecialToken") {
      return FieldError(source, piece_path, "has unknown kind '" + kind + "'");
    }
    auto name = body.find("id");
    if (name == body.end() || !name->is_string()) {
      return FieldError(source, piece_path + ".SpecialToken.id", "must be a string");
    }
    const std::string token = name->get<std::string>();
    if (specials == spec.end() || !specials->is_object() || !specials->contains(token)) {
      return FieldError(source, path + ".special_tokens",
                        "has no entry for '" + token + "' the template uses");
    }
    const Json& entry = (*specials)[token];
    auto ids = entry.find("ids");
    if (!entry.is_object() || ids == entry.end() || !ids->is_array()) {
      return FieldError(source, path + ".special_tokens." + token + ".ids", "must be an array");
    }
    TemplatePiece special;
    for (const Json& id : *ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return FieldError(source, path + ".special_tokens." + token + ".ids",
                          "must hold non-negative integers");
      }
      special.ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
    pieces.push_back(std::move(special));
  }
  return std::unique_ptr<PostProcessor>(new TemplateProcessor(std::move(pieces)));
}

// BertProcessing / RobertaProcessing: "cls": [token, id], "sep": [token, id] -> cls ids sep.
StatusOr<std::unique_ptr<PostProcessor>> ParseClsSep(const Json& spec, std::string_view source,
                                                     const std::string& path) {
  int32_t ids[2];
  const char* keys[2] = {"cls", "sep"};
  for (int i = 0; i < 2; ++i) {
    auto field = spec.find(keys[i]);
    if (field == spec.end() || !field->is_array() || field->size() != 2 ||
        !(*field)[1].is_number_integer() || (*field)[1].get<int64_t>() < 0 ||
        (*field)[1].get<int64_t>() > INT32_MAX) {
      return FieldError(source, path + "." + keys[i], "must be a pair [token, id]");
    }
    ids[i] = static_cast<int32_t>((*field)[1].get<int64_t>());
  }
  std::vector<TemplatePiece> pieces = {{false, {ids[0]}}, {true, {}}, {false, {ids[1]}}};
  return std::unique_ptr<PostProcessor>(new TemplateProcessor(std::move(pieces)));
}

}  // namespace

StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const nlohmann::json& spec,
                                                            std::string_view source,
                                                            const std::string& path) {
  if (!spec.is_object()) return FieldError(source, path, "must be an object");
  auto type_field = spec.find("type");
  if (type_field == spec.end() || !type_field->is_string()) {
    return FieldError(source, path + ".type", "must be a string");
  }
  const std::string type = type_field->get<std::string>();
  if (type == "TemplateProcessing") return ParseTemplate(spec, source, path);
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    return ParseClsSep(spec, source, path);
  }
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>(new IdentityProcessor());
  if (type == "Sequence") {
    TANDEM_ASSIGN_OR_RETURN(auto steps, ParseSequenceSteps<PostProcessor>(
                                            spec, "processors", source, path, ParsePostProcessor));
    return std::unique_ptr<PostProcessor>(new SequenceProcessor(std::move(steps)));
  }
  return InvalidArgumentError(std::string(source) + ": unsupported post_processor '" + type +
                              "' (at " + path + ")");
}

}  // namespace tandem::tokenizer
