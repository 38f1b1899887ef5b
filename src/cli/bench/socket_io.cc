#include "cli/bench/socket_io.h"

#include <sys/socket.h>

#include <cerrno>

namespace tandem::bench {

SendResult SendSome(int fd, std::string_view bytes, size_t* offset) {
  while (*offset < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + *offset, bytes.size() - *offset, MSG_NOSIGNAL);
    if (n > 0) {
      *offset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return SendResult::kBlocked;
    return SendResult::kError;
  }
  return SendResult::kDone;
}

}  // namespace tandem::bench
