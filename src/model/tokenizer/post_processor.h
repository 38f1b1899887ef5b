// Post-processors of a Hugging Face tokenizer.json: what add_special_tokens=true adds around the
// ids of one sequence (e.g. Llama's leading <s> / <|begin_of_text|>).
//
// Supported types: TemplateProcessing (its "single" template), BertProcessing,
// RobertaProcessing, ByteLevel (offsets only: no change to ids), Sequence. Anything else fails to
// parse with "<file>: unsupported post_processor 'X'".
//
// Thread safety: immutable after parsing; Process may run on many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem::tokenizer {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Rewrites the ids of a single sequence as add_special_tokens=true asks.
  virtual void Process(std::vector<int32_t>& ids) const = 0;
};

// `spec` is the non-null value of "post_processor" (or an element of a Sequence).
StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const nlohmann::json& spec,
                                                            std::string_view source,
                                                            const std::string& path);

}  // namespace tandem::tokenizer
