// gRPC client reactors for the worker service (proto/tandem/v1/worker.proto). They run on gRPC's
// callback threads and never block; their callbacks must be quick (post elsewhere).
//
// Lifetime: gRPC needs a reactor to outlive its OnDone, while the frontend may drop its interest
// earlier, so each reactor is held by a shared_ptr that it keeps to itself until OnDone has run
// (Start returns another reference for Cancel).
//
// Thread safety: Cancel may be called from any thread at any time, also after the call ended.
#pragma once

#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::frontend {

// One Worker.Generate server stream.
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  // on_response: each message, in order. on_done: once, after the last on_response.
  struct Callbacks {
    std::function<void(v1::GenerateResponse&&)> on_response;
    std::function<void(const grpc::Status&)> on_done;
  };

  static std::shared_ptr<GenerateCall> Start(v1::Worker::Stub& stub,
                                             const v1::GenerateRequest& request,
                                             Callbacks callbacks);
  // Cancels the call on the worker (which then frees the request's blocks).
  void Cancel() { context_.TryCancel(); }

 private:
  explicit GenerateCall(Callbacks callbacks) : callbacks_(std::move(callbacks)) {}
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  grpc::ClientContext context_;
  v1::GenerateRequest request_;
  v1::GenerateResponse response_;
  Callbacks callbacks_;
  std::shared_ptr<GenerateCall> self_;  // Released in OnDone.
};

// One Worker.StreamLoad server stream: load reports until the worker goes away.
class LoadStream final : public grpc::ClientReadReactor<v1::LoadReport> {
 public:
  struct Callbacks {
    std::function<void(const v1::LoadReport&)> on_report;
    std::function<void(const grpc::Status&)> on_done;
  };

  static std::shared_ptr<LoadStream> Start(v1::Worker::Stub& stub, int interval_ms,
                                           Callbacks callbacks);
  void Cancel() { context_.TryCancel(); }

 private:
  explicit LoadStream(Callbacks callbacks) : callbacks_(std::move(callbacks)) {}
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  grpc::ClientContext context_;
  v1::StreamLoadRequest request_;
  v1::LoadReport report_;
  Callbacks callbacks_;
  std::shared_ptr<LoadStream> self_;  // Released in OnDone.
};

}  // namespace tandem::frontend
