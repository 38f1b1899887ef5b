#!/usr/bin/env bash
# The cuda backend's correctness checks on the GPU machine (issue 5): build, the gpu-labelled
# tests, compute-sanitizer memcheck over cuda_golden_test, and a `tandem run --backend cuda`
# smoke run. Logs under $OUT (or /tmp/gpu_check); the summary table is printed last.
# Usage (device tool, carry .carry_gpu): scripts/gpu_check.sh
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
b=/tmp/b
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
cmake -S . -B $b -G Ninja -DTANDEM_SERVICES=OFF -DTANDEM_TOKENIZERS=OFF -DTANDEM_BUILD_BENCH=OFF \
  -DTANDEM_EXTRA_INCLUDE="$PWD/.carry_gpu/include" -DCMAKE_BUILD_TYPE=Release >"$out/build.log" 2>&1 &&
  cmake --build $b -j16 --target cuda_golden_test batching_test cuda_runner_test cuda_attention_test cuda_sampling_test tandem >>"$out/build.log" 2>&1
build_rc=$?
echo "build rc=$build_rc"; if [ $build_rc -ne 0 ]; then tail -40 "$out/build.log"; exit 1; fi
ctest --test-dir $b -L gpu -V >"$out/ctest.log" 2>&1; ctest_rc=$?
grep -E "cuda-golden|\[  FAILED  \]" "$out/ctest.log" >"$out/golden.log"; golden_rc=$ctest_rc
compute-sanitizer --tool memcheck --leak-check full --error-exitcode 99 \
  $b/bin/cuda_golden_test >"$out/memcheck.log" 2>&1
memcheck_rc=$?
compute-sanitizer --tool memcheck --leak-check full --error-exitcode 99 \
  $b/bin/batching_test --gtest_filter='*/cuda' >"$out/memcheck_batching.log" 2>&1
memcheck_batching_rc=$?
$b/bin/tandem run --model tests/data/golden/llama3_tied_bf16 --backend cuda \
  --prompt-tokens 1,2,3,4,5 --max-tokens 8 >"$out/run.log" 2>&1; run_rc=$?
echo "=== ctest -L gpu (rc=$ctest_rc)"; grep -E "tests passed|Failed|\*\*\*" "$out/ctest.log" | tail -8
echo "=== gpu tests"
grep -E "^ *[0-9]+/[0-9]+ Test" "$out/ctest.log" | sed -E 's/^ +//'
grep -E "fast vs simple|TFLOP|GB/s|us |sampl|agree|match" "$out/ctest.log" | sed -E 's/^[0-9]+: //' | head -40
echo "=== batching_test cuda instances"
grep -E "(OK|FAILED) +\] Backends/.*/cuda" "$out/ctest.log" | sed -E 's/^[0-9]+: //; s/ \(.*//' | sort -u
echo "=== cuda_golden_test (rc=$golden_rc)"; sed -E "s/^[0-9]+: //" "$out/golden.log" | sort -u
for f in memcheck memcheck_batching; do
  rc_var=${f}_rc
  echo "=== $f (rc=${!rc_var})"
  grep -E "ERROR SUMMARY|LEAK SUMMARY|Invalid|PASSED|FAILED  \]" "$out/$f.log" | sort | uniq -c | head
done
echo "=== tandem run --backend cuda (rc=$run_rc)"; tail -3 "$out/run.log"
