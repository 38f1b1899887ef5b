#include "vocab_vectors.h"

#include <charconv>

#include "common/file_util.h"
#include "common/status_macros.h"

namespace tandem::tokenizer::testing {

StatusOr<std::vector<VocabCase>> ReadVocabVectors(const std::filesystem::path& inp) {
  std::filesystem::path out_path = inp;
  out_path.replace_extension(".out");
  TANDEM_ASSIGN_OR_RETURN(std::string inputs, ReadFileToString(inp));
  TANDEM_ASSIGN_OR_RETURN(std::string outputs, ReadFileToString(out_path));

  constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";
  std::vector<VocabCase> cases;
  size_t pos = 0;
  while (pos < inputs.size()) {
    const size_t end = inputs.find(kSeparator, pos);
    if (end == std::string::npos) {
      return InvalidArgumentError(inp.string() + ": text after the last separator");
    }
    cases.push_back({inputs.substr(pos, end - pos), {}});
    pos = end + kSeparator.size();
  }

  size_t line_begin = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    size_t line_end = outputs.find('\n', line_begin);
    // The last line may lack its newline.
    if (line_end == std::string::npos && i + 1 == cases.size() && line_begin <= outputs.size()) {
      line_end = outputs.size();
    }
    if (line_end == std::string::npos) {
      return InvalidArgumentError(out_path.string() + ": " + std::to_string(i) + " lines for " +
                                  std::to_string(cases.size()) + " inputs");
    }
    const std::string_view line(outputs.data() + line_begin, line_end - line_begin);
    size_t p = 0;
    while (p < line.size()) {
      if (line[p] == ' ') {
        ++p;
        continue;
      }
      int32_t id = 0;
      const auto [next, error] = std::from_chars(line.data() + p, line.data() + line.size(), id);
      if (error != std::errc()) {
        return InvalidArgumentError(out_path.string() + ": line " + std::to_string(i + 1) +
                                    " holds a non-integer");
      }
      cases[i].ids.push_back(id);
      p = static_cast<size_t>(next - line.data());
    }
    line_begin = line_end + 1;
  }
  if (line_begin < outputs.size()) {
    return InvalidArgumentError(out_path.string() + ": more lines than the " +
                                std::to_string(cases.size()) + " inputs");
  }
  return cases;
}

std::filesystem::path SharedDataDir() {
  return std::filesystem::path(TANDEM_SOURCE_DIR) / ".." / "shared" / "data";
}

}  // namespace tandem::tokenizer::testing
