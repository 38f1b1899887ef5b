// LRU as an intrusive doubly linked list threaded through a vector indexed by block id: block ids
// are dense (0 .. pool size), so no hash map is needed and every operation is O(1) (amortized for
// the vector's growth on first sight of a large id).
//
// The list is kept ordered by (time added, order added). With a monotonic clock a new entry always
// goes to the tail; the backward walk in Add() only matters for a clock that steps back (a test's
// ManualClock cannot, SystemClock is steady), and keeps the order correct then.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "common/status_macros.h"
#include "kvcache/eviction_policy.h"

namespace tandem::kvcache {
namespace {

class LruPolicy final : public EvictionPolicy {
 public:
  explicit LruPolicy(const Clock& clock) : clock_(clock) {}

  void Add(BlockId block) override {
    const int32_t id = block.value();
    TANDEM_CHECK(id >= 0);
    if (static_cast<size_t>(id) >= nodes_.size()) nodes_.resize(static_cast<size_t>(id) + 1);
    if (nodes_[id].linked) Unlink(id);  // Adding again refreshes the block's position.
    Node& node = nodes_[id];
    node.added_nanos = clock_.NowNanos();
    node.linked = true;
    // Insert after the last entry not newer than this one (the tail, for a monotonic clock).
    int32_t after = tail_;
    while (after != kNil && nodes_[after].added_nanos > node.added_nanos) {
      after = nodes_[after].prev;
    }
    node.prev = after;
    node.next = after == kNil ? head_ : nodes_[after].next;
    if (node.prev == kNil) {
      head_ = id;
    } else {
      nodes_[node.prev].next = id;
    }
    if (node.next == kNil) {
      tail_ = id;
    } else {
      nodes_[node.next].prev = id;
    }
    ++size_;
  }

  void Remove(BlockId block) override {
    const int32_t id = block.value();
    if (id < 0 || static_cast<size_t>(id) >= nodes_.size() || !nodes_[id].linked) return;
    Unlink(id);
  }

  std::optional<BlockId> Victim() const override {
    if (head_ == kNil) return std::nullopt;
    return BlockId(head_);
  }

  int size() const override { return size_; }

 private:
  static constexpr int32_t kNil = -1;

  struct Node {
    int32_t prev = kNil;
    int32_t next = kNil;
    int64_t added_nanos = 0;
    bool linked = false;
  };

  void Unlink(int32_t id) {
    Node& node = nodes_[id];
    if (node.prev == kNil) {
      head_ = node.next;
    } else {
      nodes_[node.prev].next = node.next;
    }
    if (node.next == kNil) {
      tail_ = node.prev;
    } else {
      nodes_[node.next].prev = node.prev;
    }
    node = Node();
    --size_;
  }

  const Clock& clock_;
  std::vector<Node> nodes_;
  int32_t head_ = kNil;  // Least recently added: the next victim.
  int32_t tail_ = kNil;
  int size_ = 0;
};

}  // namespace

std::unique_ptr<EvictionPolicy> MakeLruPolicy(const Clock& clock) {
  return std::make_unique<LruPolicy>(clock);
}

}  // namespace tandem::kvcache
