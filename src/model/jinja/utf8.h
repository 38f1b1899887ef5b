// UTF-8 helpers giving Python's code-point view of strings: templates index, slice, measure and
// strip strings by code point, as Python does, while values stay UTF-8 encoded.
//
// Invalid bytes decode to U+DC80..U+DCFF (Python's "surrogateescape") and encode back to the same
// byte, so no input is ever altered by a round trip.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace tandem::jinja {

std::u32string DecodeUtf8(std::string_view text);
std::string EncodeUtf8(std::u32string_view text);
void AppendUtf8(char32_t code_point, std::string* out);

// Number of code points.
size_t CodePointCount(std::string_view text);

// Python's str.isspace() for one code point.
bool IsPythonSpace(char32_t c);

// Python's str.strip/lstrip/rstrip: `chars` null strips whitespace, otherwise any of its code
// points.
std::string PythonStrip(std::string_view text, const std::string* chars, bool left, bool right);

// Simple one-to-one case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic; other
// code points are kept (Python's full mapping also covers the rest of Unicode and the few
// one-to-many cases such as 'ß' -> 'SS').
char32_t ToUpper(char32_t c);
char32_t ToLower(char32_t c);
bool IsCased(char32_t c);

}  // namespace tandem::jinja
