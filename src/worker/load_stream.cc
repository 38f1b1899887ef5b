#include "worker/load_stream.h"

#include <utility>

#include "worker/stream_reactor.h"

namespace tandem::worker {
namespace {

using LoadReactor = StreamReactor<v1::LoadReport, LoadStream>;

}  // namespace

LoadStream::LoadStream(Dispatcher* dispatcher, std::function<v1::LoadReport()> snapshot,
                       std::chrono::milliseconds interval)
    : dispatcher_(dispatcher), snapshot_(std::move(snapshot)), interval_(interval) {}

grpc::ServerWriteReactor<v1::LoadReport>* LoadStream::Start(
    Dispatcher* dispatcher, std::function<v1::LoadReport()> snapshot,
    std::chrono::milliseconds interval) {
  auto stream = std::make_shared<LoadStream>(dispatcher, std::move(snapshot), interval);
  auto* reactor = new LoadReactor(stream);
  stream->reactor_ = reactor;
  // The first report goes out at once; each one arms the timer for the next.
  dispatcher->WakeAt(std::chrono::steady_clock::now(), stream);
  return reactor;
}

void LoadStream::OnWriteDone(bool ok) {
  write_in_flight_ = false;
  if (!ok) client_gone_ = true;
  // A cancel that arrived while this write was in flight is finished now.
  if (client_gone_) dispatcher_->Wake(shared_from_this());
}

void LoadStream::OnCancel() {
  client_gone_ = true;
  dispatcher_->Wake(shared_from_this());
}

void LoadStream::Pump() {
  if (finished_ || !client_gone_ || write_in_flight_) return;
  finished_ = true;
  reactor_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the load stream was cancelled"));
}

void LoadStream::OnTimer() {
  if (finished_) return;
  if (client_gone_) {
    Pump();
    return;
  }
  if (!write_in_flight_) {
    report_ = snapshot_();
    write_in_flight_ = true;
    reactor_->StartWrite(&report_);
  }
  dispatcher_->WakeAt(std::chrono::steady_clock::now() + interval_, weak_from_this());
}

}  // namespace tandem::worker
