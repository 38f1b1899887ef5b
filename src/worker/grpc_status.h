// tandem::Status <-> grpc::Status. Both use the canonical codes, so the code crosses by a cast.
//
// Thread safety: pure functions.
#pragma once

#include <grpcpp/support/status.h>

#include "tandem/status.h"

namespace tandem::worker {

inline grpc::Status ToGrpcStatus(const Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

inline Status FromGrpcStatus(const grpc::Status& status) {
  return Status(static_cast<StatusCode>(status.error_code()), status.error_message());
}

}  // namespace tandem::worker
