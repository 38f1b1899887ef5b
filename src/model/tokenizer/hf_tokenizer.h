// A Hugging Face tokenizer.json tokenizer that gives the ids the `tokenizers` library gives.
//
// The pipeline is the library's: added tokens cut out of the raw text (AddedVocabulary), the
// rest normalized (Normalizer), normalized added tokens cut out, pre-tokenized into words
// (PreTokenizer), each word encoded by the BPE model (BpeModel, with a per-word cache), then with
// add_special_tokens the post-processor's template applied. Decoding maps ids to token strings,
// drops special tokens when asked, and runs the decoder chain.
//
// Only the BPE model is supported ("WordPiece", "Unigram", ... fail to load with
// "<file>: unsupported model type 'X'"); see the component headers for the normalizers,
// pre-tokenizers, post-processors and decoders handled. Loading never throws: malformed JSON or a
// missing or mistyped field is InvalidArgument naming the file and the field.
//
// Thread safety: immutable after loading (the word cache inside is synchronised); Encode, Decode
// and the lookups may run on many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer/tokenizer.h"
#include "tandem/status.h"

namespace tandem::tokenizer {

class AddedVocabulary;
class BpeModel;
class Decoder;
class Normalizer;
class PostProcessor;
class PreTokenizer;

class HfTokenizer : public Tokenizer {
 public:
  // Reads and parses `tokenizer_json`; errors name the path.
  static StatusOr<std::unique_ptr<HfTokenizer>> Load(const std::filesystem::path& tokenizer_json);
  // Parses the text of a tokenizer.json; `source` names it in error messages.
  static StatusOr<std::unique_ptr<HfTokenizer>> FromJson(std::string_view json_text,
                                                         std::string_view source);
  ~HfTokenizer() override;
  HfTokenizer(const HfTokenizer&) = delete;
  HfTokenizer& operator=(const HfTokenizer&) = delete;

  StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                        bool add_special_tokens) const override;
  StatusOr<std::string> Decode(std::span<const int32_t> ids,
                               bool skip_special_tokens) const override;
  int vocab_size() const override;
  std::optional<std::string> IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  bool IsSpecial(int32_t id) const override;

 private:
  HfTokenizer();
  // Pre-tokenizes and encodes one stretch of normalized text with no added token in it.
  void EncodeText(std::string_view text, bool at_origin, std::vector<int32_t>& ids) const;
  // Fills the per-id tables below once the components are parsed.
  void BuildIdTables();

  std::unique_ptr<AddedVocabulary> added_;
  std::unique_ptr<Normalizer> normalizer_;       // Null: none.
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // Null: the whole text is one word.
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;  // Null: none.
  std::unique_ptr<Decoder> decoder_;               // Null: tokens joined by spaces.
  int32_t vocab_size_ = 0;

  // Per id, built at load: the token string (an added token's content first, as `tokenizers`
  // looks it up; views into added_ / model_), flags, and for a ByteLevel decoder the bytes the
  // token spells (byte_level_offsets_ has vocab_size_ + 1 entries).
  static constexpr uint8_t kPresent = 1, kSpecial = 2;
  std::vector<std::string_view> tokens_;
  std::vector<uint8_t> flags_;
  std::string byte_level_bytes_;
  std::vector<uint32_t> byte_level_offsets_;
};

}  // namespace tandem::tokenizer
