#include "cli/run_command.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <iterator>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/logging.h"
#include "common/parse.h"
#include "common/status_macros.h"
#include "engine/engine_factory.h"
#ifdef TANDEM_HAVE_TOKENIZERS
#include "model/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#endif

namespace tandem::cli {
namespace {

struct RunArgs {
  std::string model;
  std::string weights = "checkpoint";
  uint64_t seed = 0;
  bool seed_given = false;
  std::string prompt_tokens;
  std::string prompt;
  bool chat = false;
  std::string tokenizer;
  int max_tokens = 16;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::string stop_token_ids;
  bool ignore_eos = false;
  int logprobs = -1;
  std::string logits;
  bool json = false;
  std::string backend = "cpu";
  int block_size = 16;
  int num_blocks = 0;
  std::string kv_cache_size = "1GiB";
  int max_num_batched_tokens = 2048;
  bool no_prefix_caching = false;
  std::string log_level = "warn";
};

nlohmann::json LogprobJson(const GeneratedToken& t) {
  nlohmann::json top = nlohmann::json::array();
  for (const TokenLogprob& alt : t.top_logprobs) {
    top.push_back({{"token", alt.token}, {"logprob", alt.logprob}});
  }
  return {{"token", t.token}, {"logprob", t.logprob}, {"top_logprobs", top}};
}

// The prompt's token ids and, when the prompt was text, the tokenizer that made them (it also
// decodes the output).
struct Prompt {
  std::vector<int32_t> ids;
#ifdef TANDEM_HAVE_TOKENIZERS
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
#endif
};

StatusOr<Prompt> ResolvePrompt(const RunArgs& args) {
  const int given = !args.prompt_tokens.empty() + !args.prompt.empty();
  if (given + args.chat == 0 || given > 1) {
    return InvalidArgumentError(
        "give exactly one of --prompt-tokens, --prompt or --chat (with --prompt, or messages "
        "as JSON on standard input)");
  }
  Prompt prompt;
  if (!args.prompt_tokens.empty() && !args.chat) {
    TANDEM_ASSIGN_OR_RETURN(prompt.ids, ParseIntList(args.prompt_tokens, "--prompt-tokens"));
    return prompt;
  }
#ifdef TANDEM_HAVE_TOKENIZERS
  if (!args.prompt_tokens.empty()) {
    return InvalidArgumentError("--chat takes text (--prompt or JSON messages), not token ids");
  }
  const std::string source = args.tokenizer.empty() ? args.model : args.tokenizer;
  if (source.empty() || source.starts_with("builtin:")) {
    return InvalidArgumentError("text prompts need a tokenizer: give --model DIR or --tokenizer");
  }
  TANDEM_ASSIGN_OR_RETURN(prompt.tokenizer, tokenizer::LoadTokenizer(source));
  if (!args.chat) {
    auto ids = prompt.tokenizer->Encode(args.prompt, /*add_special_tokens=*/true);
    if (!ids.ok()) return ids.status().WithContext("--prompt");
    prompt.ids = std::move(ids).value();
    return prompt;
  }
  // Ordered: tool schemas keep the client's key order, as in transformers.
  nlohmann::ordered_json messages, tools;
  if (!args.prompt.empty()) {
    messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", args.prompt}}});
  } else {
    const std::string input(std::istreambuf_iterator<char>(std::cin), {});
    auto j = nlohmann::ordered_json::parse(input, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return InvalidArgumentError("--chat: standard input is not JSON");
    if (j.is_object()) {
      tools = j.value("tools", nlohmann::ordered_json());
      j = j.value("messages", nlohmann::ordered_json());
    }
    messages = std::move(j);
  }
  const std::filesystem::path dir = std::filesystem::is_directory(source)
                                        ? std::filesystem::path(source)
                                        : std::filesystem::path(source).parent_path();
  TANDEM_ASSIGN_OR_RETURN(auto chat_template, model::ChatTemplate::Load(dir));
  TANDEM_ASSIGN_OR_RETURN(std::string text,
                          chat_template->Render(messages, /*add_generation_prompt=*/true, tools));
  // The template writes the special tokens itself (as transformers' apply_chat_template does).
  auto ids = prompt.tokenizer->Encode(text, /*add_special_tokens=*/false);
  if (!ids.ok()) return ids.status().WithContext("--chat");
  prompt.ids = std::move(ids).value();
  return prompt;
#else
  return FailedPreconditionError("this build has no tokenizers: use --prompt-tokens");
#endif
}

Status Run(const RunArgs& args) {
  TANDEM_RETURN_IF_ERROR(InitLogging(args.log_level));
  if (args.weights != "checkpoint" && args.weights != "random") {
    return InvalidArgumentError("--weights: expected 'checkpoint' or 'random', got '" +
                                args.weights + "'");
  }
  if (!args.logits.empty() && args.logits != "last" && args.logits != "all") {
    return InvalidArgumentError("--logits: expected 'last' or 'all', got '" + args.logits + "'");
  }
  TANDEM_ASSIGN_OR_RETURN(Prompt prompt, ResolvePrompt(args));
  GenerateRequest request;
  request.prompt_tokens = prompt.ids;
  SamplingParams& sp = request.sampling;
  sp.max_tokens = args.max_tokens;
  sp.temperature = args.temperature;
  sp.top_p = args.top_p;
  sp.top_k = args.top_k;
  sp.min_p = args.min_p;
  sp.repetition_penalty = args.repetition_penalty;
  sp.presence_penalty = args.presence_penalty;
  sp.frequency_penalty = args.frequency_penalty;
  sp.ignore_eos = args.ignore_eos;
  sp.seed = args.seed;
  if (!args.stop_token_ids.empty()) {
    TANDEM_ASSIGN_OR_RETURN(sp.stop_token_ids,
                            ParseIntList(args.stop_token_ids, "--stop-token-ids"));
  }
  if (args.logprobs >= 0) {
    sp.logprobs = true;
    sp.top_logprobs = args.logprobs;
  }
  request.prompt_logits = args.logits == "all"    ? PromptLogits::kAll
                          : args.logits == "last" ? PromptLogits::kLast
                                                  : PromptLogits::kNone;

  engine::ModelSpec model;
  model.model = args.model.empty() ? "builtin:demo" : args.model;
  model.random_weights = args.weights == "random";
  model.weights_seed = args.seed;
  engine::BackendOptions backend;
  backend.backend = args.backend;
  backend.block_size = args.block_size;
  backend.num_blocks = args.num_blocks;
  TANDEM_ASSIGN_OR_RETURN(backend.kv_cache_bytes,
                          ParseByteSize(args.kv_cache_size, "--kv-cache-size"));
  engine::EngineOptions options;
  options.max_num_batched_tokens = args.max_num_batched_tokens;
  options.enable_prefix_caching = !args.no_prefix_caching;
  TANDEM_ASSIGN_OR_RETURN(auto engine, engine::CreateEngine(model, backend, options));

  TANDEM_ASSIGN_OR_RETURN(auto submitted, engine->Submit(std::move(request)));
  std::shared_ptr<OutputStream> stream = submitted.second;
  std::vector<GeneratedToken> tokens;
  std::vector<float> logits;
  int logits_rows = 0;
  FinishReason reason = FinishReason::kNone;
  int prompt_tokens = 0;
  while (true) {
    std::optional<RequestOutput> out = stream->Pop();
    for (auto& t : out->tokens) tokens.push_back(std::move(t));
    if (out->logits_rows > 0) {
      logits = std::move(out->logits);
      logits_rows = out->logits_rows;
    }
    if (out->finished) {
      if (!out->error.ok()) return out->error;
      reason = out->finish_reason;
      prompt_tokens = out->prompt_tokens;
      break;
    }
  }

  if (args.json) {
    nlohmann::json j;
    j["model"] = model.model;
    j["backend"] = args.backend;
    j["prompt_tokens"] = prompt_tokens;
    j["finish_reason"] = FinishReasonName(reason);
    nlohmann::json ids = nlohmann::json::array();
    for (const auto& t : tokens) ids.push_back(t.token);
    j["output_tokens"] = ids;
    if (sp.logprobs) {
      nlohmann::json lp = nlohmann::json::array();
      for (const auto& t : tokens) lp.push_back(LogprobJson(t));
      j["logprobs"] = lp;
    }
#ifdef TANDEM_HAVE_TOKENIZERS
    if (prompt.tokenizer != nullptr) {
      std::vector<int32_t> ids;
      for (const auto& t : tokens) ids.push_back(t.token);
      TANDEM_ASSIGN_OR_RETURN(j["output_text"],
                              prompt.tokenizer->Decode(ids, /*skip_special_tokens=*/true));
    }
#endif
    if (request.prompt_logits != PromptLogits::kNone) {
      nlohmann::json rows = nlohmann::json::array();
      const int vocab = engine->vocab_size();
      for (int r = 0; r < logits_rows; ++r) {
        rows.push_back(std::vector<float>(logits.begin() + static_cast<int64_t>(r) * vocab,
                                          logits.begin() + static_cast<int64_t>(r + 1) * vocab));
      }
      j["logits"] = std::move(rows);
    }
    std::cout << j.dump() << "\n";
  } else {
#ifdef TANDEM_HAVE_TOKENIZERS
    if (prompt.tokenizer != nullptr) {
      std::vector<int32_t> ids;
      for (const auto& t : tokens) ids.push_back(t.token);
      TANDEM_ASSIGN_OR_RETURN(std::string text,
                              prompt.tokenizer->Decode(ids, /*skip_special_tokens=*/true));
      std::cout << text << "\n";
    } else
#endif
    {
      for (size_t i = 0; i < tokens.size(); ++i) std::cout << (i ? " " : "") << tokens[i].token;
      std::cout << "\n";
    }
    std::cerr << "finish_reason=" << FinishReasonName(reason) << " tokens=" << tokens.size()
              << "\n";
  }
  return OkStatus();
}

}  // namespace

std::function<int()> AddRunCommand(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* run = app.add_subcommand("run", "Generate from a model once and print the tokens");
  run->add_option("--model", args->model,
                  "Hugging Face checkpoint directory, or builtin:demo / builtin:llama-100m "
                  "(default builtin:demo, random weights)");
  run->add_option("--weights", args->weights, "checkpoint (default) or random");
  run->add_option("--seed", args->seed, "Sampling seed, and the seed of random weights");
  run->add_option("--prompt-tokens", args->prompt_tokens, "Prompt as comma-separated token ids");
  run->add_option("--prompt", args->prompt, "Prompt text (encoded with the model's tokenizer)");
  run->add_flag("--chat", args->chat,
                "Apply the model's chat template to --prompt as a user message, or to JSON "
                "messages ([...] or {\"messages\": [...], \"tools\": [...]}) on standard input");
  run->add_option("--tokenizer", args->tokenizer,
                  "Tokenizer path when it is not the model directory");
  run->add_option("--max-tokens", args->max_tokens, "Tokens to generate (default 16)");
  run->add_option("--temperature", args->temperature, "0 (default) is greedy");
  run->add_option("--top-p", args->top_p, "Nucleus sampling mass (default 1 = off)");
  run->add_option("--top-k", args->top_k, "Keep the k most likely tokens (default 0 = off)");
  run->add_option("--min-p", args->min_p, "Drop tokens below min_p x the top probability");
  run->add_option("--repetition-penalty", args->repetition_penalty, "Default 1 = off");
  run->add_option("--presence-penalty", args->presence_penalty, "Default 0 = off");
  run->add_option("--frequency-penalty", args->frequency_penalty, "Default 0 = off");
  run->add_option("--stop-token-ids", args->stop_token_ids, "Comma-separated ids that stop");
  run->add_flag("--ignore-eos", args->ignore_eos, "Do not stop on the model's eos ids");
  run->add_option("--logprobs", args->logprobs, "Return logprobs with this many alternatives");
  run->add_option("--logits", args->logits, "Print prompt logits: last or all");
  run->add_flag("--json", args->json, "Print one JSON object");
  run->add_option("--backend", args->backend, "Engine backend (default cpu)");
  run->add_option("--block-size", args->block_size, "Tokens per KV block (default 16)");
  run->add_option("--num-blocks", args->num_blocks, "KV blocks (default: from --kv-cache-size)");
  run->add_option("--kv-cache-size", args->kv_cache_size, "KV pool budget (default 1GiB)");
  run->add_option("--max-num-batched-tokens", args->max_num_batched_tokens,
                  "Tokens per engine step; longer prompts prefill in chunks (default 2048)");
  run->add_flag("--no-prefix-caching", args->no_prefix_caching, "Disable prefix reuse");
  run->add_option("--log-level", args->log_level, "trace|debug|info|warn (default)|error|off");
  return [args]() {
    Status status = Run(*args);
    if (!status.ok()) {
      std::fprintf(stderr, "tandem run: error: %s\n", status.message().c_str());
      return 1;
    }
    return 0;
  };
}

}  // namespace tandem::cli
