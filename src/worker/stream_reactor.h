// The one lifetime idiom of the worker's server-streaming calls (Generate, StreamLoad,
// SubscribeKvEvents). gRPC owns the reactor from the RPC method's return until OnDone, when it
// deletes itself, as the callback API requires. The call's state lives in a shared `Call` object
// held by the reactor and by queued dispatcher wakes, so it outlives the reactor when a wake is
// still queued; the reactor only forwards gRPC's reactions to it.
//
// Thread safety: the reactions run on gRPC threads; `Call::OnWriteDone(bool)` and
// `Call::OnCancel()` must only set flags and wake the dispatcher.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include <grpcpp/grpcpp.h>

namespace tandem::worker {

template <typename Response, typename Call>
class StreamReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  // `on_done` (may be empty) runs on a gRPC thread once the RPC is over.
  explicit StreamReactor(std::shared_ptr<Call> call, std::function<void()> on_done = {})
      : call_(std::move(call)), on_done_(std::move(on_done)) {}

  void OnWriteDone(bool ok) override { call_->OnWriteDone(ok); }
  void OnCancel() override { call_->OnCancel(); }
  void OnDone() override {
    if (on_done_) on_done_();
    delete this;
  }

 private:
  std::shared_ptr<Call> call_;
  std::function<void()> on_done_;
};

}  // namespace tandem::worker
