// LoadTokenizer: picks the format of a model directory or file and loads it.
#include <fstream>
#include <string>
#include <system_error>

#include "common/status_macros.h"
#include "model/tokenizer/hf_tokenizer.h"
#include "model/tokenizer/sentencepiece_tokenizer.h"
#include "model/tokenizer/tiktoken_tokenizer.h"
#include "model/tokenizer/tokenizer.h"

namespace tandem::tokenizer {
namespace {

namespace fs = std::filesystem;

// Enough to see many whole lines of a rank file and the start of a protobuf.
constexpr size_t kSniffBytes = 4096;

StatusOr<std::string> ReadHead(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(path.string() + ": cannot open");
  std::string head(kSniffBytes, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  return head;
}

bool LooksLikeJson(std::string_view head) {
  const size_t first = head.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && head[first] == '{';
}

template <typename T>
StatusOr<std::unique_ptr<Tokenizer>> Upcast(StatusOr<std::unique_ptr<T>> loaded) {
  if (!loaded.ok()) return loaded.status();
  return std::unique_ptr<Tokenizer>(std::move(loaded).value());
}

StatusOr<std::unique_ptr<Tokenizer>> LoadFile(const fs::path& path) {
  if (path.extension() == ".json") return Upcast(HfTokenizer::Load(path));
  TANDEM_ASSIGN_OR_RETURN(std::string head, ReadHead(path));
  // A tokenizer.model is either tiktoken ranks (text) or a SentencePiece protobuf (binary); the
  // name does not say which, and mistral-common's files end in .model.v3 / .v7.
  if (TiktokenTokenizer::LooksLikeRankFile(head)) return Upcast(TiktokenTokenizer::Load(path));
  if (SentencePieceTokenizer::LooksLikeModelProto(head)) {
    return Upcast(SentencePieceTokenizer::Load(path));
  }
  if (LooksLikeJson(head)) return Upcast(HfTokenizer::Load(path));
  return InvalidArgumentError(path.string() +
                              ": not a tokenizer file (neither tokenizer.json, tiktoken ranks "
                              "nor a SentencePiece model)");
}

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const fs::path& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) return NotFoundError(path.string() + ": no such file or directory");
  if (!fs::is_directory(status)) return LoadFile(path);
  for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
    const fs::path candidate = path / name;
    if (fs::is_regular_file(candidate, ec)) return LoadFile(candidate);
  }
  return NotFoundError(path.string() + ": no tokenizer.json or tokenizer.model in the directory");
}

}  // namespace tandem::tokenizer
