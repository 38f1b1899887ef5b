#include "kvcache/kv_leases.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

namespace tandem::kvcache {
namespace {

using std::chrono::seconds;

class KvLeasesTest : public ::testing::Test {
 protected:
  std::vector<BlockId> Take(int n) { return *pool_.Allocate(n); }
  int used() const { return pool_.num_blocks() - pool_.num_available(); }

  ManualClock clock_;
  BlockPool pool_{BlockPoolOptions{.num_blocks = 16}, nullptr, &clock_};
  KvLeases leases_{&pool_, &clock_, seconds(30), /*seed=*/7};
};

TEST_F(KvLeasesTest, ALeaseKeepsItsBlocksAfterTheirOwnerLetsGo) {
  const std::vector<BlockId> blocks = Take(3);
  const KvLease& lease = leases_.Grant(blocks, 40);
  const uint64_t id = lease.id;
  EXPECT_NE(id, 0u);
  EXPECT_EQ(lease.num_tokens, 40);
  EXPECT_EQ(lease.expires_ns, seconds(30) / std::chrono::nanoseconds(1));
  pool_.Release(blocks);  // The request that computed them is done.
  EXPECT_EQ(used(), 3);
  for (BlockId b : blocks) EXPECT_EQ(pool_.ref_count(b), 1);
  EXPECT_TRUE(leases_.Release(id).ok());
  EXPECT_EQ(used(), 0);
  EXPECT_EQ(leases_.size(), 0u);
}

TEST_F(KvLeasesTest, APeersClaimsAreCheckedNotTrusted) {
  const std::vector<BlockId> blocks = Take(2);
  const uint64_t id = leases_.Grant(blocks, 32).id;
  EXPECT_TRUE(leases_.Check(id, blocks).ok());
  EXPECT_TRUE(leases_.Check(id, std::vector<BlockId>{blocks[1]}).ok());
  // Its blocks out of order, or with a gap, are not what a pull after a prefix reads.
  EXPECT_EQ(leases_.Check(id, std::vector<BlockId>{blocks[1], blocks[0]}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(leases_.Check(id, std::vector<BlockId>{blocks[1], blocks[1]}).status().code(),
            StatusCode::kInvalidArgument);
  // Blocks the lease does not hold, in the pool's range or not.
  const std::vector<BlockId> other = Take(1);
  EXPECT_EQ(leases_.Check(id, other).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(leases_.Check(id, std::vector<BlockId>{BlockId(-1)}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(leases_.Check(id, std::vector<BlockId>{BlockId(1 << 30)}).status().code(),
            StatusCode::kInvalidArgument);
  // Unknown leases, and a lease released twice.
  EXPECT_EQ(leases_.Check(id + 1, blocks).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(leases_.Release(0).code(), StatusCode::kNotFound);
  EXPECT_TRUE(leases_.Release(id).ok());
  EXPECT_EQ(leases_.Release(id).code(), StatusCode::kNotFound);
  EXPECT_EQ(leases_.Check(id, blocks).status().code(), StatusCode::kNotFound);
  pool_.Release(blocks);
  pool_.Release(other);
  EXPECT_EQ(used(), 0);
}

TEST_F(KvLeasesTest, LeasesNeverReleasedExpireAndFreeTheirBlocks) {
  const std::vector<BlockId> a = Take(2);
  const uint64_t first = leases_.Grant(a, 20).id;
  clock_.Advance((seconds(10) / std::chrono::nanoseconds(1)));
  const std::vector<BlockId> b = Take(1);
  const uint64_t second = leases_.Grant(b, 5).id;
  pool_.Release(a);
  pool_.Release(b);
  EXPECT_EQ(leases_.next_expiry_ns(), seconds(30) / std::chrono::nanoseconds(1));
  EXPECT_EQ(leases_.ExpireDue(), 0);
  clock_.Advance(seconds(20) / std::chrono::nanoseconds(1));  // t = 30 s: the first is due.
  EXPECT_EQ(leases_.Check(first, a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(leases_.ExpireDue(), 1);
  EXPECT_EQ(used(), 1);
  EXPECT_EQ(leases_.Release(first).code(), StatusCode::kNotFound);  // Too late: gone.
  EXPECT_TRUE(leases_.Check(second, b).ok());
  clock_.Advance(seconds(10) / std::chrono::nanoseconds(1));
  EXPECT_EQ(leases_.ExpireDue(), 1);
  EXPECT_EQ(used(), 0);
  EXPECT_EQ(leases_.expired_total(), 2);
  EXPECT_FALSE(leases_.next_expiry_ns().has_value());
}

TEST_F(KvLeasesTest, LeasesStillHeldAtShutdownGiveTheirBlocksBack) {
  {
    KvLeases leases(&pool_, &clock_, seconds(30));
    const std::vector<BlockId> blocks = Take(4);
    leases.Grant(blocks, 64);
    pool_.Release(blocks);
    EXPECT_EQ(used(), 4);
  }
  EXPECT_EQ(used(), 0);
}

}  // namespace
}  // namespace tandem::kvcache
