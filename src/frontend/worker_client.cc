#include "frontend/worker_client.h"

#include <utility>

namespace tandem::frontend {

std::shared_ptr<GenerateCall> GenerateCall::Start(v1::Worker::Stub& stub,
                                                  const v1::GenerateRequest& request,
                                                  Callbacks callbacks) {
  std::shared_ptr<GenerateCall> call(new GenerateCall(std::move(callbacks)));
  call->self_ = call;
  call->request_ = request;
  stub.async()->Generate(&call->context_, &call->request_, call.get());
  call->StartRead(&call->response_);
  call->StartCall();
  return call;
}

void GenerateCall::OnReadDone(bool ok) {
  if (!ok) return;  // The stream ended; OnDone follows.
  callbacks_.on_response(std::move(response_));
  response_.Clear();
  StartRead(&response_);
}

void GenerateCall::OnDone(const grpc::Status& status) {
  callbacks_.on_done(status);
  // Drop the callbacks (and what they hold) now; `self` keeps this alive until we return.
  std::shared_ptr<GenerateCall> self = std::move(self_);
  callbacks_ = {};
}

std::shared_ptr<LoadStream> LoadStream::Start(v1::Worker::Stub& stub, int interval_ms,
                                              Callbacks callbacks) {
  std::shared_ptr<LoadStream> call(new LoadStream(std::move(callbacks)));
  call->self_ = call;
  call->request_.set_interval_ms(interval_ms);
  stub.async()->StreamLoad(&call->context_, &call->request_, call.get());
  call->StartRead(&call->report_);
  call->StartCall();
  return call;
}

void LoadStream::OnReadDone(bool ok) {
  if (!ok) return;
  callbacks_.on_report(report_);
  StartRead(&report_);
}

void LoadStream::OnDone(const grpc::Status& status) {
  callbacks_.on_done(status);
  std::shared_ptr<LoadStream> self = std::move(self_);
  callbacks_ = {};
}

}  // namespace tandem::frontend
