// Typed identifiers shared across components. A BlockId is never confused with a RequestId.
//
// Thread safety: value types.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace tandem {

template <typename Tag, typename Rep>
class TypedId {
 public:
  using rep_type = Rep;
  constexpr TypedId() = default;
  constexpr explicit TypedId(Rep value) : value_(value) {}
  constexpr Rep value() const { return value_; }
  friend constexpr auto operator<=>(const TypedId&, const TypedId&) = default;

 private:
  Rep value_{};
};

// Index of a KV block in one worker's device (G1) pool.
using BlockId = TypedId<struct BlockIdTag, int32_t>;
// A request, unique within one engine.
using RequestId = TypedId<struct RequestIdTag, uint64_t>;
// A worker daemon, unique within a cluster.
using WorkerId = TypedId<struct WorkerIdTag, uint64_t>;

}  // namespace tandem

template <typename Tag, typename Rep>
struct std::hash<tandem::TypedId<Tag, Rep>> {
  size_t operator()(const tandem::TypedId<Tag, Rep>& id) const noexcept {
    return std::hash<Rep>()(id.value());
  }
};
