// gRPC client reactors for the worker service's server streams (proto/tandem/v1/worker.proto):
// Generate, StreamLoad and SubscribeKvEvents; and a lease release that nobody waits for. They run
// on gRPC's callback threads and never block; their callbacks must be quick (post elsewhere).
//
// Lifetime: gRPC needs a reactor to outlive its OnDone, while the frontend may drop its interest
// earlier, so each reactor is held by a shared_ptr that it keeps to itself until OnDone has run
// (Start returns another reference for Cancel).
//
// Thread safety: Cancel may be called from any thread at any time, also after the call ended.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::frontend {

// One server-streaming call: Request in, Responses until the stream ends.
template <typename Request, typename Response>
class StreamCall final : public grpc::ClientReadReactor<Response> {
 public:
  // on_response: each message, in order. on_done: once, after the last on_response.
  struct Callbacks {
    std::function<void(Response&&)> on_response;
    std::function<void(const grpc::Status&)> on_done;
  };
  // How to start the RPC on a stub: e.g. &v1::Worker::Stub::async_interface::Generate.
  using Method = void (v1::Worker::Stub::async_interface::*)(grpc::ClientContext*, const Request*,
                                                             grpc::ClientReadReactor<Response>*);

  static std::shared_ptr<StreamCall> Start(v1::Worker::Stub& stub, Method method, Request request,
                                           Callbacks callbacks) {
    std::shared_ptr<StreamCall> call(new StreamCall(std::move(request), std::move(callbacks)));
    call->self_ = call;
    (stub.async()->*method)(&call->context_, &call->request_, call.get());
    call->StartRead(&call->response_);
    call->StartCall();
    return call;
  }

  // Cancels the call on the worker (a Generate call's request then frees its blocks).
  void Cancel() { context_.TryCancel(); }

 private:
  StreamCall(Request request, Callbacks callbacks)
      : request_(std::move(request)), callbacks_(std::move(callbacks)) {}

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream ended; OnDone follows.
    callbacks_.on_response(std::move(response_));
    response_.Clear();
    this->StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    callbacks_.on_done(status);
    // Drop the callbacks (and what they hold) now; `self` keeps this alive until we return.
    std::shared_ptr<StreamCall> self = std::move(self_);
    callbacks_ = {};
  }

  grpc::ClientContext context_;
  Request request_;
  Response response_;
  Callbacks callbacks_;
  std::shared_ptr<StreamCall> self_;  // Released in OnDone.
};

// Worker.Generate: one request's token batches.
using GenerateCall = StreamCall<v1::GenerateRequest, v1::GenerateResponse>;
// Worker.StreamLoad: load reports until the worker goes away.
using LoadStream = StreamCall<v1::StreamLoadRequest, v1::LoadReport>;
// Worker.SubscribeKvEvents: the worker's KV events (a snapshot first when needed).
using KvEventStream = StreamCall<v1::SubscribeKvEventsRequest, v1::KvEventBatch>;

inline std::shared_ptr<GenerateCall> StartGenerate(v1::Worker::Stub& stub,
                                                   v1::GenerateRequest request,
                                                   GenerateCall::Callbacks callbacks) {
  return GenerateCall::Start(stub, &v1::Worker::Stub::async_interface::Generate, std::move(request),
                             std::move(callbacks));
}

// Worker.ReleaseKv for a lease nobody will pull, without waiting for the answer (an unreleased
// lease expires anyway).
inline void ReleaseKvLease(std::shared_ptr<v1::Worker::Stub> stub, uint64_t lease_id) {
  struct Call {
    grpc::ClientContext context;
    v1::ReleaseKvRequest request;
    v1::ReleaseKvResponse response;
    std::shared_ptr<v1::Worker::Stub> stub;
  };
  auto* call = new Call;
  call->stub = std::move(stub);
  call->request.set_lease_id(lease_id);
  call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  call->stub->async()->ReleaseKv(&call->context, &call->request, &call->response,
                                 [call](const grpc::Status&) { delete call; });
}

}  // namespace tandem::frontend
