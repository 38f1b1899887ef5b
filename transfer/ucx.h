// "ucx": transfers through UCX (UCP), on one machine or across machines, over whichever
// transports UCX finds (tcp, shared memory and cma here; RDMA verbs where the machine has them).
//
// Host memory moves by one-sided get/put with the remote key carried in the descriptor. Device
// memory moves the same way when the UCX build handles CUDA memory (asked at run time);
// otherwise it is staged through pinned slots in pieces of 4 MiB, pipelined: device → slot →
// UCX → slot → device, the owner staging pieces of its region in its slots at this backend's
// request (active messages) and the bytes crossing between the slots one-sided — or by a device
// copy straight into the owner's slot where UCX maps it here. So the same code serves both kinds
// of UCX build.
//
// One progress thread owns the UCX worker and makes every UCX call: handles hand it commands.
// A peer that dies fails its endpoint (UCX's peer error handling) and the transfers on it end in
// Unavailable; a transfer that reaches its deadline with requests still out closes the endpoint
// by force (DeadlineExceeded), so a peer that stops answering never hangs a transfer; the next
// Connect makes a new endpoint.
#pragma once

#include <memory>

#include "tandem/transfer.h"

namespace tandem::transfer {

StatusOr<std::unique_ptr<Backend>> MakeUcxBackend(const BackendOptions& options);

}  // namespace tandem::transfer
