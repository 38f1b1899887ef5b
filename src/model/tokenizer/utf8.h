// UTF-8 helpers shared by the tokenizers.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tandem::tokenizer {

// Offset of the first byte that does not start a valid UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are invalid); nullopt when all of `text` is valid.
std::optional<size_t> FindInvalidUtf8(std::string_view text);

// Decodes the code point starting at text[pos] (which must be valid UTF-8) and advances pos.
char32_t NextCodePoint(std::string_view text, size_t& pos);

// Appends the UTF-8 encoding of `cp`.
void AppendUtf8(char32_t cp, std::string& out);

// Replaces every invalid sequence by U+FFFD, the way Python's bytes.decode(errors="replace")
// does (one U+FFFD per maximal invalid subpart).
std::string SanitizeUtf8(std::string_view bytes);

}  // namespace tandem::tokenizer
