// "inproc": transfers between regions of one process, copied by worker threads (memcpy), for
// tests and for both roles in one process. Host memory only. A descriptor names the process and
// the registration; a connection from another process is refused. Copies go in chunks of at most
// 4 MiB, so that a cancel, a deadline or the peer's deregistration ends a transfer promptly, and
// a deregistration waits for the chunk in flight: no byte moves into or out of a region after its
// registration is gone.
#pragma once

#include <memory>

#include "tandem/transfer.h"

namespace tandem::transfer {

StatusOr<std::unique_ptr<Backend>> MakeInprocBackend(const BackendOptions& options);

}  // namespace tandem::transfer
