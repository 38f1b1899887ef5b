// One Generate call: streams an engine request's outputs to a gRPC client.
//
// The engine thread pushes outputs to the request's OutputStream, whose notify callback wakes
// the dispatcher; the dispatcher pops every output ready, batches their tokens into one
// GenerateResponse and starts the write. While a write is in flight nothing more is started;
// OnWriteDone wakes the dispatcher again, so a slow client gets bigger batches rather than a
// blocked thread. A client that goes away (OnCancel, or a failed write) cancels the engine
// request, which frees its KV blocks.
//
// Thread safety: OnWriteDone and OnCancel run on gRPC threads and only set atomics and wake the
// dispatcher; Pump runs on the dispatcher thread and alone touches the response and the reactor.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "tandem/engine.h"
#include "tandem/transfer.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "worker/dispatcher.h"
#include "worker/worker_metrics.h"

namespace tandem::worker {

class GenerateCall final : public Pumped, public std::enable_shared_from_this<GenerateCall> {
 public:
  struct Deps {
    Engine* engine = nullptr;          // Outlives the call.
    WorkerMetrics* metrics = nullptr;  // Outlives the call.
    Dispatcher* dispatcher = nullptr;  // Outlives the call.
    // The engine's registered KV pool, for the KV handles of prefill_only requests; may be null.
    const transfer::RemoteDescriptor* kv_descriptor = nullptr;
  };

  // What the owner of the call learns of its end.
  struct Hooks {
    // Dispatcher thread, just before the last message or status is sent: the request is over
    // for the engine and for anyone who asks after it.
    std::function<void()> on_finished;
    // A gRPC thread, once the RPC is over (OnDone).
    std::function<void()> on_done;
  };

  // Starts streaming an engine request already submitted, and returns the reactor to hand to
  // gRPC (which owns it until OnDone).
  static grpc::ServerWriteReactor<v1::GenerateResponse>* Start(
      Deps deps, std::string request_id, RequestId engine_id, std::shared_ptr<OutputStream> stream,
      std::chrono::steady_clock::time_point arrival, Hooks hooks);

  GenerateCall(Deps deps, std::string request_id, RequestId engine_id,
               std::shared_ptr<OutputStream> stream, std::chrono::steady_clock::time_point arrival,
               std::function<void()> on_finished);

  void Pump() override;

  // Reactions, forwarded by the reactor from gRPC threads.
  void OnWriteDone(bool ok);
  void OnCancel();

 private:
  void FinishCall(const grpc::Status& status, CallOutcome outcome);

  const Deps deps_;
  const std::string request_id_;
  const RequestId engine_id_;
  // Shared with the engine thread, which pushes to it (see include/tandem/engine.h).
  const std::shared_ptr<OutputStream> stream_;
  const std::chrono::steady_clock::time_point arrival_;
  const std::function<void()> on_finished_;

  std::atomic<bool> write_in_flight_{false};
  std::atomic<bool> client_gone_{false};

  // Dispatcher thread only.
  grpc::ServerWriteReactor<v1::GenerateResponse>* reactor_ = nullptr;  // Valid until finished_.
  bool finished_ = false;  // Finish (or StartWriteAndFinish) was called.
  bool first_token_sent_ = false;
  int64_t tokens_sent_ = 0;
  v1::GenerateResponse response_;  // The message being written; untouched while in flight.
};

}  // namespace tandem::worker
