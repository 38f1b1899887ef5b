#include "model/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/status_macros.h"
#include "model/tokenizer/json_spec.h"
#include "model/tokenizer/pre_tokenizer.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

// Code points below this are classified by InertTable; those above count as not inert.
constexpr char32_t kInertTableEnd = 0x30000;

// The code points a Unicode normalization form leaves alone whatever surrounds them: combining
// class 0, unchanged by the form, and never the second character of a composition (Unicode's
// "quick check = Yes" starters). Normalizing a text equals normalizing separately the pieces cut
// before such characters, which lets most text skip utf8proc entirely.
class InertTable {
 public:
  explicit InertTable(int options) : bits_(kInertTableEnd / 64, 0) {
    const bool compat = (options & UTF8PROC_COMPAT) != 0;
    const bool compose = (options & UTF8PROC_COMPOSE) != 0;
    const auto decompose_options =
        static_cast<utf8proc_option_t>(UTF8PROC_DECOMPOSE | (compat ? UTF8PROC_COMPAT : 0));
    std::vector<bool> second(kInertTableEnd, false);
    // Hangul: vowel and trailing jamo compose with what precedes them.
    for (char32_t c = 0x1161; c <= 0x1175; ++c) second[c] = true;
    for (char32_t c = 0x11A8; c <= 0x11C2; ++c) second[c] = true;
    std::vector<bool> unchanged(kInertTableEnd, true);
    utf8proc_int32_t buffer[32];
    for (char32_t c = 0; c < kInertTableEnd; ++c) {
      const auto cp = static_cast<utf8proc_int32_t>(c);
      if (!utf8proc_codepoint_valid(cp)) continue;
      int boundclass = 0;
      const utf8proc_ssize_t n =
          utf8proc_decompose_char(cp, buffer, 32, decompose_options, &boundclass);
      if (n == 1 && buffer[0] == cp) continue;
      // Any character after the first of a decomposition may compose with what precedes it.
      for (utf8proc_ssize_t i = 1; i < n && i < 32; ++i) {
        if (buffer[i] >= 0 && static_cast<char32_t>(buffer[i]) < kInertTableEnd) {
          second[buffer[i]] = true;
        }
      }
      unchanged[c] = compose && MapsToItself(c, options);
    }
    for (char32_t c = 0; c < kInertTableEnd; ++c) {
      const auto cp = static_cast<utf8proc_int32_t>(c);
      if (!utf8proc_codepoint_valid(cp) || second[c] || !unchanged[c]) continue;
      if (utf8proc_get_property(cp)->combining_class != 0) continue;
      bits_[c / 64] |= uint64_t{1} << (c % 64);
    }
  }

  bool Inert(char32_t c) const {
    return c < kInertTableEnd && ((bits_[c / 64] >> (c % 64)) & 1) != 0;
  }

 private:
  static bool MapsToItself(char32_t c, int options) {
    std::string text;
    AppendUtf8(c, text);
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                     static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                     static_cast<utf8proc_option_t>(options));
    const bool same = length >= 0 && std::string_view(reinterpret_cast<const char*>(mapped),
                                                      static_cast<size_t>(length)) == text;
    std::free(mapped);
    return same;
  }

  std::vector<uint64_t> bits_;
};

// NFC / NFD / NFKC / NFKD through utf8proc, applied only to the stretches that need it.
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(int options) : options_(options) {}

  void Normalize(std::string_view text, std::string& out) const override {
    const InertTable& inert = Table();
    size_t emitted = 0;   // text[0, emitted) is in `out`.
    size_t last_cut = 0;  // Start of the stretch that may need normalizing.
    bool dirty = false;   // text[last_cut, pos) holds a character that is not inert.
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t begin = pos;
      const auto byte = static_cast<unsigned char>(text[pos]);
      char32_t c;
      if (byte < 0x80) {
        c = byte;
        ++pos;
      } else {
        c = NextCodePoint(text, pos);
      }
      if (!inert.Inert(c)) {
        dirty = true;
        continue;
      }
      if (dirty) {
        out.append(text.substr(emitted, last_cut - emitted));
        AppendMapped(text.substr(last_cut, begin - last_cut), out);
        emitted = begin;
        dirty = false;
      }
      last_cut = begin;
    }
    if (dirty) {
      out.append(text.substr(emitted, last_cut - emitted));
      AppendMapped(text.substr(last_cut), out);
    } else {
      out.append(text.substr(emitted));
    }
  }

 private:
  // One table per form for the whole process, built on first use (a few milliseconds).
  const InertTable& Table() const {
    if (options_ & UTF8PROC_COMPAT) {
      if (options_ & UTF8PROC_COMPOSE) {
        static const InertTable nfkc(options_);
        return nfkc;
      }
      static const InertTable nfkd(options_);
      return nfkd;
    }
    if (options_ & UTF8PROC_COMPOSE) {
      static const InertTable nfc(options_);
      return nfc;
    }
    static const InertTable nfd(options_);
    return nfd;
  }

  void AppendMapped(std::string_view text, std::string& out) const {
    utf8proc_uint8_t* mapped = nullptr;
    const utf8proc_ssize_t length =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                     static_cast<utf8proc_ssize_t>(text.size()), &mapped,
                     static_cast<utf8proc_option_t>(options_));
    if (length < 0) {
      // Only reachable on allocation failure: the text was validated as UTF-8 before.
      out.append(text);
    } else {
      out.append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(length));
    }
    std::free(mapped);
  }

  int options_;
};

// Lowercase maps each character on its own (Rust's char::to_lowercase), so no final-sigma rule.
class LowercaseNormalizer : public Normalizer {
 public:
  void Normalize(std::string_view text, std::string& out) const override {
    size_t pos = 0;
    while (pos < text.size()) {
      const auto byte = static_cast<unsigned char>(text[pos]);
      if (byte < 0x80) {
        out.push_back(static_cast<char>(byte >= 'A' && byte <= 'Z' ? byte + 32 : byte));
        ++pos;
        continue;
      }
      const char32_t c = NextCodePoint(text, pos);
      if (c == 0x130) {  // İ: the one unconditional multi-character lowercase mapping.
        out += "i\xCC\x87";
        continue;
      }
      AppendUtf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))), out);
    }
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void Normalize(std::string_view text, std::string& out) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t pos = begin;
        if (!IsUnicodeWhitespace(NextCodePoint(text, pos))) break;
        begin = pos;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t pos = start;
        if (!IsUnicodeWhitespace(NextCodePoint(text, pos))) break;
        end = start;
      }
    }
    out.append(text.substr(begin, end - begin));
  }

 private:
  bool left_, right_;
};

// Drops combining marks (general category M*), the way StripAccents does after an NFD.
class StripAccentsNormalizer : public Normalizer {
 public:
  void Normalize(std::string_view text, std::string& out) const override {
    size_t pos = 0;
    while (pos < text.size()) {
      const size_t begin = pos;
      const char32_t c = NextCodePoint(text, pos);
      const auto category = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      if (category >= UTF8PROC_CATEGORY_MN && category <= UTF8PROC_CATEGORY_ME) continue;
      out.append(text.substr(begin, pos - begin));
    }
  }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string_view text, std::string& out) const override {
    if (!text.empty()) out += prefix_;  // An empty text stays empty.
    out.append(text);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(SplitPattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(std::string_view text, std::string& out) const override {
    pattern_.ReplaceAll(text, content_, out);
  }

 private:
  SplitPattern pattern_;
  std::string content_;
};

class ByteLevelNormalizer : public Normalizer {
 public:
  void Normalize(std::string_view text, std::string& out) const override {
    AppendByteLevel(text, out);
  }
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  void Normalize(std::string_view text, std::string& out) const override {
    if (steps_.empty()) {
      out.append(text);
      return;
    }
    std::string current(text), next;
    for (size_t i = 0; i + 1 < steps_.size(); ++i) {
      next.clear();
      steps_[i]->Normalize(current, next);
      current.swap(next);
    }
    steps_.back()->Normalize(current, out);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

}  // namespace

StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& spec,
                                                      std::string_view source,
                                                      const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(const std::string type, ReadComponentType(spec, source, path));

  if (type == "Sequence") {
    TANDEM_ASSIGN_OR_RETURN(auto steps, ParseSequenceSteps<Normalizer>(spec, "normalizers", source,
                                                                       path, ParseNormalizer));
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(steps)));
  }
  if (type == "NFC") {
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  }
  if (type == "NFD") {
    return std::unique_ptr<Normalizer>(new UnicodeNormalizer(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE));
  }
  if (type == "NFKC") {
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
  }
  if (type == "NFKD") {
    return std::unique_ptr<Normalizer>(
        new UnicodeNormalizer(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
  }
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  if (type == "StripAccents") return std::unique_ptr<Normalizer>(new StripAccentsNormalizer());
  if (type == "ByteLevel") return std::unique_ptr<Normalizer>(new ByteLevelNormalizer());
  if (type == "Strip") {
    bool left = true, right = true;
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "strip_left", source, path, &left));
    TANDEM_RETURN_IF_ERROR(ReadBool(spec, "strip_right", source, path, &right));
    return std::unique_ptr<Normalizer>(new StripNormalizer(left, right));
  }
  if (type == "Prepend") {
    std::string prefix;
    TANDEM_RETURN_IF_ERROR(ReadString(spec, "prepend", source, path, &prefix));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(std::move(prefix)));
  }
  if (type == "Replace") {
    TANDEM_ASSIGN_OR_RETURN(SplitPattern pattern, SplitPattern::FromField(spec, source, path));
    std::string content;
    TANDEM_RETURN_IF_ERROR(ReadString(spec, "content", source, path, &content));
    return std::unique_ptr<Normalizer>(
        new ReplaceNormalizer(std::move(pattern), std::move(content)));
  }
  return InvalidArgumentError(std::string(source) + ": unsupported normalizer '" + type + "' (at " +
                              path + ")");
}

}  // namespace tandem::tokenizer
