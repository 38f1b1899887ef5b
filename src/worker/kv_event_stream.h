// SubscribeKvEvents (ARCHITECTURE §3 "KV events"): a worker's KV events streamed to a subscriber
// (a frontend's router), driven by the dispatcher like every other stream of the worker.
//
// KvEventStream is one call. It sends the events from the asked-for id on (0 or 1: from the
// start). When that id has left the ring, or lies beyond the newest id + 1 (the subscriber knew a
// previous incarnation of the worker), it first sends a snapshot of every hash each tier holds,
// in KvSnapshotPart messages of at most kMaxSnapshotPartHashes hashes (one part without hashes
// when the worker holds nothing, so that a part with last = true always arrives), then the events
// from as_of_event_id + 1. Events are batched: every event available when a write can start goes
// into one KvEventBatch (at most kMaxBatchEvents events, about kMaxBatchBytes). While a write is
// in flight nothing else starts, so a slow reader gets bigger batches and the engine never waits
// for it; a reader so far behind that its next id has left the ring gets a snapshot again.
//
// KvEventStreams is the set of open calls of one worker, and the worker's one listener on its
// event log: an append wakes it on the dispatcher (only while a call is open; wakes merge while
// one is queued) and it pumps every open call. No timer, no polling: a worker without events or
// without subscribers costs nothing.
//
// Thread safety: OnWriteDone and OnCancel run on gRPC threads and only set atomics and wake the
// dispatcher; Pump runs on the dispatcher thread and alone touches the message and the reactor.
// KvEventStreams::Subscribe runs on gRPC threads, OnAppended on whichever thread appends an event.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include <absl/base/thread_annotations.h>
#include <grpcpp/grpcpp.h>

#include "tandem/kv_events.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "worker/dispatcher.h"
#include "worker/worker_metrics.h"

namespace tandem::worker {

inline constexpr size_t kMaxSnapshotPartHashes = 65536;
inline constexpr size_t kMaxBatchEvents = 4096;
inline constexpr size_t kMaxBatchBytes = size_t{1} << 20;

v1::KvTier ToProto(KvTier tier);

class KvEventStream final : public Pumped, public std::enable_shared_from_this<KvEventStream> {
 public:
  // `log`, `dispatcher` and `metrics` outlive the call.
  KvEventStream(const KvEventSource* log, Dispatcher* dispatcher, WorkerMetrics* metrics,
                uint64_t from_event_id);

  // Writes the next snapshot part or batch of events when no write is in flight; finishes the
  // call once the client is gone.
  void Pump() override;

  // Reactions, forwarded by the reactor from gRPC threads.
  void OnWriteDone(bool ok);
  void OnCancel();

 private:
  friend class KvEventStreams;  // Sets reactor_ before the first wake.

  // Which part of the snapshot's hashes one message carries.
  struct SnapshotPart {
    KvTier tier;
    size_t begin, end;  // Into snapshot_.stored[tier - 1].
  };

  void Begin();
  void StartSnapshot(KvSnapshot snapshot);
  void WriteSnapshotPart();
  void WriteEvents();
  void Write();

  const KvEventSource* const log_;
  Dispatcher* const dispatcher_;
  WorkerMetrics* const metrics_;
  const uint64_t from_event_id_;

  std::atomic<bool> write_in_flight_{false};
  std::atomic<bool> client_gone_{false};

  // Dispatcher thread only.
  grpc::ServerWriteReactor<v1::KvEventBatch>* reactor_ = nullptr;  // Valid until finished_.
  bool begun_ = false;
  bool finished_ = false;
  uint64_t next_id_ = 1;          // The first id not yet read from the log.
  std::deque<KvEvent> buffered_;  // Read from the log, not yet sent: ids up to next_id_ - 1.
  KvSnapshot snapshot_;           // The snapshot being sent, while parts_ is not empty.
  std::vector<SnapshotPart> parts_;
  size_t next_part_ = 0;
  v1::KvEventBatch message_;  // The message being written; untouched while in flight.
};

class KvEventStreams final : public Pumped, public std::enable_shared_from_this<KvEventStreams> {
 public:
  // `log`, `dispatcher` and `metrics` outlive this object and every call it starts. The owner
  // installs OnAppended as the log's listener (KvEventListener) and removes it before the
  // dispatcher goes.
  KvEventStreams(const KvEventSource* log, Dispatcher* dispatcher, WorkerMetrics* metrics);

  // Starts a call from `from_event_id`; returns the reactor to hand to gRPC.
  grpc::ServerWriteReactor<v1::KvEventBatch>* Subscribe(uint64_t from_event_id);

  // The log's listener: wakes the dispatcher when a call is open. Never blocks (one atomic load
  // when no call is open; the dispatcher's queue lock otherwise).
  void OnAppended();

  // Pumps every open call (dispatcher thread).
  void Pump() override;

 private:
  void PruneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const KvEventSource* const log_;
  Dispatcher* const dispatcher_;
  WorkerMetrics* const metrics_;
  std::atomic<int> open_{0};  // Calls not yet done.
  std::mutex mu_;
  std::vector<std::weak_ptr<KvEventStream>> streams_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::worker
