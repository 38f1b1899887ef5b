#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "kvcache/clock.h"
#include "kvcache/eviction_policy.h"

namespace tandem::kvcache {
namespace {

class LruPolicyTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  std::unique_ptr<EvictionPolicy> policy_ = MakeLruPolicy(clock_);
};

TEST_F(LruPolicyTest, EmptyPolicyHasNoVictim) {
  EXPECT_EQ(policy_->size(), 0);
  EXPECT_EQ(policy_->Victim(), std::nullopt);
}

TEST_F(LruPolicyTest, VictimIsLeastRecentlyAdded) {
  policy_->Add(BlockId(3));
  clock_.Advance(10);
  policy_->Add(BlockId(1));
  clock_.Advance(10);
  policy_->Add(BlockId(2));
  EXPECT_EQ(policy_->size(), 3);
  EXPECT_EQ(policy_->Victim(), BlockId(3));
}

TEST_F(LruPolicyTest, TiesAreBrokenByAddOrder) {
  policy_->Add(BlockId(5));
  policy_->Add(BlockId(2));
  policy_->Add(BlockId(7));
  EXPECT_EQ(policy_->Victim(), BlockId(5));
  policy_->Remove(BlockId(5));
  EXPECT_EQ(policy_->Victim(), BlockId(2));
  policy_->Remove(BlockId(2));
  EXPECT_EQ(policy_->Victim(), BlockId(7));
}

TEST_F(LruPolicyTest, VictimDoesNotRemove) {
  policy_->Add(BlockId(0));
  EXPECT_EQ(policy_->Victim(), BlockId(0));
  EXPECT_EQ(policy_->Victim(), BlockId(0));
  EXPECT_EQ(policy_->size(), 1);
}

TEST_F(LruPolicyTest, RemoveFromMiddleKeepsOrder) {
  for (int i = 0; i < 4; ++i) {
    policy_->Add(BlockId(i));
    clock_.Advance(1);
  }
  policy_->Remove(BlockId(1));
  policy_->Remove(BlockId(2));
  EXPECT_EQ(policy_->size(), 2);
  EXPECT_EQ(policy_->Victim(), BlockId(0));
  policy_->Remove(BlockId(0));
  EXPECT_EQ(policy_->Victim(), BlockId(3));
  policy_->Remove(BlockId(3));
  EXPECT_EQ(policy_->Victim(), std::nullopt);
  EXPECT_EQ(policy_->size(), 0);
}

TEST_F(LruPolicyTest, RemoveOfUnknownBlockIsIgnored) {
  policy_->Add(BlockId(1));
  policy_->Remove(BlockId(0));
  policy_->Remove(BlockId(1000));
  policy_->Remove(BlockId(1));
  policy_->Remove(BlockId(1));  // Twice.
  EXPECT_EQ(policy_->size(), 0);
}

TEST_F(LruPolicyTest, ReaddedBlockMovesToTheBack) {
  policy_->Add(BlockId(0));
  policy_->Add(BlockId(1));
  policy_->Remove(BlockId(0));
  clock_.Advance(5);
  policy_->Add(BlockId(0));
  EXPECT_EQ(policy_->Victim(), BlockId(1));
  EXPECT_EQ(policy_->size(), 2);
}

TEST_F(LruPolicyTest, EvictsInAddOrderOverManyBlocks) {
  constexpr int kBlocks = 1000;
  // Add in a scrambled order; the victims must come back in exactly that order.
  std::vector<int> order;
  for (int i = 0; i < kBlocks; ++i) order.push_back((i * 7919) % kBlocks);
  for (int id : order) {
    policy_->Add(BlockId(id));
    clock_.Advance(1);
  }
  for (int id : order) {
    ASSERT_EQ(policy_->Victim(), BlockId(id));
    policy_->Remove(BlockId(id));
  }
  EXPECT_EQ(policy_->size(), 0);
}

}  // namespace
}  // namespace tandem::kvcache
