// Parsing of option values shared by every command and daemon. Errors name the option.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tandem/status.h"

namespace tandem {

// "1,2,3" -> {1, 2, 3}. Empty items, non-integers and values outside int32 are InvalidArgument
// naming `option`.
StatusOr<std::vector<int32_t>> ParseIntList(std::string_view text, std::string_view option);

// "512", "64KiB", "256MiB", "8GiB" (also KB/MB/GB as powers of 1000) -> bytes.
StatusOr<uint64_t> ParseByteSize(std::string_view text, std::string_view option);

}  // namespace tandem
