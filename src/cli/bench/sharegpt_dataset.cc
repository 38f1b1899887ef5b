// ShareGPT: a JSON list of {id, conversations: [{from, value}, ...]}. The first human turn that a
// gpt turn answers is the request; the answer's length is its output length.
#include <nlohmann/json.hpp>

#include "cli/bench/dataset.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace tandem::bench {
namespace {

using Json = nlohmann::json;

// The text of turn `turn` when it is {"from": from, "value": "<string>"}.
const std::string* TurnText(const Json& turn, std::string_view from) {
  if (!turn.is_object()) return nullptr;
  auto f = turn.find("from");
  auto v = turn.find("value");
  if (f == turn.end() || v == turn.end() || !f->is_string() || !v->is_string()) return nullptr;
  if (f->get_ref<const std::string&>() != from) return nullptr;
  return &v->get_ref<const std::string&>();
}

}  // namespace

StatusOr<Dataset> LoadShareGpt(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  const Json root = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return InvalidArgumentError(path + ": not valid JSON");
  if (!root.is_array()) {
    return InvalidArgumentError(path + ": expected a JSON list of {id, conversations}");
  }
  Dataset dataset;
  dataset.kind = DatasetKind::kShareGpt;
  for (const Json& entry : root) {
    const Json* turns = nullptr;
    if (entry.is_object()) {
      auto it = entry.find("conversations");
      if (it != entry.end() && it->is_array()) turns = &*it;
    }
    const std::string* question = nullptr;
    const std::string* answer = nullptr;
    for (size_t i = 0; turns != nullptr && i + 1 < turns->size() && answer == nullptr; ++i) {
      question = TurnText((*turns)[i], "human");
      if (question != nullptr) answer = TurnText((*turns)[i + 1], "gpt");
    }
    if (answer == nullptr || question->empty()) {
      ++dataset.skipped;
      continue;
    }
    RequestSpec spec;
    spec.text = *question;
    spec.input_len = EstimateTokens(*question);
    spec.output_len = EstimateTokens(*answer);
    dataset.requests.push_back(std::move(spec));
  }
  return dataset;
}

}  // namespace tandem::bench
