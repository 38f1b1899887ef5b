#include "cli/tokenize_command.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/status_macros.h"
#include "model/tokenizer/tokenizer.h"

namespace tandem::cli {
namespace {

struct TokenizeArgs {
  std::string tokenizer;
  bool json = false;
  bool add_special_tokens = false;
  bool skip_special_tokens = false;
};

std::string ReadStdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

Status Tokenize(const TokenizeArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(auto tok, tokenizer::LoadTokenizer(args.tokenizer));
  auto ids = tok->Encode(ReadStdin(), args.add_special_tokens);
  if (!ids.ok()) return ids.status().WithContext("standard input");
  if (args.json) {
    std::cout << nlohmann::json{{"ids", *ids}}.dump() << "\n";
  } else {
    for (size_t i = 0; i < ids->size(); ++i) std::cout << (i ? " " : "") << (*ids)[i];
    std::cout << "\n";
  }
  return OkStatus();
}

// Accepts {"ids": [...]}, a JSON array, or integers separated by spaces, commas or newlines.
StatusOr<std::vector<int32_t>> ParseIds(const std::string& input) {
  const size_t first = input.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && (input[first] == '{' || input[first] == '[')) {
    auto j = nlohmann::json::parse(input, nullptr, false);
    if (j.is_discarded()) return InvalidArgumentError("standard input: malformed JSON");
    if (j.is_object()) j = j.value("ids", nlohmann::json());
    if (!j.is_array()) return InvalidArgumentError("standard input: expected an \"ids\" array");
    std::vector<int32_t> ids;
    for (const auto& v : j) {
      if (!v.is_number_integer()) {
        return InvalidArgumentError("standard input: ids must be integers, got " + v.dump());
      }
      ids.push_back(v.get<int32_t>());
    }
    return ids;
  }
  std::string text = input;
  for (char& c : text) {
    if (c == ',') c = ' ';
  }
  std::istringstream in(text);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    int32_t value = 0;
    auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), value);
    if (ec != std::errc() || end != word.data() + word.size()) {
      return InvalidArgumentError("standard input: '" + word + "' is not a token id");
    }
    ids.push_back(value);
  }
  return ids;
}

Status Detokenize(const TokenizeArgs& args) {
  TANDEM_ASSIGN_OR_RETURN(auto tok, tokenizer::LoadTokenizer(args.tokenizer));
  TANDEM_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseIds(ReadStdin()));
  TANDEM_ASSIGN_OR_RETURN(std::string text, tok->Decode(ids, args.skip_special_tokens));
  if (args.json) {
    std::cout << nlohmann::json{{"text", text}}.dump() << "\n";
  } else {
    std::cout << text;
  }
  return OkStatus();
}

std::function<int()> Wrap(const char* name, std::function<Status()> body) {
  return [name, body = std::move(body)]() {
    Status status = body();
    if (!status.ok()) {
      std::fprintf(stderr, "tandem %s: error: %s\n", name, status.message().c_str());
      return 1;
    }
    return 0;
  };
}

}  // namespace

std::function<int()> AddTokenizeCommand(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd =
      app.add_subcommand("tokenize", "Print the token ids of UTF-8 text read from standard input");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Model directory, tokenizer.json, tiktoken tokenizer.model or SentencePiece "
                  ".model")
      ->required();
  cmd->add_flag("--json", args->json, "Print {\"ids\": [...]}");
  cmd->add_flag("--add-special-tokens", args->add_special_tokens,
                "Add the tokenizer's special tokens (e.g. BOS)");
  return Wrap("tokenize", [args] { return Tokenize(*args); });
}

std::function<int()> AddDetokenizeCommand(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "detokenize", "Print the text of token ids read from standard input (JSON or a list)");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "Model directory, tokenizer.json, tiktoken tokenizer.model or SentencePiece "
                  ".model")
      ->required();
  cmd->add_flag("--json", args->json, "Print {\"text\": ...}");
  cmd->add_flag("--skip-special-tokens", args->skip_special_tokens, "Leave special tokens out");
  return Wrap("detokenize", [args] { return Detokenize(*args); });
}

}  // namespace tandem::cli
