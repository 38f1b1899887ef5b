// A test's client of Worker.SubscribeKvEvents: one call, read message by message, every message,
// snapshot part and event kept. Its deadline bounds every wait. Shared by the worker service's
// unit tests (a fake engine) and the worker daemon's integration tests.
//
// Thread safety: one thread.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "tandem/v1/worker.grpc.pb.h"

namespace tandem::testing {

class KvSubscription {
 public:
  KvSubscription(v1::Worker::Stub& stub, uint64_t from_event_id,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    ctx_.set_deadline(std::chrono::system_clock::now() + timeout);
    v1::SubscribeKvEventsRequest request;
    request.set_from_event_id(from_event_id);
    reader_ = stub.SubscribeKvEvents(&ctx_, request);
  }
  ~KvSubscription() {
    ctx_.TryCancel();
    reader_->Finish().IgnoreError();
  }

  // Reads until `done` holds (checked before each read); false when the stream ended first.
  // Every message carries a snapshot part or events, never both.
  bool ReadUntil(const std::function<bool()>& done) {
    v1::KvEventBatch batch;
    while (!done()) {
      if (!reader_->Read(&batch)) return false;
      EXPECT_TRUE(batch.has_snapshot() != (batch.events_size() > 0)) << batch.DebugString();
      messages.push_back(batch);
      if (batch.has_snapshot()) parts.push_back(batch.snapshot());
      for (const v1::KvEvent& e : batch.events()) events.push_back(e);
    }
    return true;
  }
  bool ReadEvents(size_t n) {
    return ReadUntil([&] { return events.size() >= n; });
  }
  bool ReadSnapshot() {
    return ReadUntil([&] { return !parts.empty() && parts.back().last(); });
  }

  std::vector<v1::KvEventBatch> messages;
  std::vector<v1::KvSnapshotPart> parts;
  std::vector<v1::KvEvent> events;

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::KvEventBatch>> reader_;
};

}  // namespace tandem::testing
