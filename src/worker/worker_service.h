// tandem.v1.Worker on gRPC's callback API, in front of one engine (ARCHITECTURE §1, §3), which
// it sees only through the tandem::Engine interface.
//
// Generate submits to the engine (non-blocking) and hands the request's stream to the
// dispatcher thread, which batches ready tokens into messages and starts each write when the
// previous one is done (generate_call.h). StreamLoad is paced by dispatcher timers.
// SubscribeKvEvents is woken by the engine's KV event log (kv_event_stream.h). No reactor ever
// blocks. Draining refuses new Generate calls with UNAVAILABLE and lets open ones finish.
//
// Thread safety: the RPC methods run on gRPC threads; StartDrain, WaitIdle, CancelAll and
// LoadSnapshot may be called from any thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <absl/base/thread_annotations.h>
#include <grpcpp/grpcpp.h>

#include "tandem/engine.h"
#include "tandem/kv_events.h"
#include "tandem/transfer.h"
#include "tandem/v1/worker.grpc.pb.h"
#include "worker/dispatcher.h"
#include "worker/kv_event_stream.h"
#include "worker/worker_metrics.h"

namespace tandem::worker {

struct WorkerServiceOptions {
  std::string worker_id;  // Reported by GetInfo.
  std::string model;      // The model as the operator named it, reported by GetInfo.
  v1::WorkerRole role = v1::WORKER_ROLE_AGGREGATED;  // Reported by GetInfo.
  // How often engine stats refresh the gauges.
  std::chrono::milliseconds stats_interval{100};
  // Where the engine's KV pool is registered for peers' one-sided reads (disaggregation); null:
  // nowhere. Outlives the service.
  transfer::Backend* transfer = nullptr;
  // Decode: a mock prefill worker's KV (no memory behind it) is "pulled" at this rate, in
  // simulated time (divided by the mock's speedup); 0: such a source is recomputed.
  double simulated_transfer_bytes_per_second = 0;
  double simulated_speedup = 1.0;
  // Deadline of one KV pull's reads.
  std::chrono::milliseconds pull_timeout{10000};
};

class WorkerService final : public v1::Worker::CallbackService {
 public:
  // `engine` and `metrics` must outlive the service, and the gRPC server must be shut down (every
  // call done) before the service is destroyed.
  WorkerService(Engine* engine, WorkerMetrics* metrics, WorkerServiceOptions options);
  ~WorkerService() override;

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* context,
                                   const v1::CancelRequest* request,
                                   v1::CancelResponse* response) override;
  grpc::ServerUnaryReactor* ReleaseKv(grpc::CallbackServerContext* context,
                                      const v1::ReleaseKvRequest* request,
                                      v1::ReleaseKvResponse* response) override;
  grpc::ServerUnaryReactor* GetInfo(grpc::CallbackServerContext* context,
                                    const v1::GetInfoRequest* request,
                                    v1::WorkerInfo* response) override;
  grpc::ServerWriteReactor<v1::LoadReport>* StreamLoad(
      grpc::CallbackServerContext* context, const v1::StreamLoadRequest* request) override;
  grpc::ServerWriteReactor<v1::KvEventBatch>* SubscribeKvEvents(
      grpc::CallbackServerContext* context, const v1::SubscribeKvEventsRequest* request) override;

  // From now on Generate answers UNAVAILABLE; open calls go on.
  void StartDrain();
  // Waits until no Generate call is open or `deadline` passes; true when none is open.
  bool WaitIdle(std::chrono::steady_clock::time_point deadline);
  // Cancels the engine request of every open Generate call; each stream then ends with
  // finished = true and FINISH_REASON_CANCELLED. Returns how many were open.
  int CancelAll();

  // Registers the engine's KV pool with options.transfer (nothing without one, or for an engine
  // without KV memory); its descriptor is then reported by GetInfo and in KV handles. Gives the
  // engine (unless it only prefills) the KvPuller that decode requests pull through.
  Status RegisterKvMemory();

  int active_requests() const;
  v1::LoadReport LoadSnapshot() const;

 private:
  class StatsTask;

  // The engine's pool with options.transfer.
  Status RegisterPool();
  void OnGenerateFinished(RequestId engine_id, const std::string& request_id);
  void OnGenerateDone(RequestId engine_id);

  Engine* const engine_;
  WorkerMetrics* const metrics_;
  const WorkerServiceOptions options_;
  std::unique_ptr<transfer::Registration> kv_registration_;  // Set before serving.

  mutable std::mutex mu_;
  std::condition_variable idle_cv_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  // Open Generate calls: engine id -> the caller's request id, and the reverse for Cancel.
  std::unordered_map<RequestId, std::string> open_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, RequestId> by_request_id_ ABSL_GUARDED_BY(mu_);

  // Last: the dispatcher thread and its periodic task use the fields above; destroying the
  // dispatcher first stops them. Shared: queued dispatcher wakes hold them too.
  std::shared_ptr<StatsTask> stats_task_;
  std::shared_ptr<KvEventStreams> kv_streams_;
  Dispatcher dispatcher_;
  // After the dispatcher, so removed before it: no KV event append wakes a dispatcher that is
  // going away.
  KvEventListener kv_listener_;
};

}  // namespace tandem::worker
