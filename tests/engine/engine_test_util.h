// Helpers shared by the engine tests: build an engine on a golden model, run requests to the end.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine_factory.h"
#include "engine/llm_engine.h"

namespace tandem::engine::testing {

inline std::filesystem::path GoldenDir() {
  return std::filesystem::path(TANDEM_SOURCE_DIR) / "tests/data/golden";
}

// Every golden model directory, sorted.
std::vector<std::string> GoldenModels();

struct Completion {
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // Prompt logits when asked for.
  int logits_rows = 0;
  FinishReason finish_reason = FinishReason::kNone;
  int cached_prompt_tokens = 0;
  Status error;
  std::optional<KvHandle> kv_handle;  // A prefill_only request's.
};

// Reads a stream until its final output (fails the test after a generous deadline).
Completion Collect(OutputStream& stream);

// Submits and collects every request at once (they batch together), in order.
std::vector<Completion> RunAll(Engine& engine, const std::vector<GenerateRequest>& requests);

std::unique_ptr<LlmEngine> MakeEngine(const std::string& model_dir, BackendOptions backend = {},
                                      EngineOptions options = {});

// Polls `condition` until it holds or `timeout` passes; returns its last value. For state the
// engine thread publishes after the outputs a test has already read (stats, free blocks).
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::seconds timeout = std::chrono::seconds(10));

GenerateRequest Greedy(std::vector<int32_t> prompt, int max_tokens);

// True when the build has the cuda backend and the runtime sees a device.
bool CudaDeviceAvailable();

// Every computing backend this build registers ("cpu", and "cuda" when built with it), for suites
// instantiated per backend; a fixture skips "cuda" when CudaDeviceAvailable() is false.
std::vector<std::string> TestBackends();

}  // namespace tandem::engine::testing
