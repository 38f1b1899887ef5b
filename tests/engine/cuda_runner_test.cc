// The cuda runner's fast paths against its plain ones, on a model whose head_dim (64) takes the
// tensor-core prefill and split-KV decode kernels: device-generated random weights equal the host
// generator's; decode steps replayed from CUDA graphs equal the same steps launched directly; the
// fast attention kernels agree with the simple paged kernel within bf16 tolerance; and a
// request's greedy tokens do not depend on the batch it runs in. Skips without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>

#include "engine/cuda/cuda_model_runner.h"
#include "engine/cuda/gemm.h"
#include "engine/cuda/kernels.h"
#include "model/tensor.h"
#include "engine_test_util.h"
#include "model/model_config.h"
#include "model/weight_source.h"

namespace tandem::engine::testing {
namespace {

using cuda::CudaModelRunner;
using cuda::CudaRunnerOptions;

// A source that serves the random tensors but hides their recipe: the runner then converts and
// uploads host copies, the path real checkpoints take.
class HostOnly final : public model::WeightSource {
 public:
  explicit HostOnly(const model::WeightSource& inner) : inner_(inner) {}
  StatusOr<model::TensorView> Find(std::string_view name,
                                   std::span<const int64_t> shape) const override {
    return inner_.Find(name, shape);
  }
  bool Contains(std::string_view name) const override { return inner_.Contains(name); }

 private:
  const model::WeightSource& inner_;
};

class CudaRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
    auto config = model::BuiltinModelConfig("llama-100m");
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    ASSERT_EQ(config_.head_dim, 64);
    weights_ = model::RandomWeights(config_, 5);
  }

  std::unique_ptr<CudaModelRunner> Runner(CudaRunnerOptions options,
                                          const model::WeightSource* source = nullptr) {
    options.num_blocks = 512;
    auto runner = CudaModelRunner::Create(config_, source ? *source : *weights_, options);
    EXPECT_TRUE(runner.ok()) << runner.status();
    return runner.ok() ? std::move(runner).value() : nullptr;
  }

  std::vector<int32_t> Prompt(int n, uint32_t seed) const {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, config_.vocab_size - 1);
    std::vector<int32_t> out(n);
    for (auto& t : out) t = dist(rng);
    return out;
  }

  // Prompt logits of `prompt` (all rows), prefilled in chunks of `chunk` tokens into blocks
  // starting at `first_block`.
  std::vector<float> PromptLogits(CudaModelRunner& runner, const std::vector<int32_t>& prompt,
                                  int chunk, int first_block = 0) {
    std::vector<BlockId> table;
    for (int b = 0; b * 16 < static_cast<int>(prompt.size()); ++b) {
      table.push_back(BlockId(first_block + b));
    }
    std::vector<float> logits;
    for (size_t start = 0; start < prompt.size(); start += chunk) {
      const size_t n = std::min<size_t>(chunk, prompt.size() - start);
      SequenceStep step;
      step.tokens = std::span<const int32_t>(prompt).subspan(start, n);
      step.start_pos = static_cast<int64_t>(start);
      step.block_table = table;
      step.logits_from = 0;
      std::vector<SequenceResult> results;
      const Status s = runner.Execute({&step, 1}, &results);
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) return {};
      logits.insert(logits.end(), results[0].logits.begin(), results[0].logits.end());
    }
    return logits;
  }

  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
};

double MaxRelError(const std::vector<float>& got, const std::vector<float>& ref) {
  EXPECT_EQ(got.size(), ref.size());
  float max_ref = 0, max_err = 0;
  for (size_t i = 0; i < std::min(got.size(), ref.size()); ++i) {
    if (std::isnan(got[i])) return INFINITY;
    max_ref = std::max(max_ref, std::abs(ref[i]));
    max_err = std::max(max_err, std::abs(got[i] - ref[i]));
  }
  return max_ref > 0 ? max_err / max_ref : INFINITY;
}

// `count` bf16 values uniform in [-scale, scale), on the device.
cuda::DeviceBuffer UploadBf16(size_t count, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<uint16_t> host(count);
  for (auto& v : host) v = model::F32ToBf16(scale * dist(rng));
  auto buf = cuda::DeviceBuffer::Create(count * 2);
  EXPECT_TRUE(buf.ok());
  EXPECT_EQ(cudaMemcpy(buf->data(), host.data(), count * 2, cudaMemcpyHostToDevice), cudaSuccess);
  return std::move(buf).value();
}

// The skinny kernel against cuBLASLt on the same operands, and a row's result independent of m.
TEST(SkinnyGemmTest, MatchesCublasAndIsBatchInvariant) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto gemm = cuda::Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (const auto& [n, k] : {std::pair{1000, 4096}, std::pair{4099, 40}, std::pair{24, 14336}}) {
    std::mt19937 rng(n + k);
    const auto upload = [&](size_t count, float scale) { return UploadBf16(count, scale, rng); };
    const auto a = upload(size_t{8} * k, 1.0f);
    const auto w = upload(static_cast<size_t>(n) * k, 0.05f);
    auto out = cuda::DeviceBuffer::Create(size_t{8} * n * 4);
    ASSERT_TRUE(out.ok());
    const auto run = [&](int m, bool skinny) {
      EXPECT_EQ(cudaMemset(out->data(), 0xff, size_t{8} * n * 4), cudaSuccess);  // NaN poison
      const Status s = skinny ? (*gemm)->RunRows(a.data(), w.data(), out->data(), m, m, n, k,
                                                 cuda::GemmOut::kF32, nullptr)
                              : (*gemm)->Run(a.data(), w.data(), out->data(), m, n, k,
                                             cuda::GemmOut::kF32, nullptr);
      EXPECT_TRUE(s.ok()) << s;
      std::vector<float> host(static_cast<size_t>(m) * n);
      EXPECT_EQ(cudaMemcpy(host.data(), out->data(), host.size() * 4, cudaMemcpyDeviceToHost),
                cudaSuccess);
      return host;
    };
    const auto ref = run(8, false);
    const auto got = run(8, true);
    EXPECT_LE(MaxRelError(got, ref), 1e-3) << "n " << n << " k " << k;
    const auto one = run(1, true);
    EXPECT_TRUE(std::equal(one.begin(), one.end(), got.begin())) << "row 0 depends on m";
    const auto five = run(5, true);
    EXPECT_TRUE(std::equal(five.begin(), five.end(), got.begin())) << "rows depend on m";
  }
}

// The SiLU-gated skinny product (decode steps' gate_up and SiLU in one kernel) gives the bits of
// the separate skinny product and SiLU kernel, for any m; other steps are left to the caller.
TEST(SkinnyGemmTest, SiluGatedEqualsProductThenSilu) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  auto gemm = cuda::Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (const auto& [inter, k] : {std::pair{1000, 4096}, std::pair{20, 40}}) {
    std::mt19937 rng(inter + k);
    const auto upload = [&](size_t count, float scale) { return UploadBf16(count, scale, rng); };
    const auto a = upload(size_t{8} * k, 1.0f);
    const auto w = upload(size_t{2} * inter * k, 0.05f);
    auto gate_up = cuda::DeviceBuffer::Create(size_t{8} * 2 * inter * 2);
    auto act = cuda::DeviceBuffer::Create(size_t{8} * inter * 2);
    ASSERT_TRUE(gate_up.ok() && act.ok());
    const auto read = [&](int m) {
      std::vector<uint16_t> host(static_cast<size_t>(m) * inter);
      EXPECT_EQ(cudaMemcpy(host.data(), act->data(), host.size() * 2, cudaMemcpyDeviceToHost),
                cudaSuccess);
      return host;
    };
    for (int m : {1, 3, 8}) {
      ASSERT_TRUE((*gemm)->RunRows(a.data(), w.data(), gate_up->data(), m, m, 2 * inter, k,
                                   cuda::GemmOut::kBf16, nullptr)
                      .ok());
      ASSERT_EQ(cuda::LaunchSiluMul(
                    {gate_up->as<__nv_bfloat16>(), act->as<__nv_bfloat16>(), m, inter}, nullptr),
                cudaSuccess);
      const auto ref = read(m);
      ASSERT_EQ(cudaMemset(act->data(), 0xff, act->size()), cudaSuccess);
      auto fused = (*gemm)->TryRunSiluGated(a.data(), w.data(), act->data(), m, m, inter, k,
                                            nullptr);
      ASSERT_TRUE(fused.ok()) << fused.status();
      ASSERT_TRUE(*fused) << "m " << m;
      EXPECT_EQ(read(m), ref) << "inter " << inter << " k " << k << " m " << m;
    }
    // A step with rows of several tokens, or more rows than the skinny kernel takes: not taken.
    auto mixed = (*gemm)->TryRunSiluGated(a.data(), w.data(), act->data(), 8, 4, inter, k, nullptr);
    ASSERT_TRUE(mixed.ok());
    EXPECT_FALSE(*mixed);
  }
}

TEST_F(CudaRunnerTest, DeviceGeneratedWeightsEqualHostOnes) {
  HostOnly host(*weights_);
  auto device_runner = Runner({});
  auto host_runner = Runner({}, &host);
  ASSERT_TRUE(device_runner && host_runner);
  const auto prompt = Prompt(40, 1);
  const auto a = PromptLogits(*device_runner, prompt, 40);
  const auto b = PromptLogits(*host_runner, prompt, 40);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b) << "max rel error " << MaxRelError(a, b);
}

TEST_F(CudaRunnerTest, FastAttentionAgreesWithSimpleKernel) {
  CudaRunnerOptions simple;
  simple.fast_attention = false;
  auto fast_runner = Runner({});
  auto simple_runner = Runner(simple);
  ASSERT_TRUE(fast_runner && simple_runner);
  for (int chunk : {300, 77}) {
    const auto prompt = Prompt(300, 2);
    const auto fast = PromptLogits(*fast_runner, prompt, chunk);
    const auto ref = PromptLogits(*simple_runner, prompt, chunk);
    const double err = MaxRelError(fast, ref);
    std::printf("fast vs simple attention, chunk %d: max rel error %.3g\n", chunk, err);
    EXPECT_LE(err, 2e-2);
  }
  // Chunking does not change the fast path's numbers beyond rounding of the chunk's GEMMs.
  const auto prompt = Prompt(300, 3);
  const double err =
      MaxRelError(PromptLogits(*fast_runner, prompt, 64), PromptLogits(*fast_runner, prompt, 300));
  EXPECT_LE(err, 2e-2);
}

// Prefills `n` sequences of different lengths, then runs `steps` decode steps of all of them with
// seeded sampling and logprobs; returns every sampled token and logprob in order.
std::vector<std::pair<int32_t, float>> DecodeRun(CudaModelRunner& runner, int n, int steps,
                                                 int vocab) {
  SamplingParams params;
  params.temperature = 0.8f;
  params.top_p = 0.9f;
  params.top_k = 40;
  params.logprobs = true;
  params.top_logprobs = 3;
  std::vector<std::vector<int32_t>> tokens(n);
  std::vector<std::vector<BlockId>> tables(n);
  std::mt19937 rng(11);
  for (int s = 0; s < n; ++s) {
    const int len = 5 + 37 * s;
    for (int i = 0; i < len; ++i) tokens[s].push_back(static_cast<int32_t>(rng() % vocab));
    for (int b = 0; b < (len + steps + 15) / 16; ++b) tables[s].push_back(BlockId(s * 32 + b));
  }
  std::vector<std::pair<int32_t, float>> out;
  std::vector<SequenceResult> results;
  std::vector<int> prompt_len(n);
  for (int s = 0; s < n; ++s) prompt_len[s] = static_cast<int>(tokens[s].size());
  for (int step = 0; step <= steps; ++step) {
    std::vector<SequenceStep> batch(n);
    for (int s = 0; s < n; ++s) {
      SequenceStep& q = batch[s];
      const int done = step == 0 ? 0 : static_cast<int>(tokens[s].size()) - 1;
      q.tokens = std::span<const int32_t>(tokens[s]).subspan(done);
      q.start_pos = done;
      q.block_table = tables[s];
      q.logits_from = static_cast<int>(q.tokens.size());
      q.sample = true;
      q.sampling.params = &params;
      q.sampling.prompt_tokens = std::span<const int32_t>(tokens[s]).first(prompt_len[s]);
      q.sampling.output_tokens = std::span<const int32_t>(tokens[s]).subspan(prompt_len[s]);
      q.sampling.seed = 1000 + s;
    }
    const Status status = runner.Execute(batch, &results);
    EXPECT_TRUE(status.ok()) << status;
    if (!status.ok()) return out;
    for (int s = 0; s < n; ++s) {
      out.emplace_back(results[s].sampled.token, results[s].sampled.logprob);
      tokens[s].push_back(results[s].sampled.token);
    }
  }
  return out;
}

TEST_F(CudaRunnerTest, GraphStepsEqualDirectLaunches) {
  CudaRunnerOptions eager;
  eager.cuda_graphs = false;
  auto graph_runner = Runner({});
  auto eager_runner = Runner(eager);
  ASSERT_TRUE(graph_runner && eager_runner);
  for (int n : {1, 3, 13}) {
    const auto a = DecodeRun(*graph_runner, n, 12, config_.vocab_size);
    const auto b = DecodeRun(*eager_runner, n, 12, config_.vocab_size);
    EXPECT_EQ(a, b) << "batch " << n;
  }
  EXPECT_GT(graph_runner->num_graphs(), 0);
  EXPECT_EQ(eager_runner->num_graphs(), 0);
}

TEST_F(CudaRunnerTest, GreedyTokensDoNotDependOnTheBatch) {
  BackendOptions backend;
  backend.backend = "cuda";
  backend.num_blocks = 1024;
  EngineOptions options;
  options.enable_prefix_caching = false;  // each run computes its prompt in full
  auto engine = MakeEngine("builtin:llama-100m", backend, options);
  ASSERT_NE(engine, nullptr);
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 6; ++i) {
    GenerateRequest r = Greedy(Prompt(3 + 29 * i, 20 + i), 24);
    r.sampling.ignore_eos = true;
    requests.push_back(std::move(r));
  }
  const auto batched = RunAll(*engine, requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto alone = RunAll(*engine, {requests[i]});
    ASSERT_TRUE(alone[0].error.ok()) << alone[0].error;
    EXPECT_EQ(alone[0].tokens, batched[i].tokens) << "request " << i;
  }
}

}  // namespace
}  // namespace tandem::engine::testing
