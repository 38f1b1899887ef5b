// InferenceService: the public gRPC tandem.v1.Inference service (proto/tandem/v1/inference.proto)
// with the HTTP API's semantics: Generate streams text deltas and token ids from a Generation;
// ListModels names the served model. A client that cancels its call cancels the request on the
// worker. With an API key, every call needs "authorization: Bearer <key>" metadata, else it
// fails with UNAUTHENTICATED (the standard grpc.health.v1 service stays open, like GET /health).
//
// Thread safety: gRPC calls the service on its callback threads; each Generate call's state
// lives on its own Asio strand, so no reactor ever blocks.
#pragma once

#include <atomic>
#include <optional>
#include <string>

#include <utility>  // Before Asio: Boost 1.74's awaitable.hpp needs std::exchange.

#include <boost/asio.hpp>
#include <grpcpp/grpcpp.h>

#include "frontend/generation.h"
#include "tandem/v1/inference.grpc.pb.h"

namespace tandem::frontend {

class InferenceService final : public v1::Inference::CallbackService {
 public:
  // `io` runs the per-call strands; it and `context`'s members outlive the service.
  InferenceService(const GenerationContext& context, boost::asio::io_context& io,
                   std::optional<std::string> api_key)
      : context_(context), io_(io), api_key_(std::move(api_key)) {}

  grpc::ServerWriteReactor<v1::InferenceGenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::InferenceGenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;

  // New Generate calls are refused with UNAVAILABLE from now on (draining).
  void StopAdmitting() { admitting_ = false; }

 private:
  // OK, or UNAUTHENTICATED when the call lacks the key.
  grpc::Status Authenticate(const grpc::CallbackServerContext& context) const;

  const GenerationContext context_;
  boost::asio::io_context& io_;
  const std::optional<std::string> api_key_;
  std::atomic<bool> admitting_{true};
};

}  // namespace tandem::frontend
