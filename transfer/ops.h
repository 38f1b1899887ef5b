// What every backend checks of a posted op list before anything moves.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "tandem/transfer.h"

namespace tandem::transfer {

// InvalidArgument naming the first op that reaches outside either region (overflow included).
Status CheckOps(std::string_view backend, std::span<const TransferOp> ops, uint64_t local_bytes,
                uint64_t remote_bytes);

}  // namespace tandem::transfer
