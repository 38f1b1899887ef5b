// llama.cpp tokenizer test vectors, shared by the tokenizer tests: `X.gguf.inp` holds the input
// texts, each followed by the line "__ggml_vocab_test__"; the sibling `X.gguf.out` holds, one line
// per text, the expected ids (each preceded by a space; no BOS/EOS).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tandem/status.h"

namespace tandem::tokenizer::testing {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

// Reads `inp` (bytes as they are) and the `.out` beside it. InvalidArgument when the two disagree
// on the number of cases or an id is not an integer; NotFound when a file is missing.
StatusOr<std::vector<VocabCase>> ReadVocabVectors(const std::filesystem::path& inp);

// TANDEM_SOURCE_DIR "/../shared/data": the shared reference data (tokenizers, vectors). Tests that
// need it skip with GTEST_SKIP() << "../shared/data absent" when it does not exist.
std::filesystem::path SharedDataDir();

}  // namespace tandem::tokenizer::testing
