// SentencePieceTokenizer: a SentencePiece .model file (a ModelProto protobuf: Llama 2's and
// Mistral's tokenizer.model, mistral-common's *.model.v3/.v7), encoded by libsentencepiece.
//
// It behaves like the Hugging Face tokenizer.json converted from the same model (the "legacy"
// Llama tokenizer), so ids and text agree across the two formats:
//  - control, user-defined and unknown pieces (<s>, </s>, [INST], <unk>) are special: written in
//    the text they are matched as such (leftmost-longest), and the text between them is encoded
//    by SentencePiece one segment at a time, each with its dummy-prefix "▁";
//  - Decode maps "▁" to a space and byte pieces <0xNN> to their byte, writes special pieces as
//    their text unless skipped, and, when the model adds a dummy prefix, drops one leading space
//    of the result. Invalid UTF-8 the bytes spell becomes U+FFFD (one per maximal invalid
//    subpart).
//
// Thread safety: immutable after Load/Create; Encode/Decode may run on many threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer/tokenizer.h"
#include "tandem/status.h"

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace tandem::tokenizer {

struct SentencePieceOptions {
  // Encode(add_special_tokens=true) prepends the model's BOS / appends its EOS (when the model
  // defines one).
  bool add_bos = true;
  bool add_eos = false;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Reads `model_file` (any name: mistral-common's files end in .model.v3) and takes add_bos_token
  // / add_eos_token from a tokenizer_config.json beside it, if any. Errors name the file.
  static StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(
      const std::filesystem::path& model_file);

  // Builds from the bytes of a .model file; `source` names it in errors. InvalidArgument when
  // the bytes are not a SentencePiece model.
  static StatusOr<std::unique_ptr<SentencePieceTokenizer>> Create(std::string serialized_model,
                                                                  SentencePieceOptions options,
                                                                  std::string_view source);

  // True when `head` (the first bytes of a file) starts like a serialized ModelProto.
  static bool LooksLikeModelProto(std::string_view head);

  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                        bool add_special_tokens) const override;
  StatusOr<std::string> Decode(std::span<const int32_t> ids,
                               bool skip_special_tokens) const override;
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  std::optional<std::string> IdToToken(int32_t id) const override;
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  bool IsSpecial(int32_t id) const override;

  // The model's BOS / EOS ids, nullopt when it defines none.
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }

 private:
  // SentencePiece's piece types (sentencepiece_model.proto).
  enum class PieceType : uint8_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>()(s);
    }
  };

  SentencePieceTokenizer();

  // Appends SentencePiece's ids for `segment` (no special pieces in it).
  Status EncodeSegment(std::string_view segment, std::vector<int32_t>& ids) const;
  // Finds the leftmost-longest special piece in text[from:].
  bool FindSpecial(std::string_view text, size_t from, size_t* begin, size_t* end,
                   int32_t* id) const;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::string source_;
  std::vector<std::string> pieces_;
  std::vector<PieceType> types_;
  std::vector<uint8_t> byte_value_;  // for kByte pieces
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> piece_to_id_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> special_to_id_;
  std::vector<size_t> special_lengths_;  // distinct lengths, longest first
  bool special_first_byte_[256] = {};
  bool add_dummy_prefix_ = true;
  bool escape_whitespaces_ = true;
  bool treat_whitespace_as_suffix_ = false;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  SentencePieceOptions options_;
};

}  // namespace tandem::tokenizer
