// Non-blocking socket writes shared by the client and the scripted server.
//
// Thread safety: pure functions over a descriptor the caller owns.
#pragma once

#include <cstddef>
#include <string_view>

namespace tandem::bench {

enum class SendResult {
  kDone,     // Everything is written.
  kBlocked,  // The socket is full; wait for EPOLLOUT.
  kError,    // The connection failed; errno says why.
};

// Writes `bytes` from `*offset` on until done or the socket is full, advancing `*offset`.
SendResult SendSome(int fd, std::string_view bytes, size_t* offset);

}  // namespace tandem::bench
