#!/usr/bin/env bash
# The KV-aware router on the GPU machine (issue 16): two cuda workers sharing one GPU
# (Llama-3.2-1B shapes, random bf16 weights) behind tandem's frontend, the Mooncake conversation
# trace (prefix-heavy: a conversation's next turn repeats its history), round-robin then kv
# routing at each speedup, in one call. Needs .carry_serve/bundle.tar.xz (scripts/gpu_serve_bundle.sh)
# and .carry_serve/conversation_trace.jsonl (a copy of ../shared/data/traces/mooncake's), both
# carried.
#
#   bench/run_router_gpu.sh [--speedups "3"] [--duration 150] [--kv-cache-size 24GiB]
#
# Prints one table (TTFT, TPOT, goodput at TTFT <= 2 s and TPOT <= 50 ms, cache hits) and writes
# the JSON of every run under $OUT (or /tmp/router_gpu).
set -uo pipefail
out=${OUT:-/tmp/router_gpu}
mkdir -p "$out"
speedups="3"; duration=150; kv=24GiB
while [ $# -gt 0 ]; do
  case "$1" in
    --speedups) speedups=$2; shift ;;
    --duration) duration=$2; shift ;;
    --kv-cache-size) kv=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
. "$(dirname "$0")/serve_bundle_env.sh"  # Sets $d (the unpacked bundle) and the loader's path.
trace=.carry_serve/conversation_trace.jsonl

for speedup in $speedups; do
  for router in round-robin kv; do
    name="x${speedup}_${router}"
    rm -f "$out/$name.ports.json"
    setsid "$d/bin/tandem" serve --model "$d/model-1b" --weights random --backend cuda \
      --workers 2 --kv-cache-size "$kv" --router-mode "$router" --port 0 \
      --port-file "$out/$name.ports.json" --log-level warn >"$out/$name.serve.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 900); do [ -f "$out/$name.ports.json" ] && break; sleep 0.2; done
    port=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http_port'])" \
      "$out/$name.ports.json") || { tail -30 "$out/$name.serve.log"; kill -- -$pid; exit 1; }
    python3 - "$port" <<'PY'
import json, sys, time, urllib.request
for _ in range(600):
    try:
        if json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health"))["workers_up"] == 2:
            break
    except Exception:
        pass
    time.sleep(0.2)
PY
    "$d/bin/tandem" bench --base-url "http://127.0.0.1:$port" --dataset mooncake --path "$trace" \
      --speedup "$speedup" --duration "$duration" --goodput ttft:2000,tpot:50 \
      --json-out "$out/$name.json" >"$out/$name.bench.log" 2>&1
    kill -TERM -- -$pid 2>/dev/null
    wait $pid 2>/dev/null
    echo "## $name"; tail -14 "$out/$name.bench.log"
  done
done

python3 - "$out" $speedups <<'PY' | tee "$out/router_gpu_report.md"
import json, sys
out, speedups = sys.argv[1], sys.argv[2:]
device = open(f"{out}/device.txt").read().split(",")[0]
print(f"Device: {device}; two cuda workers on it, Llama-3.2-1B shapes, random bf16 weights; "
      "Mooncake conversation trace.\n")
print("| speedup | router | completed | req/s | from cache | TTFT mean ms | TTFT p50 | TTFT p90 | "
      "TPOT p50 ms | goodput req/s |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in speedups:
    for r in ("round-robin", "kv"):
        j = json.load(open(f"{out}/x{s}_{r}.json"))["summary"]
        print(f"| {s} | {r} | {j['completed']} | {j['request_throughput']:.2f} | "
              f"{100 * j['cached_prompt_tokens_fraction']:.1f}% | {j['ttft_ms']['mean']:,.0f} | "
              f"{j['ttft_ms']['p50']:,.0f} | {j['ttft_ms']['p90']:,.0f} | {j['tpot_ms']['p50']:.2f} | "
              f"{j['goodput']:.2f} |")
PY
