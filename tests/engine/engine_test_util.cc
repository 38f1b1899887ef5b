#include "engine_test_util.h"

#include <algorithm>
#include <thread>

#ifdef TANDEM_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace tandem::engine::testing {

std::vector<std::string> GoldenModels() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(GoldenDir())) {
    if (entry.is_directory()) names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

Completion Collect(OutputStream& stream) {
  Completion c;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (true) {
    std::optional<RequestOutput> out = stream.Pop(deadline);
    if (!out) {
      ADD_FAILURE() << "request did not finish within its deadline";
      c.error = DeadlineExceededError("timeout");
      return c;
    }
    for (const auto& t : out->tokens) c.tokens.push_back(t.token);
    if (out->logits_rows > 0) {
      c.logits = std::move(out->logits);
      c.logits_rows = out->logits_rows;
    }
    if (out->finished) {
      c.finish_reason = out->finish_reason;
      c.cached_prompt_tokens = out->cached_prompt_tokens;
      c.error = out->error;
      c.kv_handle = std::move(out->kv_handle);
      return c;
    }
  }
}

std::vector<Completion> RunAll(Engine& engine, const std::vector<GenerateRequest>& requests) {
  std::vector<std::shared_ptr<OutputStream>> streams;
  for (const auto& r : requests) {
    auto submitted = engine.Submit(r);
    EXPECT_TRUE(submitted.ok()) << submitted.status();
    if (!submitted.ok()) return {};
    streams.push_back(submitted->second);
  }
  std::vector<Completion> out;
  for (auto& s : streams) out.push_back(Collect(*s));
  return out;
}

std::unique_ptr<LlmEngine> MakeEngine(const std::string& model_dir, BackendOptions backend,
                                      EngineOptions options) {
  ModelSpec spec;
  spec.model = model_dir;
  auto engine = CreateEngine(spec, backend, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(engine).value() : nullptr;
}

bool WaitUntil(const std::function<bool()>& condition, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

GenerateRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt_tokens = std::move(prompt);
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

bool CudaDeviceAvailable() {
#ifdef TANDEM_HAVE_CUDA
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
#else
  return false;
#endif
}

std::vector<std::string> TestBackends() {
  // The mock computes nothing (no logits to compare): mock_test covers it.
  std::vector<std::string> backends;
  for (const std::string& name : AvailableBackends()) {
    if (name != "mock") backends.push_back(name);
  }
  return backends;
}

}  // namespace tandem::engine::testing
