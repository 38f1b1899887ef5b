// Releases KV leases at prefill workers (Worker.ReleaseKv), for the decode worker's KvPuller:
// asynchronous unary calls with a deadline, one channel kept per prefill worker address.
//
// Thread safety: Release may be called from any thread; `done` runs on a gRPC thread (or on the
// caller's, for an address that cannot be used). The destructor cancels the calls in flight and
// waits for their callbacks.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "tandem/kv_pull.h"
#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::worker {

class LeaseReleaser {
 public:
  explicit LeaseReleaser(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000))
      : timeout_(timeout) {}
  ~LeaseReleaser();
  LeaseReleaser(const LeaseReleaser&) = delete;
  LeaseReleaser& operator=(const LeaseReleaser&) = delete;

  // Releases source's lease at source.peer, checking `blocks` there when given; `done` (may be
  // null) gets OK only when the peer answered that it released it.
  void Release(const KvSource& source, std::vector<int32_t> blocks,
               std::function<void(const Status&)> done);

 private:
  struct Call;
  std::shared_ptr<v1::Worker::Stub> Stub(const std::string& address);

  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable idle_;
  // Channels by prefill worker address; cleared when it grows past kMaxPeers.
  static constexpr size_t kMaxPeers = 256;
  std::unordered_map<std::string, std::shared_ptr<v1::Worker::Stub>> stubs_;  // Guarded by mu_.
  std::vector<std::shared_ptr<Call>> calls_;                                  // Guarded by mu_.
};

}  // namespace tandem::worker
