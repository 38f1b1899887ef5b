#!/usr/bin/env bash
# The transfer layer on the GPU machine (issues 7 and 8): builds the transfer tests and benchmark
# with UCX from .carry_gpu/ucx (the image has none) and NCCL from the PyTorch wheel, runs the
# shared suite (ucx_device, cuda_ipc_device, and the *_two_gpus variants with two GPUs),
# nccl_test, and bench/transfer for cuda_ipc and staged ucx — between two GPUs as well when
# there are two. Logs and JSON under $OUT (or /tmp/transfer_gpu).
# Usage (device tool, carry .carry_gpu, made as bench/README.md says): scripts/transfer_gpu.sh
set -uo pipefail
out=${OUT:-/tmp/transfer_gpu}
mkdir -p "$out"
b=/tmp/b
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export LD_LIBRARY_PATH=$PWD/.carry_gpu/ucx/lib:${LD_LIBRARY_PATH:-}
export UCX_MODULE_DIR=$PWD/.carry_gpu/ucx/lib/ucx
nccl=$(python3 -c "import nvidia.nccl as m; print(list(m.__path__)[0])" 2>/dev/null)
nccl_flags=(-DTANDEM_NCCL=OFF)
if [[ -n $nccl ]]; then
  nccl_flags=(-DTANDEM_NCCL=ON -DTANDEM_NCCL_INCLUDE="$nccl/include"
              -DTANDEM_NCCL_LIB="$(ls "$nccl"/lib/libnccl.so* | head -1)")
  export LD_LIBRARY_PATH=$nccl/lib:$LD_LIBRARY_PATH
fi
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
cmake -S . -B $b -G Ninja -DTANDEM_SERVICES=OFF -DTANDEM_TOKENIZERS=OFF "${nccl_flags[@]}" \
  -DTANDEM_EXTRA_INCLUDE="$PWD/.carry_gpu/include" -DTANDEM_UCX_INCLUDE="$PWD/.carry_gpu/ucx/include" \
  -DCMAKE_LIBRARY_PATH="$PWD/.carry_gpu/ucx/lib" -DCMAKE_BUILD_TYPE=Release >"$out/build.log" 2>&1 &&
  cmake --build $b -j16 --target transfer_test transfer_peer bench_transfer \
    $([[ -n $nccl ]] && echo nccl_test) >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
$b/bin/transfer_test >"$out/transfer_test.txt" 2>&1; echo "transfer_test rc=$?"
grep -E "^\[  (PASSED|FAILED|SKIPPED) +\]? ?[0-9]+ test" "$out/transfer_test.txt"
if [[ -x $b/bin/nccl_test ]]; then
  $b/bin/nccl_test >"$out/nccl_test.txt" 2>&1; echo "nccl_test rc=$?"
  grep -E "^\[  (PASSED|FAILED|SKIPPED) +\]? ?[0-9]+ test" "$out/nccl_test.txt"
fi
bench() { timeout 300 $b/bin/bench_transfer --kind device --sizes 64K,2M,16M,64M \
  --blocks 1,16,64,128,4096 "$@"; }
bench --backend cuda_ipc --json-out "$out/transfer_cuda_ipc.json" | tail -24
bench --backend ucx --blocks 1,16,64 --json-out "$out/transfer_ucx_device.json" | tail -24
if ((gpus >= 2)); then
  bench --backend cuda_ipc --peer-device 1 --json-out "$out/transfer_cuda_ipc_two_gpus.json" | tail -24
  [[ -n $nccl ]] && bench --backend nccl --peer-device 1 --json-out "$out/transfer_nccl.json" | tail -24
fi
