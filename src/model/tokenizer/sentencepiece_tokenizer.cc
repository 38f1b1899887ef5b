#include "model/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

// The few fields of sentencepiece_model.proto this wrapper reads itself: libsentencepiece does
// not install the generated protobuf header, and its public API cannot tell a user-defined piece
// from a normal one.
constexpr uint32_t kModelPieces = 1;
constexpr uint32_t kModelTrainerSpec = 2;
constexpr uint32_t kModelNormalizerSpec = 3;
constexpr uint32_t kPiecePiece = 1;
constexpr uint32_t kPieceType = 3;
constexpr uint32_t kTrainerTreatWhitespaceAsSuffix = 24;
constexpr uint32_t kNormalizerAddDummyPrefix = 3;
constexpr uint32_t kNormalizerEscapeWhitespaces = 5;

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // "▁"

// A protobuf wire-format reader over one message's bytes.
class ProtoReader {
 public:
  explicit ProtoReader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }

  // Reads the next field: its number, and its value as a varint (wire type 0) or as bytes (the
  // others). False when the bytes are malformed or use groups.
  bool Next(uint32_t* field, uint64_t* varint, std::string_view* bytes) {
    uint64_t key = 0;
    if (!ReadVarint(&key)) return false;
    *field = static_cast<uint32_t>(key >> 3);
    switch (key & 7) {
      case 0:
        return ReadVarint(varint);
      case 1:
        return Take(8, bytes);
      case 2: {
        uint64_t len = 0;
        return ReadVarint(&len) && Take(len, bytes);
      }
      case 5:
        return Take(4, bytes);
      default:
        return false;
    }
  }

 private:
  bool ReadVarint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return false;
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      *v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool Take(uint64_t n, std::string_view* bytes) {
    if (n > data_.size() - pos_) return false;
    *bytes = data_.substr(pos_, n);
    pos_ += n;
    return true;
  }

  std::string_view data_;
  size_t pos_ = 0;
};

struct ModelInfo {
  std::vector<std::string> pieces;
  std::vector<int> types;
  bool add_dummy_prefix = true;
  bool escape_whitespaces = true;
  bool treat_whitespace_as_suffix = false;
};

std::optional<ModelInfo> ParseModelProto(std::string_view data) {
  ModelInfo info;
  ProtoReader model(data);
  while (!model.done()) {
    uint32_t field = 0;
    uint64_t varint = 0;
    std::string_view bytes;
    if (!model.Next(&field, &varint, &bytes)) return std::nullopt;
    if (field == kModelPieces) {
      std::string piece;
      int type = 1;
      ProtoReader reader(bytes);
      while (!reader.done()) {
        uint32_t f = 0;
        uint64_t v = 0;
        std::string_view b;
        if (!reader.Next(&f, &v, &b)) return std::nullopt;
        if (f == kPiecePiece) piece = std::string(b);
        if (f == kPieceType) type = static_cast<int>(v);
      }
      info.pieces.push_back(std::move(piece));
      info.types.push_back(type);
    } else if (field == kModelTrainerSpec || field == kModelNormalizerSpec) {
      ProtoReader reader(bytes);
      while (!reader.done()) {
        uint32_t f = 0;
        uint64_t v = 0;
        std::string_view b;
        if (!reader.Next(&f, &v, &b)) return std::nullopt;
        if (field == kModelTrainerSpec && f == kTrainerTreatWhitespaceAsSuffix) {
          info.treat_whitespace_as_suffix = v != 0;
        } else if (field == kModelNormalizerSpec && f == kNormalizerAddDummyPrefix) {
          info.add_dummy_prefix = v != 0;
        } else if (field == kModelNormalizerSpec && f == kNormalizerEscapeWhitespaces) {
          info.escape_whitespaces = v != 0;
        }
      }
    }
  }
  return info;
}

std::optional<uint8_t> BytePieceValue(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

Status FromSentencePiece(const sentencepiece::util::Status& status, std::string_view context) {
  if (status.ok()) return OkStatus();
  return InvalidArgumentError(std::string(context) + ": " + status.ToString());
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer() = default;
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

bool SentencePieceTokenizer::LooksLikeModelProto(std::string_view head) {
  // A ModelProto starts with its first piece: field 1, length-delimited (0x0A), a length, and
  // inside it the piece string, again field 1 (0x0A).
  if (head.size() < 3 || head[0] != '\x0A') return false;
  size_t pos = 1;
  while (pos < head.size() && (static_cast<unsigned char>(head[pos]) & 0x80) != 0) ++pos;
  return pos + 1 < head.size() && pos <= 4 && head[pos + 1] == '\x0A';
}

StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Load(
    const std::filesystem::path& model_file) {
  TANDEM_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(model_file));
  SentencePieceOptions options;
  const std::filesystem::path config_path = model_file.parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::is_regular_file(config_path, ec)) {
    TANDEM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
    nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return InvalidArgumentError(config_path.string() + ": not a JSON object");
    }
    if (auto it = config.find("add_bos_token"); it != config.end() && it->is_boolean()) {
      options.add_bos = it->get<bool>();
    }
    if (auto it = config.find("add_eos_token"); it != config.end() && it->is_boolean()) {
      options.add_eos = it->get<bool>();
    }
  }
  return Create(std::move(bytes), options, model_file.string());
}

StatusOr<std::unique_ptr<SentencePieceTokenizer>> SentencePieceTokenizer::Create(
    std::string serialized_model, SentencePieceOptions options, std::string_view source) {
  const std::string name(source);
  auto info = ParseModelProto(serialized_model);
  if (!info || info->pieces.empty()) {
    return InvalidArgumentError(name + ": not a SentencePiece model (the protobuf does not parse)");
  }
  std::unique_ptr<SentencePieceTokenizer> tok(new SentencePieceTokenizer());
  tok->source_ = name;
  tok->options_ = options;
  try {
    tok->processor_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
    TANDEM_RETURN_IF_ERROR(
        FromSentencePiece(tok->processor_->LoadFromSerializedProto(serialized_model),
                          name + ": not a SentencePiece model"));
    if (tok->processor_->GetPieceSize() != static_cast<int>(info->pieces.size())) {
      return InvalidArgumentError(
          name + ": SentencePiece reads " + std::to_string(tok->processor_->GetPieceSize()) +
          " pieces, the protobuf holds " + std::to_string(info->pieces.size()));
    }
    const int bos = tok->processor_->bos_id(), eos = tok->processor_->eos_id();
    const int n = static_cast<int>(info->pieces.size());
    if (bos >= 0 && bos < n) tok->bos_id_ = bos;
    if (eos >= 0 && eos < n) tok->eos_id_ = eos;
  } catch (const std::exception& e) {
    return InternalError(name + ": SentencePiece failed to load: " + e.what());
  } catch (...) {
    return InternalError(name + ": SentencePiece failed to load");
  }

  tok->add_dummy_prefix_ = info->add_dummy_prefix;
  tok->escape_whitespaces_ = info->escape_whitespaces;
  tok->treat_whitespace_as_suffix_ = info->treat_whitespace_as_suffix;
  const size_t n = info->pieces.size();
  tok->pieces_ = std::move(info->pieces);
  tok->types_.resize(n);
  tok->byte_value_.assign(n, 0);
  for (size_t id = 0; id < n; ++id) {
    const int raw = info->types[id];
    auto type = raw >= 1 && raw <= 6 ? static_cast<PieceType>(raw) : PieceType::kNormal;
    const std::string& piece = tok->pieces_[id];
    if (type == PieceType::kByte) {
      auto value = BytePieceValue(piece);
      if (!value) {
        return InvalidArgumentError(name + ": byte piece " + std::to_string(id) + " '" + piece +
                                    "' is not <0xNN>");
      }
      tok->byte_value_[id] = *value;
    }
    tok->types_[id] = type;
    tok->piece_to_id_.emplace(piece, static_cast<int32_t>(id));
    const bool special = type == PieceType::kControl || type == PieceType::kUserDefined ||
                         type == PieceType::kUnknown;
    if (special && !piece.empty() &&
        tok->special_to_id_.emplace(piece, static_cast<int32_t>(id)).second) {
      tok->special_first_byte_[static_cast<unsigned char>(piece[0])] = true;
      if (std::find(tok->special_lengths_.begin(), tok->special_lengths_.end(), piece.size()) ==
          tok->special_lengths_.end()) {
        tok->special_lengths_.push_back(piece.size());
      }
    }
  }
  std::sort(tok->special_lengths_.rbegin(), tok->special_lengths_.rend());
  return tok;
}

bool SentencePieceTokenizer::FindSpecial(std::string_view text, size_t from, size_t* begin,
                                         size_t* end, int32_t* id) const {
  for (size_t pos = from; pos < text.size(); ++pos) {
    if (!special_first_byte_[static_cast<unsigned char>(text[pos])]) continue;
    for (size_t len : special_lengths_) {
      if (len > text.size() - pos) continue;
      auto it = special_to_id_.find(text.substr(pos, len));
      if (it != special_to_id_.end()) {
        *begin = pos;
        *end = pos + len;
        *id = it->second;
        return true;
      }
    }
  }
  return false;
}

Status SentencePieceTokenizer::EncodeSegment(std::string_view segment,
                                             std::vector<int32_t>& ids) const {
  std::vector<int> out;
  try {
    TANDEM_RETURN_IF_ERROR(
        FromSentencePiece(processor_->Encode(segment, &out), source_ + ": encode"));
  } catch (const std::exception& e) {
    return InternalError(source_ + ": SentencePiece failed to encode: " + e.what());
  } catch (...) {
    return InternalError(source_ + ": SentencePiece failed to encode");
  }
  ids.insert(ids.end(), out.begin(), out.end());
  return OkStatus();
}

StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(std::string_view text,
                                                              bool add_special_tokens) const {
  if (auto bad = FindInvalidUtf8(text)) {
    return InvalidArgumentError("text is not valid UTF-8 at byte offset " + std::to_string(*bad));
  }
  std::vector<int32_t> ids;
  if (add_special_tokens && options_.add_bos && bos_id_) ids.push_back(*bos_id_);
  size_t pos = 0, begin = 0, end = 0;
  int32_t id = 0;
  while (FindSpecial(text, pos, &begin, &end, &id)) {
    if (begin > pos) TANDEM_RETURN_IF_ERROR(EncodeSegment(text.substr(pos, begin - pos), ids));
    ids.push_back(id);
    pos = end;
  }
  if (pos < text.size()) TANDEM_RETURN_IF_ERROR(EncodeSegment(text.substr(pos), ids));
  if (add_special_tokens && options_.add_eos && eos_id_) ids.push_back(*eos_id_);
  return ids;
}

StatusOr<std::string> SentencePieceTokenizer::Decode(std::span<const int32_t> ids,
                                                     bool skip_special_tokens) const {
  std::string out;
  out.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) {
      return InvalidArgumentError("token id " + std::to_string(id) +
                                  " is not in the vocabulary (size " +
                                  std::to_string(pieces_.size()) + ")");
    }
    const std::string& piece = pieces_[id];
    switch (types_[id]) {
      case PieceType::kByte:
        out.push_back(static_cast<char>(byte_value_[id]));
        break;
      case PieceType::kControl:
      case PieceType::kUserDefined:
      case PieceType::kUnknown:
        if (!skip_special_tokens) out += piece;
        break;
      case PieceType::kNormal:
      case PieceType::kUnused:
        if (!escape_whitespaces_) {
          out += piece;
          break;
        }
        for (size_t pos = 0; pos < piece.size();) {
          if (piece.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
            out.push_back(' ');
            pos += kSpaceSymbol.size();
          } else {
            out.push_back(piece[pos++]);
          }
        }
        break;
    }
  }
  // The dummy prefix Encode added comes back as one space at the start (or, for models that
  // treat whitespace as a suffix, the end) of the whole text, as Hugging Face's Strip decoder
  // removes it.
  if (add_dummy_prefix_ && !out.empty()) {
    if (!treat_whitespace_as_suffix_ && out.front() == ' ') out.erase(0, 1);
    if (treat_whitespace_as_suffix_ && out.back() == ' ') out.pop_back();
  }
  if (!FindInvalidUtf8(out)) return out;
  return SanitizeUtf8(out);
}

std::optional<std::string> SentencePieceTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) return std::nullopt;
  return pieces_[id];
}

std::optional<int32_t> SentencePieceTokenizer::TokenToId(std::string_view token) const {
  auto it = piece_to_id_.find(token);
  if (it == piece_to_id_.end()) return std::nullopt;
  return it->second;
}

bool SentencePieceTokenizer::IsSpecial(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= types_.size()) return false;
  const PieceType t = types_[id];
  return t == PieceType::kControl || t == PieceType::kUserDefined || t == PieceType::kUnknown;
}

}  // namespace tandem::tokenizer
