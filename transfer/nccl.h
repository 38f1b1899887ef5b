// "nccl": device memory moved GPU to GPU by NCCL point-to-point operations, between processes or
// machines (NVLink, PCIe, InfiniBand or sockets: whatever NCCL finds between the two GPUs).
//
// A backend is one NCCL rank and drives one GPU: the device of its first registration. Later
// registrations must be on that device (a second GPU needs a second backend), and Connect needs a
// registration first, since the connection's communicator lives on that GPU. Device memory only.
//
// Set-up. The descriptor names the backend's control listener (TCP, on 127.0.0.1, or on the
// address in TANDEM_NCCL_CONTROL_HOST, which peers must be able to reach; an ephemeral port) and
// the region. Connect opens a control connection to it and names the region; the registering side
// answers with the region's size and an ncclUniqueId, and both make a two-rank communicator (the
// connecting side rank 0) and a stream for it: one communicator per connection.
//
// Transfers. Post joins ops that are neighbours on both sides, sends the list over the control
// connection and hands it to NCCL as ncclSend or ncclRecv calls, one per op, in groups of at most
// 2,048 ops on the connection's stream, one group in flight per connection (NCCL's work queue
// then always has room: an ncclGroupEnd never waits for the device). The registering side
// issues the matching groups in the same order and answers when its half is done; a transfer is
// done when both halves are. At most 2^21 ops per Post.
//
// One progress thread per backend makes every NCCL and CUDA stream call and owns every socket;
// handles hand it work. Communicators are non-blocking, so a peer that stops answering never
// holds that thread. A transfer past its deadline, a peer that closes its control connection (it
// died, or dropped its region or the connection) and an NCCL error abort the connection's
// communicator (ncclCommAbort, then the stream drains): its transfers end in DeadlineExceeded or
// Unavailable, later Posts on it get Unavailable, and a new Connect makes a new communicator.
// Cancel reports Cancelled at once, but a group already issued runs to its end, as NCCL cannot
// stop one group without aborting the communicator; dropping the transfer waits for that end.
// Dropping a registration aborts the connections with a group on it in flight.
//
// Thread safety: as transfer.h says; Connect blocks its caller for the set-up (30 s at most).
#pragma once

#include <memory>

#include "tandem/transfer.h"

namespace tandem::transfer {

StatusOr<std::unique_ptr<Backend>> MakeNcclBackend(const BackendOptions& options);

}  // namespace tandem::transfer
