#!/usr/bin/env bash
# Clusters of mock workers on this machine under replayed traces (issue 15, acceptance 2): the
# real frontend and router in front of N mock workers (Llama-3.1-8B on an H200, the default
# profile), driven by tandem bench. One serve per (workers, router mode); JSON, plots and logs
# under OUT (default /tmp/mock_cluster).
#
#   bench/run_mock_cluster.sh mooncake    # conversation trace at 3x for 10 min: 8 and 32
#                                         # workers, round-robin and least-loaded (~41 min)
#   bench/run_mock_cluster.sh scale       # 256 workers, Azure conversation trace at 10x, 3 min
#   bench/run_mock_cluster.sh routing     # issue 16: 16 workers, Mooncake conversation trace,
#                                         # round-robin then kv (SPEEDUP 3, DURATION 600)
#   bench/run_mock_cluster.sh routing-scale  # 256 workers, Mooncake synthetic trace at SPEEDUP
#                                         # (10: the whole trace in 102 s), both routers
#   bench/run_mock_cluster.sh sweep       # 16 workers, SPEEDUPS ("1.5 4 6") x both routers,
#                                         # DURATION (300) each
#   bench/run_mock_cluster.sh pd          # issue 17: 4 workers as 4 aggregated, 1P3D, 2P2D and
#                                         # 3P1D (KV at 50 GB/s), Azure code (CODE_SPEEDUPS) and
#                                         # conversation (CONV_SPEEDUPS) traces and random
#                                         # 4000/250 (RANDOM_RATES), DURATION (90) each; then
#                                         # 2P2D's --local-prefill-tokens 0 and 2048 (~45 min)
#
# Environment: OUT, TRACES, and for mooncake SPEEDUP (3), DURATION (600), WORKERS ("8 32"),
# ROUTERS ("round-robin least-loaded"), BENCH_ARGS (more tandem bench flags), SERVE_ARGS (more
# tandem serve flags). Each run prints the bench table.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/mock_cluster}
traces=${TRACES:-../shared/data/traces}
mkdir -p "$out"
model="$out/llama-3.1-8b"
scripts/llama31_8b_dir.py "$model" >/dev/null || exit 1
# An H200's KV capacity for Llama-3.1-8B in bf16 (~110 GB after weights, 128 KiB per token).
blocks=53000

# serve_and_bench NAME WORKERS ROUTER BENCH_ARGS...
serve_and_bench() {
  local name=$1 workers=$2 router=$3
  shift 3
  rm -f "$out/$name.ports.json"
  setsid build/bin/tandem serve --model "$model" --backend mock --workers "$workers" \
    --num-blocks "$blocks" --router-mode "$router" ${SERVE_ARGS:-} --port 0 \
    --port-file "$out/$name.ports.json" --log-level warn >"$out/$name.serve.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 300); do [ -f "$out/$name.ports.json" ] && break; sleep 0.2; done
  local port
  port=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['http_port'])" \
    "$out/$name.ports.json") || { tail "$out/$name.serve.log"; kill -- -$pid; return 1; }
  echo "## $name: $workers mock workers, $router"
  build/bin/tandem bench --base-url "http://127.0.0.1:$port" "$@" \
    --json-out "$out/$name.json" --plots "$out/$name.plots" 2>"$out/$name.bench.log"
  kill -TERM -- -$pid 2>/dev/null
  wait $pid 2>/dev/null
}

# routers_on WORKERS NAME MOONCAKE_TRACE SPEEDUP DURATION: one run per router (ROUTERS, default
# round-robin then kv), goodput at TTFT <= 2 s and TPOT <= 50 ms.
routers_on() {
  local workers=$1 name=$2 trace=$3 speedup=$4 duration=$5
  for router in ${ROUTERS:-round-robin kv}; do
    serve_and_bench "${name}_${router}" "$workers" "$router" \
      --dataset mooncake --path "$traces/mooncake/$trace" --speedup "$speedup" \
      --duration "$duration" --goodput ttft:2000,tpot:50 ${BENCH_ARGS:-}
  done
}

# pd_on NAME WORKERS [SERVE FLAGS...]: the P/D study's workloads on one cluster shape (WORKERS
# aggregated or decode workers, the flags adding prefill workers), goodput at TTFT <= 2 s and
# TPOT <= 50 ms.
pd_on() {
  local name=$1 workers=$2
  shift 2
  local d=${DURATION:-90} azure="$traces/azure_llm_inference_2023"
  for speedup in ${CODE_SPEEDUPS:-10 20}; do
    SERVE_ARGS="$*" serve_and_bench "${name}_code_x$speedup" "$workers" kv --dataset azure \
      --path "$azure/AzureLLMInferenceTrace_code.csv" --speedup "$speedup" --duration "$d" \
      --goodput ttft:2000,tpot:50
  done
  for speedup in ${CONV_SPEEDUPS:-6 12}; do
    SERVE_ARGS="$*" serve_and_bench "${name}_conv_x$speedup" "$workers" kv --dataset azure \
      --path "$azure/AzureLLMInferenceTrace_conv.csv" --speedup "$speedup" --duration "$d" \
      --goodput ttft:2000,tpot:50
  done
  for rate in ${RANDOM_RATES:-6 12}; do
    SERVE_ARGS="$*" serve_and_bench "${name}_random_r$rate" "$workers" kv --dataset random \
      --input-len 4000 --output-len 250 --request-rate "$rate" --duration "$d" \
      --num-requests $((rate * d)) --goodput ttft:2000,tpot:50
  done
}

case "${1:-mooncake}" in
  pd)
    # serve_and_bench's WORKERS argument is the decode (or aggregated) count; the prefill
    # workers come in SERVE_ARGS.
    pd_on pd_agg4 4
    pd_on pd_1p3d 3 --prefill-workers 1 --mock-transfer-gbps 50
    pd_on pd_2p2d 2 --prefill-workers 2 --mock-transfer-gbps 50
    pd_on pd_3p1d 1 --prefill-workers 3 --mock-transfer-gbps 50
    for threshold in 0 2048; do
      SERVE_ARGS="--prefill-workers 2 --mock-transfer-gbps 50 --local-prefill-tokens $threshold" \
        serve_and_bench "pd_2p2d_t${threshold}_conv_x12" 2 kv --dataset azure \
        --path "$traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv" --speedup 12 \
        --duration "${DURATION:-90}" --goodput ttft:2000,tpot:50
    done ;;
  mooncake)
    for workers in ${WORKERS:-8 32}; do
      for router in ${ROUTERS:-round-robin least-loaded}; do
        serve_and_bench "mooncake_${workers}_${router}" "$workers" "$router" \
          --dataset mooncake --path "$traces/mooncake/conversation_trace.jsonl" --speedup "${SPEEDUP:-3}" \
          --duration "${DURATION:-600}" ${BENCH_ARGS:-}
      done
    done ;;
  routing)
    routers_on 16 routing_16 conversation_trace.jsonl "${SPEEDUP:-3}" "${DURATION:-600}" ;;
  routing-scale)
    routers_on 256 routing_256 synthetic_trace.jsonl "${SPEEDUP:-10}" "${DURATION:-600}" ;;
  sweep)
    for speedup in ${SPEEDUPS:-1.5 4 6}; do
      routers_on 16 "sweep_16_x${speedup}" conversation_trace.jsonl "$speedup" "${DURATION:-300}"
    done ;;
  scale)
    serve_and_bench scale_256 256 least-loaded --dataset azure \
      --path "$traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv" --speedup 10 \
      --duration 180 ;;
  *) echo "usage: $0 mooncake|scale|routing|routing-scale|sweep" >&2; exit 2 ;;
esac
