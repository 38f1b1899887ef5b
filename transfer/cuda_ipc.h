// "cuda_ipc": device memory between processes of one machine through CUDA IPC memory handles,
// also two processes on one GPU (the single-GPU disaggregated set-up). The descriptor carries the
// allocation's IPC handle, the region's offset in it and its device's PCI bus id; a connection
// maps the peer's allocation into this process and copies with cudaMemcpyAsync on a stream of
// this backend, one-sided: the peer's threads take no part. Within one process the region is
// reached directly (CUDA cannot open a process's own handle).
//
// A worker thread issues the copies of every transfer, a bounded number at a time so that a
// cancel or a deadline stops one promptly, and watches each peer process through a pidfd: a peer
// that exits ends its transfers in Unavailable once the copies already issued are done.
#pragma once

#include <memory>

#include "tandem/transfer.h"

namespace tandem::transfer {

StatusOr<std::unique_ptr<Backend>> MakeCudaIpcBackend(const BackendOptions& options);

}  // namespace tandem::transfer
