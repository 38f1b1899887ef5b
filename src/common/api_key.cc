#include "common/api_key.h"

#include <cstdlib>
#include <cstring>

#include "common/file_util.h"

namespace tandem {
namespace {

std::string_view Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t begin = s.find_first_not_of(ws);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(ws) - begin + 1);
}

}  // namespace

StatusOr<std::optional<std::string>> ResolveApiKey(std::string_view flag, std::string_view file) {
  if (!flag.empty() && !file.empty()) {
    return InvalidArgumentError("--api-key and --api-key-file: give one of them");
  }
  if (!flag.empty()) return std::optional<std::string>(std::string(flag));
  if (!file.empty()) {
    StatusOr<std::string> text = ReadFileToString(std::string(file));
    if (!text.ok()) return text.status().WithContext("--api-key-file");
    std::string_view first = *text;
    first = first.substr(0, first.find('\n'));
    const std::string_view key = Trim(first);
    if (key.empty()) {
      return InvalidArgumentError("--api-key-file: " + std::string(file) + " holds no key");
    }
    return std::optional<std::string>(std::string(key));
  }
  if (const char* env = std::getenv(kApiKeyEnv); env != nullptr) {
    const std::string_view key = Trim(env);
    if (key.empty()) return InvalidArgumentError(std::string(kApiKeyEnv) + " is set but empty");
    return std::optional<std::string>(std::string(key));
  }
  return std::optional<std::string>();
}

bool BearerMatches(std::string_view authorization, std::string_view key) {
  authorization = Trim(authorization);
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c) != kScheme[i]) return false;
  }
  if (authorization[kScheme.size()] != ' ') return false;
  const std::string_view given = Trim(authorization.substr(kScheme.size() + 1));
  // Constant time in the key's length: every byte is compared whatever the first mismatch.
  unsigned char diff = given.size() == key.size() ? 0 : 1;
  for (size_t i = 0; i < key.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(key[i]);
  }
  return diff == 0;
}

void HideArgValue(int argc, char** argv, std::string_view option) {
  const std::string with_equals = std::string(option) + "=";
  for (int i = 1; i < argc; ++i) {
    char* value = nullptr;
    if (option == argv[i] && i + 1 < argc) {
      value = argv[i + 1];
    } else if (std::strncmp(argv[i], with_equals.c_str(), with_equals.size()) == 0) {
      value = argv[i] + with_equals.size();
    }
    if (value != nullptr) std::memset(value, 'x', std::strlen(value));
  }
}

}  // namespace tandem
