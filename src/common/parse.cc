#include "common/parse.h"

#include <charconv>
#include <string>

namespace tandem {

StatusOr<std::vector<int32_t>> ParseIntList(std::string_view text, std::string_view option) {
  std::vector<int32_t> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = text.substr(pos, comma - pos);
    int32_t value = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
      return InvalidArgumentError(std::string(option) + ": '" + std::string(item) +
                                  "' is not an integer (expected comma-separated integers)");
    }
    out.push_back(value);
    pos = comma + 1;
  }
  return out;
}

StatusOr<uint64_t> ParseByteSize(std::string_view text, std::string_view option) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string_view unit(end, text.data() + text.size() - end);
  struct Unit {
    std::string_view name;
    uint64_t scale;
  };
  static constexpr Unit kUnits[] = {{"", 1},          {"B", 1},
                                    {"KiB", 1ull << 10}, {"MiB", 1ull << 20},
                                    {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
                                    {"KB", 1000},       {"MB", 1000'000},
                                    {"GB", 1000'000'000}, {"TB", 1000'000'000'000}};
  if (ec == std::errc() && end != text.data()) {
    for (const Unit& u : kUnits) {
      if (unit == u.name) {
        if (value > UINT64_MAX / u.scale) break;
        return value * u.scale;
      }
    }
  }
  return InvalidArgumentError(std::string(option) + ": '" + std::string(text) +
                              "' is not a size (e.g. 512MiB, 8GiB)");
}

}  // namespace tandem
