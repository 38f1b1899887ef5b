#include "model/tokenizer/decoder.h"

#include <nlohmann/json.hpp>

#include "common/status_macros.h"
#include "model/tokenizer/json_spec.h"
#include "model/tokenizer/pre_tokenizer.h"
#include "model/tokenizer/utf8.h"

namespace tandem::tokenizer {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& token : tokens) AppendByteLevelBytes(token, bytes);
    tokens.assign(1, SanitizeUtf8(bytes));
  }
  bool IsByteLevel() const override { return true; }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool strip_first) : strip_first_(strip_first) {
    AppendUtf8(replacement, replacement_);
  }
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      // In the first token the replacement is dropped (it marks the prepended space).
      const std::string_view with = i == 0 && strip_first_ ? std::string_view() : " ";
      out.clear();
      std::string_view token = tokens[i];
      size_t pos = token.find(replacement_);
      while (pos != std::string_view::npos) {
        out.append(token.substr(0, pos));
        out.append(with);
        token.remove_prefix(pos + replacement_.size());
        pos = token.find(replacement_);
      }
      out.append(token);
      tokens[i].swap(out);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string bytes;
    size_t byte_tokens = 0;
    auto flush = [&] {
      if (byte_tokens == 0) return;
      if (!FindInvalidUtf8(bytes).has_value()) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < byte_tokens; ++i) out.emplace_back(kReplacementChar);
      }
      bytes.clear();
      byte_tokens = 0;
    };
    for (std::string& token : tokens) {
      int value = -1;
      if (token.size() == 6 && token.starts_with("<0x") && token.back() == '>') {
        value = ParseHexByte(token[3], token[4]);
      }
      if (value >= 0) {
        bytes.push_back(static_cast<char>(value));
        ++byte_tokens;
      } else {
        flush();
        out.push_back(std::move(token));
      }
    }
    flush();
    tokens.swap(out);
  }

 private:
  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  static int ParseHexByte(char high, char low) {
    const int h = HexDigit(high), l = HexDigit(low);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::string joined;
    for (const std::string& token : tokens) joined += token;
    tokens.assign(1, std::move(joined));
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters from every token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop) : start_(start), stop_(stop) {
    AppendUtf8(content, content_);
  }
  void DecodeChain(std::vector<std::string>& tokens) const override {
    const size_t width = content_.size();
    for (std::string& token : tokens) {
      const std::string_view view(token);
      size_t begin = 0;
      for (size_t i = 0; i < start_ && view.substr(begin).starts_with(content_); ++i) {
        begin += width;
      }
      size_t end = view.size();
      for (size_t i = 0;
           i < stop_ && end - begin >= width && view.substr(0, end).ends_with(content_); ++i) {
        end -= width;
      }
      if (begin == 0 && end == view.size()) continue;
      token = token.substr(begin, end - begin);
    }
  }

 private:
  std::string content_;  // UTF-8 of the character.
  size_t start_;
  size_t stop_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(SplitPattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    std::string out;
    for (std::string& token : tokens) {
      out.clear();
      pattern_.ReplaceAll(token, content_, out);
      token.swap(out);
    }
  }

 private:
  SplitPattern pattern_;
  std::string content_;
};

// BPEDecoder: the end-of-word suffix becomes a space, except on the last token.
class BpeSuffixDecoder : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    if (suffix_.empty()) return;
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string_view with = i + 1 == tokens.size() ? std::string_view() : " ";
      out.clear();
      std::string_view token = tokens[i];
      size_t pos = token.find(suffix_);
      while (pos != std::string_view::npos) {
        out.append(token.substr(0, pos));
        out.append(with);
        token.remove_prefix(pos + suffix_.size());
        pos = token.find(suffix_);
      }
      out.append(token);
      tokens[i].swap(out);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void DecodeChain(std::vector<std::string>& tokens) const override {
    for (const auto& step : steps_) step->DecodeChain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

void AppendByteLevelBytes(std::string_view token, std::string& out) {
  const size_t mark = out.size();
  size_t pos = 0;
  while (pos < token.size()) {
    const int byte = ByteLevelByte(NextCodePoint(token, pos));
    if (byte < 0) {
      out.resize(mark);
      out.append(token);
      return;
    }
    out.push_back(static_cast<char>(byte));
  }
}

StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const nlohmann::json& spec, std::string_view source,
                                                const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(const std::string type, ReadComponentType(spec, source, path));

  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Metaspace") {
    char32_t replacement = 0;
    TANDEM_RETURN_IF_ERROR(ReadChar(spec, "replacement", source, path, &replacement));
    bool strip_first = true;  // prepend_scheme "always" / "first" (and legacy add_prefix_space).
    if (const Json* scheme = FindField(spec, "prepend_scheme"); scheme != nullptr) {
      if (!scheme->is_string()) {
        return FieldError(source, path + ".prepend_scheme", "must be a string");
      }
      strip_first = scheme->get<std::string>() != "never";
    }
    if (const Json* legacy = FindField(spec, "add_prefix_space");
        legacy != nullptr && legacy->is_boolean() && !legacy->get<bool>()) {
      strip_first = false;
    }
    return std::unique_ptr<Decoder>(new MetaspaceDecoder(replacement, strip_first));
  }
  if (type == "Strip") {
    char32_t content = 0;
    size_t start = 0, stop = 0;
    TANDEM_RETURN_IF_ERROR(ReadChar(spec, "content", source, path, &content));
    TANDEM_RETURN_IF_ERROR(ReadCount(spec, "start", source, path, &start));
    TANDEM_RETURN_IF_ERROR(ReadCount(spec, "stop", source, path, &stop));
    return std::unique_ptr<Decoder>(new StripDecoder(content, start, stop));
  }
  if (type == "Replace") {
    TANDEM_ASSIGN_OR_RETURN(SplitPattern pattern, SplitPattern::FromField(spec, source, path));
    std::string content;
    TANDEM_RETURN_IF_ERROR(ReadString(spec, "content", source, path, &content));
    return std::unique_ptr<Decoder>(new ReplaceDecoder(std::move(pattern), std::move(content)));
  }
  if (type == "BPEDecoder") {
    std::string suffix = "</w>";
    if (FindField(spec, "suffix") != nullptr) {
      TANDEM_RETURN_IF_ERROR(ReadString(spec, "suffix", source, path, &suffix));
    }
    return std::unique_ptr<Decoder>(new BpeSuffixDecoder(std::move(suffix)));
  }
  if (type == "Sequence") {
    TANDEM_ASSIGN_OR_RETURN(
        auto steps, ParseSequenceSteps<Decoder>(spec, "decoders", source, path, ParseDecoder));
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(steps)));
  }
  return InvalidArgumentError(std::string(source) + ": unsupported decoder '" + type + "' (at " +
                              path + ")");
}

}  // namespace tandem::tokenizer
