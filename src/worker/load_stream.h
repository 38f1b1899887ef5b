// One StreamLoad call: sends a LoadReport every interval until the client goes away or the
// server shuts down. A timer on the dispatcher paces it; a report is skipped while the previous
// one is still being written, so a slow reader never queues stale reports.
//
// Thread safety: OnWriteDone and OnCancel run on gRPC threads and only set atomics and wake the
// dispatcher; Pump and OnTimer run on the dispatcher thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "tandem/v1/worker.grpc.pb.h"
#include "worker/dispatcher.h"

namespace tandem::worker {

class LoadStream final : public Pumped, public std::enable_shared_from_this<LoadStream> {
 public:
  // Returns the reactor to hand to gRPC. `snapshot` runs on the dispatcher thread, must not
  // block, and must stay callable while the call is open; `dispatcher` outlives the call.
  static grpc::ServerWriteReactor<v1::LoadReport>* Start(Dispatcher* dispatcher,
                                                         std::function<v1::LoadReport()> snapshot,
                                                         std::chrono::milliseconds interval);

  LoadStream(Dispatcher* dispatcher, std::function<v1::LoadReport()> snapshot,
             std::chrono::milliseconds interval);

  void Pump() override;     // Finishes the call once the client is gone.
  void OnTimer() override;  // Sends a report and re-arms the timer.

  void OnWriteDone(bool ok);
  void OnCancel();

 private:
  Dispatcher* const dispatcher_;
  const std::function<v1::LoadReport()> snapshot_;
  const std::chrono::milliseconds interval_;

  std::atomic<bool> write_in_flight_{false};
  std::atomic<bool> client_gone_{false};

  // Dispatcher thread only.
  grpc::ServerWriteReactor<v1::LoadReport>* reactor_ = nullptr;  // Valid until finished_.
  bool finished_ = false;
  v1::LoadReport report_;  // The message being written; untouched while in flight.
};

}  // namespace tandem::worker
