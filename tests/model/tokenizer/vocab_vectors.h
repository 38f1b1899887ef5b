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

struct TokenizerCase {
  const char* name;
  const char* file;    // under tokenizers/
  const char* inputs;  // .inp under tokenizers/
};

// Every real tokenizer of ../shared/data in every format, with the test inputs to run it on.
inline constexpr TokenizerCase kRealTokenizers[] = {
    {"Llama3Tiktoken", "llama3/tokenizer.model", "llama3/ggml-vocab-llama-bpe.gguf.inp"},
    {"Llama3Json", "llama3/tokenizer.json", "llama3/ggml-vocab-llama-bpe.gguf.inp"},
    {"Qwen2Json", "qwen2/tokenizer.json", "qwen2/ggml-vocab-qwen2.gguf.inp"},
    {"Gpt2Json", "gpt2/tokenizer.json", "gpt2/ggml-vocab-gpt-2.gguf.inp"},
    {"Llama2Json", "llama2/tokenizer.json", "llama2/ggml-vocab-llama-spm.gguf.inp"},
    {"Llama2SentencePiece", "llama2/tokenizer.model", "llama2/ggml-vocab-llama-spm.gguf.inp"},
    {"MistralV1SentencePiece", "mistral/tokenizer.model.v1",
     "llama2/ggml-vocab-llama-spm.gguf.inp"},
    {"MistralV3SentencePiece", "mistral/mistral_instruct_tokenizer_240323.model.v3",
     "llama2/ggml-vocab-llama-spm.gguf.inp"},
    {"MistralV7SentencePiece", "mistral/mistral_instruct_tokenizer_241114.model.v7",
     "llama2/ggml-vocab-llama-spm.gguf.inp"},
};

}  // namespace tandem::tokenizer::testing
