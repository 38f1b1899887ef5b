#!/usr/bin/env bash
# bench/engine_gpu and its Hugging Face peer in one call on the GPU machine (issue 5), then the
# side-by-side table (bench/engine_gpu_report.py). Builds the engine-only configuration first
# (the GPU machine has no gRPC; .carry_gpu/include holds the headers it lacks).
#   bench/run_engine_gpu.sh [--quick] [--skip-peer] [--skip-ours] [--peer-seconds N]
# Results under $OUT (or /tmp/bench_engine_gpu): bench_engine_gpu.json, bench_engine_gpu_peer.json,
# bench_engine_gpu_report.md and the logs.
set -uo pipefail
out=${OUT:-/tmp/bench_engine_gpu}
mkdir -p "$out"
quick=0; peer=1; ours=1; peer_seconds=300
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --skip-peer) peer=0 ;;
    --skip-ours) ours=0 ;;
    --peer-seconds) peer_seconds=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
b=${TANDEM_GPU_BUILD:-/tmp/b}
if [ $ours -eq 1 ]; then
  cmake -S . -B $b -G Ninja -DTANDEM_SERVICES=OFF -DTANDEM_TOKENIZERS=OFF \
    -DTANDEM_EXTRA_INCLUDE="$PWD/.carry_gpu/include" -DCMAKE_BUILD_TYPE=Release >"$out/build.log" 2>&1 &&
    cmake --build $b -j16 --target bench_engine_gpu >>"$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log"; exit 1; }
  args=()
  if [ $quick -eq 1 ]; then
    args=(--models llama-3.2-1b --decode-batches 1,64 --contexts 512 --prefill-lengths 2048 --iters 10)
  fi
  $b/bin/bench_engine_gpu "${args[@]}" --json-out "$out/bench_engine_gpu.json" 2>&1 |
    tee "$out/ours.log"
fi
if [ $peer -eq 1 ]; then
  pargs=(--max-seconds "$peer_seconds")
  if [ $quick -eq 1 ]; then pargs+=(--quick); fi
  python3 bench/peers/hf_engine.py "${pargs[@]}" --out "$out/bench_engine_gpu_peer.json" \
    >"$out/peer.log" 2>"$out/peer.err"
  echo "peer rc=$?"; tail -5 "$out/peer.err"
fi
python3 bench/engine_gpu_report.py --ours "$out/bench_engine_gpu.json" \
  --peer "$out/bench_engine_gpu_peer.json" --out "$out/bench_engine_gpu_report.md"
