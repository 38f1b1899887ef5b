// The demo model: a complete Hugging Face-style model directory made on the spot, so `tandem
// serve` answers with no download. It holds the built-in "demo" architecture (llama, vocab 512)
// as config.json, generation_config.json, a real byte-level BPE tokenizer.json (merges learned
// from a small built-in English sample) and tokenizer_config.json with a ChatML-like chat
// template. It has no weights: serve it with --weights random.
//
// Token ids: 0 <|start|>, 1 <|begin_of_text|> (bos), 2 <|end_of_text|> (eos), 3 <|eot_id|> (ends
// a chat turn; also an eos id in generation_config.json), 4..259 the 256 byte-level symbols in
// byte order, 260..511 the merges in the order they were learned.
//
// Thread safety: pure functions; WriteDemoModel replaces each file atomically, so concurrent
// writers of one directory leave it complete.
#pragma once

#include <filesystem>
#include <string>

#include "tandem/status.h"

namespace tandem::model {

// The files of the demo model, as text. Deterministic: the same bytes on every call and machine.
struct DemoModelFiles {
  std::string config_json;
  std::string generation_config_json;
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};
StatusOr<DemoModelFiles> MakeDemoModelFiles();

// Creates `dir` (and its parents) when missing and writes the demo model's files into it,
// replacing earlier versions.
Status WriteDemoModel(const std::filesystem::path& dir);

}  // namespace tandem::model
