#!/usr/bin/env bash
# Disaggregated serving on the GPU machine (issue 17): one GPU, Llama-3.1-8B shapes, random bf16
# weights. In one call: the cuda_ipc transfer ceiling (bench_transfer, 2 MiB blocks: one 16-token
# block of the 8B layout), then for 1k, 4k and 8k prompts one request at a time, TTFT and the
# first inter-token gap through one aggregated worker, and through a prefill worker and a decode
# worker (two processes on the GPU, KV over cuda_ipc), with the decode worker's pull throughput.
# Needs .carry_serve/bundle.tar.xz (scripts/gpu_serve_bundle.sh), carried.
#
#   bench/run_pd_gpu.sh [--lens "1024 4096 8192"] [--requests 6] [--kv-cache-size 8GiB]
#
# Prints one table and writes every run's JSON under $OUT (or /tmp/pd_gpu).
set -uo pipefail
out=${OUT:-/tmp/pd_gpu}
mkdir -p "$out"
lens="1024 4096 8192"; requests=6; kv=8GiB
while [ $# -gt 0 ]; do
  case "$1" in
    --lens) lens=$2; shift ;;
    --requests) requests=$2; shift ;;
    --kv-cache-size) kv=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
. "$(dirname "$0")/serve_bundle_env.sh"  # Sets $d (the unpacked bundle) and the loader's path.

"$d/bin/bench_transfer" --backend cuda_ipc --kind device --sizes 2M --blocks 64,256,512 \
  --json-out "$out/transfer.json" >"$out/transfer.log" 2>&1 || tail -20 "$out/transfer.log"
tail -8 "$out/transfer.log"

wait_up() {  # port, workers
  python3 - "$1" "$2" <<'PY'
import json, sys, time, urllib.request
for _ in range(1500):
    try:
        if json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health"))["workers_up"] == int(sys.argv[2]):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
PY
}

for mode in aggregated pd; do
  case $mode in
    aggregated) flags=(--workers 1); up=1 ;;
    pd) flags=(--prefill-workers 1 --decode-workers 1 --transfer cuda_ipc); up=2 ;;
  esac
  rm -f "$out/$mode.ports.json"
  setsid "$d/bin/tandem" serve --model "$d/model" --weights random --backend cuda \
    --kv-cache-size "$kv" --max-num-batched-tokens 8192 "${flags[@]}" --port 0 \
    --port-file "$out/$mode.ports.json" --startup-timeout 400 --log-level warn \
    >"$out/$mode.serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 2000); do [ -f "$out/$mode.ports.json" ] && break; sleep 0.2; done
  port=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http_port'])" \
    "$out/$mode.ports.json") || { tail -30 "$out/$mode.serve.log"; kill -- -$pid; continue; }
  wait_up "$port" "$up" || { tail -30 "$out/$mode.serve.log"; kill -- -$pid; continue; }
  for len in $lens; do
    # Warm-up (CUDA graphs, the first pull's connection), then the measured requests.
    "$d/bin/tandem" bench --base-url "http://127.0.0.1:$port" --dataset random \
      --input-len "$len" --output-len 16 --num-requests 2 --max-concurrency 1 --seed 99 \
      >/dev/null 2>&1
    "$d/bin/tandem" bench --base-url "http://127.0.0.1:$port" --dataset random \
      --input-len "$len" --output-len 32 --num-requests "$requests" --max-concurrency 1 \
      --seed "$len" --json-out "$out/${mode}_$len.json" >"$out/${mode}_$len.bench.log" 2>&1
    python3 - "$out/$mode.ports.json" "$out/${mode}_$len.metrics.txt" <<'PY'
import json, sys, urllib.request
ports = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for w in ports["workers"]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{w['metrics_port']}/metrics").read().decode()
        f.write(f"# worker role={w['role']}\n{text}")
PY
  done
  kill -TERM -- -$pid 2>/dev/null
  wait $pid 2>/dev/null
done

python3 - "$out" $lens <<'PY' | tee "$out/pd_gpu_report.md"
import json, sys
out, lens = sys.argv[1], sys.argv[2:]
device = open(f"{out}/device.txt").read().split(",")[0]
def pulls(path):
    # The decode worker's counters, cumulative over the run's requests so far.
    vals = {}
    role = None
    for line in open(path):
        if line.startswith("# worker role="):
            role = line.split("=")[1].strip()
        elif role == "decode" and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            vals[name] = float(value)
    return vals
t = json.load(open(f"{out}/transfer.json"))
ceiling = {}
for r in t.get("cells", []):
    if r.get("direction") == "read":
        ceiling[r["blocks"]] = r["gbps"]
print(f"Device: {device}; Llama-3.1-8B shapes, random bf16 weights; one request at a time, "
      "32 output tokens; P/D = a prefill and a decode worker on the same GPU, KV over cuda_ipc.\n")
print("| prompt | aggregated TTFT p50 ms | P/D TTFT p50 ms | P/D / aggregated | aggregated first gap ms | "
      "P/D first gap (incl. pull) ms | pulled MB/request | pull GB/s | cuda_ipc GB/s (same blocks) |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
prev = {"bytes": 0.0, "seconds": 0.0, "pulls": 0.0}
for n in lens:
    a = json.load(open(f"{out}/aggregated_{n}.json"))["summary"]
    p = json.load(open(f"{out}/pd_{n}.json"))["summary"]
    m = pulls(f"{out}/pd_{n}.metrics.txt")
    b = m.get("tandem_worker_kv_pulled_bytes_total", 0.0)
    s = m.get("tandem_worker_kv_pull_seconds_total", 0.0)
    k = m.get('tandem_worker_kv_pulls_total{outcome="pulled"}', 0.0)
    db, ds, dk = b - prev["bytes"], s - prev["seconds"], k - prev["pulls"]
    prev = {"bytes": b, "seconds": s, "pulls": k}
    blocks = int(n) // 16
    c = ceiling.get(min(ceiling, key=lambda x: abs(x - blocks))) if ceiling else float("nan")
    rate = db / ds / 1e9 if ds > 0 else float("nan")
    print(f"| {n} | {a['ttft_ms']['p50']:.1f} | {p['ttft_ms']['p50']:.1f} | "
          f"{p['ttft_ms']['p50'] / a['ttft_ms']['p50']:.2f} | {a['itl_ms']['max']:.1f} | "
          f"{p['itl_ms']['max']:.1f} | {db / max(dk, 1) / 1e6:.0f} | {rate:.0f} | {c:.0f} |")
PY
