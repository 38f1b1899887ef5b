#include "worker/lease_releaser.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "common/logging.h"

namespace tandem::worker {

struct LeaseReleaser::Call {
  grpc::ClientContext context;
  v1::ReleaseKvRequest request;
  v1::ReleaseKvResponse response;
  std::shared_ptr<v1::Worker::Stub> stub;  // Kept for the call's life.
};

LeaseReleaser::~LeaseReleaser() {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto& call : calls_) call->context.TryCancel();
  idle_.wait(lock, [&] { return calls_.empty(); });
}

std::shared_ptr<v1::Worker::Stub> LeaseReleaser::Stub(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stubs_.find(address);
  if (it != stubs_.end()) return it->second;
  if (stubs_.size() >= kMaxPeers) stubs_.clear();
  auto stub = v1::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::shared_ptr<v1::Worker::Stub> shared(std::move(stub));
  stubs_.emplace(address, shared);
  return shared;
}

void LeaseReleaser::Release(const KvSource& source, std::vector<int32_t> blocks,
                            std::function<void(const Status&)> done) {
  if (source.peer.empty()) {
    if (done) done(InvalidArgumentError("the KV source names no prefill worker to release at"));
    return;
  }
  auto call = std::make_shared<Call>();
  call->stub = Stub(source.peer);
  call->context.set_deadline(std::chrono::system_clock::now() + timeout_);
  call->request.set_lease_id(source.handle.lease_id);
  call->request.mutable_block_ids()->Add(blocks.begin(), blocks.end());
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(call);
  }
  const std::string peer = source.peer;
  const uint64_t lease = source.handle.lease_id;
  call->stub->async()->ReleaseKv(
      &call->context, &call->request, &call->response,
      [this, call, peer, lease, done = std::move(done)](grpc::Status status) {
        Status result;
        if (!status.ok()) {
          result = Status(static_cast<StatusCode>(status.error_code()), status.error_message());
        } else if (!call->response.released()) {
          result = NotFoundError("the prefill worker no longer held the lease");
        }
        if (!result.ok()) {
          spdlog::debug("kv lease not released peer={} lease={} error={}", peer, lease,
                        Quoted(result.ToString()));
        }
        if (done) done(result);
        std::lock_guard<std::mutex> lock(mu_);
        calls_.erase(std::find(calls_.begin(), calls_.end(), call));
        idle_.notify_all();
      });
}

}  // namespace tandem::worker
