#include "worker/kv_event_stream.h"

#include <algorithm>
#include <utility>

#include "worker/stream_reactor.h"

namespace tandem::worker {
namespace {

using KvEventReactor = StreamReactor<v1::KvEventBatch, KvEventStream>;

// What an event adds to a message, near enough to keep messages about kMaxBatchBytes: 8 bytes
// per fixed64 hash plus the id, the tier and the framing.
size_t ApproxBytes(const KvEvent& event) { return 8 * event.block_hashes.size() + 24; }

void EventToProto(const KvEvent& event, v1::KvEvent* out) {
  out->set_id(event.id);
  switch (event.kind) {
    case KvEvent::Kind::kStored: {
      v1::KvStored* stored = out->mutable_stored();
      stored->set_tier(ToProto(event.tier));
      if (event.parent_hash.has_value()) {
        stored->set_has_parent(true);
        stored->set_parent_hash(*event.parent_hash);
      }
      stored->mutable_block_hashes()->Add(event.block_hashes.begin(), event.block_hashes.end());
      return;
    }
    case KvEvent::Kind::kRemoved: {
      v1::KvRemoved* removed = out->mutable_removed();
      removed->set_tier(ToProto(event.tier));
      removed->mutable_block_hashes()->Add(event.block_hashes.begin(), event.block_hashes.end());
      return;
    }
    case KvEvent::Kind::kCleared:
      out->mutable_cleared();
      return;
  }
}

}  // namespace

v1::KvTier ToProto(KvTier tier) {
  switch (tier) {
    case KvTier::kDevice:
      return v1::KV_TIER_DEVICE;
    case KvTier::kHost:
      return v1::KV_TIER_HOST;
    case KvTier::kDisk:
      return v1::KV_TIER_DISK;
  }
  return v1::KV_TIER_UNSPECIFIED;
}

KvEventStream::KvEventStream(const KvEventSource* log, Dispatcher* dispatcher,
                             WorkerMetrics* metrics, uint64_t from_event_id)
    : log_(log), dispatcher_(dispatcher), metrics_(metrics), from_event_id_(from_event_id) {}

void KvEventStream::OnWriteDone(bool ok) {
  if (!ok) client_gone_ = true;
  write_in_flight_ = false;
  dispatcher_->Wake(shared_from_this());
}

void KvEventStream::OnCancel() {
  client_gone_ = true;
  dispatcher_->Wake(shared_from_this());
}

void KvEventStream::Pump() {
  if (finished_ || write_in_flight_) return;
  if (client_gone_) {
    finished_ = true;
    reactor_->Finish(
        grpc::Status(grpc::StatusCode::CANCELLED, "the KV event stream was cancelled"));
    return;
  }
  if (!begun_) Begin();
  if (next_part_ < parts_.size()) {
    WriteSnapshotPart();
  } else {
    WriteEvents();
  }
}

// On the dispatcher rather than in the RPC method, since a snapshot may take a while to copy.
void KvEventStream::Begin() {
  begun_ = true;
  next_id_ = std::max<uint64_t>(from_event_id_, 1);
  // Ids past the newest + 1 were never made by this incarnation of the worker: what the
  // subscriber holds is another worker's state, replaced by the snapshot.
  if (next_id_ > log_->last_id() + 1) StartSnapshot(log_->TakeSnapshot());
}

void KvEventStream::StartSnapshot(KvSnapshot snapshot) {
  metrics_->CountKvSnapshot();
  snapshot_ = std::move(snapshot);
  buffered_.clear();  // Older than the snapshot, which holds their effect.
  next_id_ = snapshot_.as_of_id + 1;
  parts_.clear();
  next_part_ = 0;
  for (int t = 0; t < kNumKvTiers; ++t) {
    const size_t n = snapshot_.stored[t].size();
    for (size_t begin = 0; begin < n; begin += kMaxSnapshotPartHashes) {
      const size_t end = std::min(n, begin + kMaxSnapshotPartHashes);
      parts_.push_back({static_cast<KvTier>(t + 1), begin, end});
    }
  }
  // Nothing held: one empty part still says so, and carries last = true.
  if (parts_.empty()) parts_.push_back({KvTier::kDevice, 0, 0});
}

void KvEventStream::WriteSnapshotPart() {
  const SnapshotPart part = parts_[next_part_++];
  const std::vector<BlockHash>& hashes = snapshot_.stored[static_cast<int>(part.tier) - 1];
  message_.Clear();
  v1::KvSnapshotPart* out = message_.mutable_snapshot();
  out->set_as_of_event_id(snapshot_.as_of_id);
  out->set_tier(ToProto(part.tier));
  out->mutable_block_hashes()->Add(hashes.begin() + part.begin, hashes.begin() + part.end);
  if (next_part_ == parts_.size()) {
    out->set_last(true);
    snapshot_ = KvSnapshot();  // Sent in full: its memory goes now.
    parts_.clear();
    next_part_ = 0;
  }
  Write();
}

void KvEventStream::WriteEvents() {
  if (buffered_.size() < kMaxBatchEvents) {
    KvEventRead read = log_->Read(next_id_, kMaxBatchEvents - buffered_.size());
    if (read.snapshot.has_value()) {  // Fell behind the ring.
      StartSnapshot(std::move(*read.snapshot));
      WriteSnapshotPart();
      return;
    }
    for (KvEvent& event : read.events) buffered_.push_back(std::move(event));
    if (!buffered_.empty()) next_id_ = buffered_.back().id + 1;
  }
  if (buffered_.empty()) return;
  message_.Clear();
  size_t bytes = 0;
  int n = 0;
  while (!buffered_.empty() && static_cast<size_t>(n) < kMaxBatchEvents) {
    const size_t size = ApproxBytes(buffered_.front());
    if (n > 0 && bytes + size > kMaxBatchBytes) break;
    EventToProto(buffered_.front(), message_.add_events());
    buffered_.pop_front();
    bytes += size;
    ++n;
  }
  metrics_->AddKvEventsSent(n);
  Write();
}

void KvEventStream::Write() {
  write_in_flight_ = true;
  reactor_->StartWrite(&message_);
}

KvEventStreams::KvEventStreams(const KvEventSource* log, Dispatcher* dispatcher,
                               WorkerMetrics* metrics)
    : log_(log), dispatcher_(dispatcher), metrics_(metrics) {}

grpc::ServerWriteReactor<v1::KvEventBatch>* KvEventStreams::Subscribe(uint64_t from_event_id) {
  auto stream = std::make_shared<KvEventStream>(log_, dispatcher_, metrics_, from_event_id);
  // The reactor's OnDone runs before the server's shutdown completes, so before this object
  // goes.
  auto* reactor = new KvEventReactor(stream, [this] {
    --open_;
    metrics_->KvEventSubscriberClosed();
  });
  stream->reactor_ = reactor;  // Before the first wake: Pump reads it on the dispatcher thread.
  {
    std::lock_guard<std::mutex> lock(mu_);
    PruneLocked();
    streams_.push_back(stream);
  }
  ++open_;
  metrics_->KvEventSubscriberOpened();
  // Registered first, then woken: an append from now on pumps it, and this first pump reads
  // whatever came before. Writes started before gRPC binds the reactor wait in its backlog.
  dispatcher_->Wake(std::move(stream));
  return reactor;
}

void KvEventStreams::OnAppended() {
  if (open_.load(std::memory_order_relaxed) == 0) return;
  dispatcher_->Wake(shared_from_this());
}

void KvEventStreams::Pump() {
  std::vector<std::shared_ptr<KvEventStream>> open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    PruneLocked();
    open.reserve(streams_.size());
    for (const auto& weak : streams_) {
      if (auto stream = weak.lock()) open.push_back(std::move(stream));
    }
  }
  for (const auto& stream : open) stream->Pump();
}

void KvEventStreams::PruneLocked() {
  std::erase_if(streams_, [](const std::weak_ptr<KvEventStream>& s) { return s.expired(); });
}

}  // namespace tandem::worker
