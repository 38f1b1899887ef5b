#include "router/discovery.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

namespace tandem::router {
namespace {

TEST(ParseEndpointsTest, SplitsOnCommas) {
  auto eps = ParseEndpoints("127.0.0.1:5000,localhost:6000", "--workers");
  ASSERT_TRUE(eps.ok()) << eps.status();
  EXPECT_EQ(*eps, (std::vector<std::string>{"127.0.0.1:5000", "localhost:6000"}));
  EXPECT_EQ(ParseEndpoints("[::1]:5000", "--workers")->at(0), "[::1]:5000");
}

TEST(ParseEndpointsTest, RejectsMalformedItemsNamingTheOption) {
  for (const char* bad : {"", "host", "host:", ":80", "host:0", "host:70000", "host:8x", "a:1,",
                          "a:1,,b:2", "a:1,a:1"}) {
    SCOPED_TRACE(bad);
    auto eps = ParseEndpoints(bad, "--workers");
    ASSERT_FALSE(eps.ok());
    EXPECT_EQ(eps.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(eps.status().message().find("--workers"), std::string::npos);
  }
}

TEST(ParseWorkersFileTest, SkipsCommentsAndBlankLines) {
  auto eps = ParseWorkersFile("# the cluster\n\n  a:1  # first\nb:2\r\n", "w.txt");
  ASSERT_TRUE(eps.ok()) << eps.status();
  EXPECT_EQ(*eps, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_TRUE(ParseWorkersFile("", "w.txt")->empty());
}

TEST(ParseWorkersFileTest, ErrorsNameTheFileAndLine) {
  auto eps = ParseWorkersFile("a:1\n\nb:99999\n", "w.txt");
  ASSERT_FALSE(eps.ok());
  EXPECT_NE(eps.status().message().find("w.txt:3"), std::string::npos) << eps.status();
  eps = ParseWorkersFile("a:1\na:1\n", "w.txt");
  ASSERT_FALSE(eps.ok());
  EXPECT_NE(eps.status().message().find("w.txt:2: duplicate"), std::string::npos) << eps.status();
}

// Records what a discovery reports.
class Recorder final : public DiscoveryListener {
 public:
  void OnWorkerAdded(const WorkerEndpoint& w) override {
    std::lock_guard lock(mu_);
    workers_.insert(w.name);
    EXPECT_EQ(w.name, w.address);
    cv_.notify_all();
  }
  void OnWorkerRemoved(const std::string& name) override {
    std::lock_guard lock(mu_);
    EXPECT_EQ(workers_.erase(name), 1u);
    cv_.notify_all();
  }
  bool WaitFor(const std::set<std::string>& want) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(5), [&] { return workers_ == want; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> workers_;
};

TEST(DiscoveryTest, StaticListReportsItsWorkersAtStart) {
  Recorder r;
  auto d = CreateStaticDiscovery({"a:1", "b:2"});
  ASSERT_TRUE(d->Start(&r).ok());
  EXPECT_TRUE(r.WaitFor({"a:1", "b:2"}));
  d->Stop();
}

class FileDiscoveryTest : public ::testing::Test {
 protected:
  void Write(const std::string& text) {
    // Through a rename, as an operator's editor or a config tool would.
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);
  }
  std::string path_ = (std::filesystem::temp_directory_path() /
                       ("tandem_workers_" + std::to_string(::getpid()) + ".txt"))
                          .string();
  void TearDown() override { std::filesystem::remove(path_); }
};

TEST_F(FileDiscoveryTest, FollowsTheFileAsItChanges) {
  Write("a:1\n");
  Recorder r;
  auto d = CreateFileDiscovery(path_, std::chrono::milliseconds(20));
  ASSERT_TRUE(d->Start(&r).ok());
  EXPECT_TRUE(r.WaitFor({"a:1"}));
  Write("a:1\nb:2\n");
  EXPECT_TRUE(r.WaitFor({"a:1", "b:2"}));
  Write("b:2\n");
  EXPECT_TRUE(r.WaitFor({"b:2"}));
  // A broken file, or none, leaves the workers as they were; a good one is followed again.
  Write("b:2\nnot an endpoint\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::filesystem::remove(path_);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(r.WaitFor({"b:2"}));
  Write("c:3\n");
  EXPECT_TRUE(r.WaitFor({"c:3"}));
  d->Stop();
}

TEST_F(FileDiscoveryTest, AMissingOrBadFileFailsStart) {
  Recorder r;
  auto d = CreateFileDiscovery(path_ + ".absent");
  EXPECT_FALSE(d->Start(&r).ok());
  Write("x\n");
  d = CreateFileDiscovery(path_);
  Status s = d->Start(&r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(":1"), std::string::npos) << s;
}

}  // namespace
}  // namespace tandem::router
