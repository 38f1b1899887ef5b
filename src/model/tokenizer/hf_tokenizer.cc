#include "model/tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/json_fields.h"
#include "model/tokenizer/added_vocabulary.h"
#include "model/tokenizer/bpe_model.h"
#include "model/tokenizer/decoder.h"
#include "model/tokenizer/json_spec.h"
#include "model/tokenizer/normalizer.h"
#include "model/tokenizer/post_processor.h"
#include "model/tokenizer/pre_tokenizer.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

// Per-thread working memory of Encode, reused so that a warm call allocates little beyond its
// result.
struct EncodeScratch {
  std::vector<TextSegment> raw_segments;
  std::vector<TextSegment> normalized_segments;
  std::string normalized;
  PreTokenizedText words;
  PreTokenizedText words_scratch;
};
EncodeScratch& ThreadEncodeScratch() {
  thread_local EncodeScratch scratch;
  return scratch;
}

}  // namespace

HfTokenizer::HfTokenizer() = default;
HfTokenizer::~HfTokenizer() = default;

StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Load(
    const std::filesystem::path& tokenizer_json) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(tokenizer_json));
  return FromJson(text, tokenizer_json.string());
}

StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(std::string_view json_text,
                                                             std::string_view source) {
  TANDEM_ASSIGN_OR_RETURN(const Json root, model::ParseJsonObject(json_text, source));

  // A component that is absent or null is not used.
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  if (const Json* spec = FindField(root, "normalizer")) {
    TANDEM_ASSIGN_OR_RETURN(tokenizer->normalizer_, ParseNormalizer(*spec, source, "normalizer"));
  }
  if (const Json* spec = FindField(root, "pre_tokenizer")) {
    TANDEM_ASSIGN_OR_RETURN(tokenizer->pre_tokenizer_,
                            ParsePreTokenizer(*spec, source, "pre_tokenizer"));
  }
  const Json* model = FindField(root, "model");
  if (model == nullptr) return FieldError(source, "model", "is missing");
  TANDEM_ASSIGN_OR_RETURN(tokenizer->model_, BpeModel::Parse(*model, source));
  const Json* added = FindField(root, "added_tokens");
  TANDEM_ASSIGN_OR_RETURN(tokenizer->added_,
                          AddedVocabulary::Parse(added != nullptr ? *added : Json(),
                                                 tokenizer->normalizer_.get(), source));
  if (const Json* spec = FindField(root, "post_processor")) {
    TANDEM_ASSIGN_OR_RETURN(tokenizer->post_processor_,
                            ParsePostProcessor(*spec, source, "post_processor"));
  }
  if (const Json* spec = FindField(root, "decoder")) {
    TANDEM_ASSIGN_OR_RETURN(tokenizer->decoder_, ParseDecoder(*spec, source, "decoder"));
  }

  tokenizer->vocab_size_ = std::max(tokenizer->model_->id_end(), tokenizer->added_->id_end());
  tokenizer->BuildIdTables();
  return tokenizer;
}

void HfTokenizer::BuildIdTables() {
  tokens_.assign(vocab_size_, std::string_view());
  flags_.assign(vocab_size_, 0);
  for (int32_t id = 0; id < vocab_size_; ++id) {
    if (const AddedToken* added = added_->FindById(id)) {
      tokens_[id] = added->content;
      flags_[id] = kPresent | (added->special ? kSpecial : 0);
    } else if (const std::optional<std::string_view> token = model_->IdToToken(id)) {
      tokens_[id] = *token;
      flags_[id] = kPresent;
    }
  }
  if (decoder_ != nullptr && decoder_->IsByteLevel()) {
    byte_level_offsets_.assign(vocab_size_ + 1, 0);
    for (int32_t id = 0; id < vocab_size_; ++id) {
      byte_level_offsets_[id] = static_cast<uint32_t>(byte_level_bytes_.size());
      AppendByteLevelBytes(tokens_[id], byte_level_bytes_);
    }
    byte_level_offsets_[vocab_size_] = static_cast<uint32_t>(byte_level_bytes_.size());
  }
}

StatusOr<std::vector<int32_t>> HfTokenizer::Encode(std::string_view text,
                                                   bool add_special_tokens) const {
  if (const std::optional<size_t> bad = FindInvalidUtf8(text)) {
    return InvalidArgumentError("text is not valid UTF-8 at byte offset " + std::to_string(*bad));
  }
  EncodeScratch& scratch = ThreadEncodeScratch();
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 4 + 4);

  // 1. Tokens matched in the raw text; 2. the rest normalized, and tokens matched in the
  // normalized form; 3. what remains pre-tokenized and encoded.
  added_->Split(text, /*normalized_set=*/false, scratch.raw_segments);
  for (const TextSegment& segment : scratch.raw_segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    std::string_view piece = text.substr(segment.begin, segment.end - segment.begin);
    if (normalizer_ != nullptr) {
      scratch.normalized.clear();
      normalizer_->Normalize(piece, scratch.normalized);
      piece = scratch.normalized;
    }
    const bool at_origin = segment.begin == 0;
    if (added_->empty(/*normalized_set=*/true)) {
      EncodeText(piece, at_origin, ids);
      continue;
    }
    added_->Split(piece, /*normalized_set=*/true, scratch.normalized_segments);
    for (const TextSegment& inner : scratch.normalized_segments) {
      if (inner.id >= 0) {
        ids.push_back(inner.id);
      } else {
        EncodeText(piece.substr(inner.begin, inner.end - inner.begin),
                   at_origin && inner.begin == 0, ids);
      }
    }
  }
  if (add_special_tokens && post_processor_ != nullptr) post_processor_->Process(ids);
  return ids;
}

void HfTokenizer::EncodeText(std::string_view text, bool at_origin,
                             std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  if (pre_tokenizer_ == nullptr) {
    model_->Tokenize(text, ids);
    return;
  }
  EncodeScratch& scratch = ThreadEncodeScratch();
  PreTokenizedText& words = scratch.words;
  words.text.assign(text);
  words.words.assign(1, WordSpan{0, text.size(), at_origin});
  pre_tokenizer_->PreTokenize(words, scratch.words_scratch);
  const std::string_view all(words.text);
  for (const WordSpan& word : words.words) {
    model_->Tokenize(all.substr(word.begin, word.end - word.begin), ids);
  }
}

StatusOr<std::string> HfTokenizer::Decode(std::span<const int32_t> ids,
                                          bool skip_special_tokens) const {
  auto known = [this](int32_t id) {
    return id >= 0 && id < vocab_size_ && (flags_[id] & kPresent);
  };
  auto unknown = [](int32_t id) {
    return InvalidArgumentError("token id " + std::to_string(id) + " is not in the vocabulary");
  };
  if (!byte_level_offsets_.empty()) {
    // A lone ByteLevel decoder: the bytes each token spells, precomputed at load.
    std::string bytes;
    bytes.reserve(ids.size() * 6);
    for (const int32_t id : ids) {
      if (!known(id)) return unknown(id);
      if (skip_special_tokens && (flags_[id] & kSpecial)) continue;
      bytes.append(byte_level_bytes_, byte_level_offsets_[id],
                   byte_level_offsets_[id + 1] - byte_level_offsets_[id]);
    }
    if (!FindInvalidUtf8(bytes).has_value()) return bytes;
    return SanitizeUtf8(bytes);
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (const int32_t id : ids) {
    if (!known(id)) return unknown(id);
    if (skip_special_tokens && (flags_[id] & kSpecial)) continue;
    tokens.emplace_back(tokens_[id]);
  }
  std::string text;
  if (decoder_ == nullptr) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) text.push_back(' ');
      text += tokens[i];
    }
    return text;
  }
  decoder_->DecodeChain(tokens);
  size_t size = 0;
  for (const std::string& piece : tokens) size += piece.size();
  text.reserve(size);
  for (const std::string& piece : tokens) text += piece;
  return text;
}

int HfTokenizer::vocab_size() const { return vocab_size_; }

std::optional<std::string> HfTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || id >= vocab_size_ || !(flags_[id] & kPresent)) return std::nullopt;
  return std::string(tokens_[id]);
}

std::optional<int32_t> HfTokenizer::TokenToId(std::string_view token) const {
  if (const std::optional<int32_t> id = added_->FindByContent(token)) return id;
  return model_->TokenToId(token);
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size_ && (flags_[id] & kSpecial);
}

}  // namespace tandem::tokenizer
