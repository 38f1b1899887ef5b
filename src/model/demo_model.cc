#include "model/demo_model.h"

#include <unistd.h>

#include <array>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "model/model_config.h"

namespace tandem::model {
namespace {

using ojson = nlohmann::ordered_json;

// Special tokens, at ids 0..3 (the demo config's bos 1 and eos 2 among them).
constexpr std::array<std::string_view, 4> kSpecialTokens = {"<|start|>", "<|begin_of_text|>",
                                                            "<|end_of_text|>", "<|eot_id|>"};
constexpr int32_t kBosId = 1;
constexpr int32_t kEosId = 2;
constexpr int32_t kEotId = 3;

// Written around every message; bos first, because chat prompts are encoded without the
// post-processor (as transformers' apply_chat_template does).
constexpr std::string_view kChatTemplate =
    "{{ bos_token }}{% for message in messages %}<|start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}";

// The text the merges are learned from: plain English about the things this program does, so
// common words and the words of a serving demo become single tokens.
constexpr std::string_view kTrainingText = R"(
The quick brown fox jumps over the lazy dog. Hello, world! This is a small demo model that
tandem serves when you give it no model of your own. Its weights are random, so what it says
makes no sense, but every part of the path from your request to the answer is real: the
tokenizer, the chat template, the router, the workers and the stream of tokens back to you.

A large language model reads a prompt and writes one token at a time. First it reads the whole
prompt at once; that is the prefill. Then it writes the answer, one token after another; that
is the decode. The two phases want different things from the machine. Prefill is limited by
compute, and decode is limited by memory, so the best systems run them on different workers and
move the cache between them.

The cache holds the keys and values of every token the model has seen. It is split into blocks
of sixteen tokens. When two requests share the same start, such as a long system prompt, the
second one can use the blocks of the first and skip that part of the work. The router knows
which worker holds which blocks, and it sends each request to the worker where most of its
prompt is already in the cache, unless that worker is too busy.

How are you today? I am fine, thank you. What would you like to know? Please tell me a story
about a cat who lived in a house by the sea. Once upon a time there was a little cat. She liked
to sit in the sun and watch the boats. Every morning she walked down to the water, and every
evening she came back home for dinner. The people of the town knew her and gave her fish.

You can talk to this server with curl or with the OpenAI client. Send a list of messages, each
with a role and some content, and the server answers with a message from the assistant. Ask for
a stream and the answer comes back piece by piece, as soon as each token is ready. The usage
field tells you how many tokens were in the prompt and how many were generated.

Numbers are tokens too: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64, 100, 128, 256, 512, 1024,
2048, 2025. Time is measured in seconds and milliseconds; speed in tokens per second.
We should keep the latency low and the throughput high. It's not hard if you've got the
right design, and they'll see that we're doing it well. Don't worry; I'd say it's done.
)";

// GPT-2's byte-to-symbol table (bytes_to_unicode): printable bytes stand for themselves, the
// rest map to U+0100 onward, in byte order.
std::array<std::string, 256> ByteSymbols() {
  std::array<std::string, 256> symbols;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    std::string utf8;
    if (cp < 0x80) {
      utf8.push_back(static_cast<char>(cp));
    } else {
      utf8.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      utf8.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    symbols[b] = std::move(utf8);
  }
  return symbols;
}

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAsciiSpace(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

// Splits ASCII text the way GPT-2's pre-tokenizer pattern does
// ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+), so that the
// merges are learned on the same words the tokenizer later sees.
std::vector<std::string_view> SplitWords(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    if (text[i] == '\'') {
      bool matched = false;
      for (std::string_view suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
        if (text.substr(i + 1, suffix.size()) == suffix) {
          i += 1 + suffix.size();
          matched = true;
          break;
        }
      }
      if (matched) {
        words.push_back(text.substr(start, i - start));
        continue;
      }
    }
    const size_t body = (text[i] == ' ' && i + 1 < text.size()) ? i + 1 : i;
    const char c = text[body];
    if (IsAsciiLetter(c)) {
      i = body;
      while (i < text.size() && IsAsciiLetter(text[i])) ++i;
    } else if (IsAsciiDigit(c)) {
      i = body;
      while (i < text.size() && IsAsciiDigit(text[i])) ++i;
    } else if (!IsAsciiSpace(c)) {
      i = body;
      while (i < text.size() && !IsAsciiSpace(text[i]) && !IsAsciiLetter(text[i]) &&
             !IsAsciiDigit(text[i])) {
        ++i;
      }
    } else {
      // A run of whitespace; its last character stays with the word that follows.
      size_t end = i;
      while (end < text.size() && IsAsciiSpace(text[end])) ++end;
      if (end < text.size() && end - i > 1) --end;
      i = end == i ? i + 1 : end;
    }
    words.push_back(text.substr(start, i - start));
  }
  return words;
}

struct LearnedBpe {
  std::vector<std::string> tokens;  // Byte symbols, then one token per merge.
  std::vector<std::pair<std::string, std::string>> merges;
};

// Greedy BPE training: count adjacent symbol pairs over the sample's words (weighted by how often
// each word occurs), merge the most frequent pair (ties: the lexicographically smallest), repeat
// until the vocabulary has `target` tokens.
StatusOr<LearnedBpe> LearnBpe(std::string_view text, size_t target) {
  const std::array<std::string, 256> symbols = ByteSymbols();
  LearnedBpe bpe;
  bpe.tokens.assign(symbols.begin(), symbols.end());
  std::set<std::string> known(bpe.tokens.begin(), bpe.tokens.end());

  std::map<std::string, int> counts;
  for (std::string_view word : SplitWords(text)) ++counts[std::string(word)];
  std::vector<std::pair<std::vector<std::string>, int>> words;
  for (const auto& [word, count] : counts) {
    std::vector<std::string> pieces;
    for (unsigned char b : word) pieces.push_back(symbols[b]);
    words.emplace_back(std::move(pieces), count);
  }

  while (bpe.tokens.size() < target) {
    std::map<std::pair<std::string, std::string>, int> pairs;
    for (const auto& [pieces, count] : words) {
      for (size_t i = 0; i + 1 < pieces.size(); ++i) pairs[{pieces[i], pieces[i + 1]}] += count;
    }
    if (pairs.empty()) {
      return InternalError("demo tokenizer: the training text ran out of pairs at " +
                           std::to_string(bpe.tokens.size()) + " tokens");
    }
    // std::map iterates in lexicographic order, so the first maximum wins ties.
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    const auto [left, right] = best->first;
    const std::string merged = left + right;
    for (auto& [pieces, count] : words) {
      std::vector<std::string> out;
      out.reserve(pieces.size());
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (i + 1 < pieces.size() && pieces[i] == left && pieces[i + 1] == right) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(std::move(pieces[i]));
        }
      }
      pieces = std::move(out);
    }
    bpe.merges.emplace_back(left, right);
    // Two merges can spell one string ("a"+"bc", "ab"+"c"); the token exists once.
    if (known.insert(merged).second) bpe.tokens.push_back(merged);
  }
  return bpe;
}

ojson ConfigJson(const ModelConfig& config) {
  ojson j;
  j["architectures"] = ojson::array({"LlamaForCausalLM"});
  j["model_type"] = config.model_type;
  j["vocab_size"] = config.vocab_size;
  j["hidden_size"] = config.hidden_size;
  j["intermediate_size"] = config.intermediate_size;
  j["num_hidden_layers"] = config.num_hidden_layers;
  j["num_attention_heads"] = config.num_attention_heads;
  j["num_key_value_heads"] = config.num_key_value_heads;
  j["head_dim"] = config.head_dim;
  j["max_position_embeddings"] = config.max_position_embeddings;
  j["rms_norm_eps"] = config.rms_norm_eps;
  j["rope_theta"] = config.rope.theta;
  j["hidden_act"] = config.hidden_act;
  j["attention_bias"] = config.attention_bias;
  j["mlp_bias"] = config.mlp_bias;
  j["tie_word_embeddings"] = config.tie_word_embeddings;
  j["torch_dtype"] = config.torch_dtype;
  j["bos_token_id"] = kBosId;
  j["eos_token_id"] = kEosId;
  return j;
}

ojson AddedToken(int32_t id, std::string_view content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

ojson TokenizerJson(const LearnedBpe& bpe) {
  const int32_t first_byte_id = static_cast<int32_t>(kSpecialTokens.size());
  ojson added = ojson::array();
  ojson vocab = ojson::object();
  for (size_t i = 0; i < kSpecialTokens.size(); ++i) {
    added.push_back(AddedToken(static_cast<int32_t>(i), kSpecialTokens[i]));
    vocab[std::string(kSpecialTokens[i])] = static_cast<int32_t>(i);
  }
  for (size_t i = 0; i < bpe.tokens.size(); ++i) {
    vocab[bpe.tokens[i]] = first_byte_id + static_cast<int32_t>(i);
  }
  ojson merges = ojson::array();
  for (const auto& [left, right] : bpe.merges) merges.push_back(left + " " + right);

  const std::string bos(kSpecialTokens[kBosId]);
  ojson post_processor = {
      {"type", "TemplateProcessing"},
      {"single", ojson::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", ojson::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                             {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                             {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
      {"special_tokens",
       {{bos, {{"id", bos}, {"ids", ojson::array({kBosId})}, {"tokens", ojson::array({bos})}}}}}};

  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["post_processor"] = std::move(post_processor);
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}};
  return j;
}

ojson TokenizerConfigJson(int64_t max_length) {
  ojson decoder = ojson::object();
  for (size_t i = 0; i < kSpecialTokens.size(); ++i) {
    ojson token = AddedToken(static_cast<int32_t>(i), kSpecialTokens[i]);
    token.erase("id");
    decoder[std::to_string(i)] = std::move(token);
  }
  ojson j;
  j["added_tokens_decoder"] = std::move(decoder);
  j["bos_token"] = kSpecialTokens[kBosId];
  j["eos_token"] = kSpecialTokens[kEosId];
  j["clean_up_tokenization_spaces"] = false;
  j["model_max_length"] = max_length;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  j["chat_template"] = kChatTemplate;
  return j;
}

// Writes through a temporary file and a rename, so a reader never sees half a file.
Status WriteFileAtomically(const std::filesystem::path& path, const std::string& contents) {
  const std::filesystem::path tmp =
      path.string() + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return InternalError("cannot create " + tmp.string());
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    out.close();
    if (!out) return InternalError("cannot write " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return InternalError("cannot rename to " + path.string() + ": " + ec.message());
  }
  return OkStatus();
}

}  // namespace

StatusOr<DemoModelFiles> MakeDemoModelFiles() {
  TANDEM_ASSIGN_OR_RETURN(ModelConfig config, BuiltinModelConfig("demo"));
  const size_t learned = static_cast<size_t>(config.vocab_size) - kSpecialTokens.size();
  TANDEM_ASSIGN_OR_RETURN(LearnedBpe bpe, LearnBpe(kTrainingText, learned));

  DemoModelFiles files;
  files.config_json = ConfigJson(config).dump(2) + "\n";
  files.generation_config_json =
      ojson({{"bos_token_id", kBosId}, {"eos_token_id", ojson::array({kEosId, kEotId})}}).dump(2) +
      "\n";
  files.tokenizer_json = TokenizerJson(bpe).dump(2) + "\n";
  files.tokenizer_config_json = TokenizerConfigJson(config.max_position_embeddings).dump(2) + "\n";
  return files;
}

Status WriteDemoModel(const std::filesystem::path& dir) {
  TANDEM_ASSIGN_OR_RETURN(DemoModelFiles files, MakeDemoModelFiles());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return InternalError("cannot create " + dir.string() + ": " + ec.message());
  TANDEM_RETURN_IF_ERROR(WriteFileAtomically(dir / "config.json", files.config_json));
  TANDEM_RETURN_IF_ERROR(
      WriteFileAtomically(dir / "generation_config.json", files.generation_config_json));
  TANDEM_RETURN_IF_ERROR(WriteFileAtomically(dir / "tokenizer.json", files.tokenizer_json));
  TANDEM_RETURN_IF_ERROR(
      WriteFileAtomically(dir / "tokenizer_config.json", files.tokenizer_config_json));
  return OkStatus();
}

}  // namespace tandem::model
