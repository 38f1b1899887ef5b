#!/usr/bin/env bash
# The whole serving stack on the GPU machine against the bare engine, in one call (issue 15,
# acceptance 3). Needs .carry_serve/bundle.tar.xz from scripts/gpu_serve_bundle.sh (carried).
#
#   bench/run_serve_gpu.sh [--input-len 1000] [--output-len 1000] [--concurrency 64]
#                          [--num-requests 192]
#
# 1. bench_engine_workload: the same requests submitted in-process to the engine (no gRPC, no
#    HTTP) — the baseline;
# 2. bench_engine_gpu: the decode step alone at the same batch and the workload's mean context;
# 3. tandem serve --backend cuda (one worker, Llama-3.1-8B shapes, random weights) under
#    tandem bench --dataset random at that concurrency.
# Prints the table last; JSON and logs under $OUT (or /tmp/serve_gpu).
set -uo pipefail
out=${OUT:-/tmp/serve_gpu}
mkdir -p "$out"
isl=1000; osl=1000; conc=64; num=192
while [ $# -gt 0 ]; do
  case "$1" in
    --input-len) isl=$2; shift ;;
    --output-len) osl=$2; shift ;;
    --concurrency) conc=$2; shift ;;
    --num-requests) num=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
. "$(dirname "$0")/serve_bundle_env.sh"  # Sets $d (the unpacked bundle) and the loader's path.
kv=40GiB

"$d/bin/bench_engine_workload" --model "$d/model" --backend cuda --input-len "$isl" \
  --output-len "$osl" --concurrency "$conc" --num-requests "$num" --kv-cache-size "$kv" \
  --json-out "$out/engine_workload.json" >"$out/engine_workload.log" 2>&1 ||
  { tail -20 "$out/engine_workload.log"; exit 1; }

ctx=$((isl + osl / 2))
"$d/bin/bench_engine_gpu" --models llama-3.1-8b --decode-batches "$conc" --contexts "$ctx" \
  --prefill-lengths 0 --gemm-table 0 --json-out "$out/engine_decode.json" >"$out/engine_decode.log" 2>&1 ||
  { tail -20 "$out/engine_decode.log"; exit 1; }

rm -f "$out/serve_ports.json"
setsid "$d/bin/tandem" serve --model "$d/model" --weights random --backend cuda \
  --kv-cache-size "$kv" --max-num-seqs "$conc" --port 0 --port-file "$out/serve_ports.json" \
  >"$out/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 600); do [ -f "$out/serve_ports.json" ] && break; sleep 0.2; done
port=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http_port'])" \
  "$out/serve_ports.json") || { tail -30 "$out/serve.log"; kill -- -$serve_pid; exit 1; }
"$d/bin/tandem" bench --base-url "http://127.0.0.1:$port" --dataset random --input-len "$isl" \
  --output-len "$osl" --max-concurrency "$conc" --num-requests "$num" \
  --json-out "$out/serve_bench.json" >"$out/bench.log" 2>&1
bench_rc=$?
kill -TERM -- -$serve_pid 2>/dev/null
wait $serve_pid 2>/dev/null
cat "$out/bench.log" | tail -30
[ $bench_rc -eq 0 ] || { tail -30 "$out/serve.log"; exit 1; }

python3 - "$out" "$conc" "$ctx" <<'PY' | tee "$out/serve_gpu_report.md"
import json, sys
out, conc, ctx = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
eng = json.load(open(f"{out}/engine_workload.json"))
dec = json.load(open(f"{out}/engine_decode.json"))
srv = json.load(open(f"{out}/serve_bench.json"))["summary"]
row = [r for r in dec["rows"] if r["kind"] == "decode"][0]
device = open(f"{out}/device.txt").read().split(",")[0]
print(f"Device: {device}; Llama-3.1-8B shapes, random bf16 weights; {eng['input_len']} in / "
      f"{eng['output_len']} out tokens, {conc} in flight, {eng['completed']} requests.\n")
print("| run | output tok/s | TTFT p50 ms | TPOT p50 ms | vs bare engine |")
print("|---|---:|---:|---:|---:|")
print(f"| bare engine, same workload (bench_engine_workload) | {eng['output_throughput']:,.0f} | "
      f"{eng['ttft_ms']['p50']:.0f} | {eng['tpot_ms']['p50']:.2f} | 1.00 |")
print(f"| tandem serve + tandem bench (HTTP, streaming) | {srv['output_throughput']:,.0f} | "
      f"{srv['ttft_ms']['p50']:.0f} | {srv['tpot_ms']['p50']:.2f} | "
      f"{srv['output_throughput'] / eng['output_throughput']:.3f} |")
print(f"| decode step alone, batch {conc} @ {ctx} (bench_engine_gpu) | {row['tokens_per_s']:,.0f} | - | "
      f"{row['ms']:.2f} | - |")
print(f"\nstack cost: serving loses {100 * (1 - srv['output_throughput'] / eng['output_throughput']):.1f}% "
      f"of the bare engine's output throughput (target <= 10%); failed requests: {srv['failed']}")
PY
