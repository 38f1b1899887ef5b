#!/usr/bin/env bash
# The tokenizer benchmark with its peer in one call, on a machine with Hugging Face tokenizers
# and tiktoken (the GPU machine). Expects what scripts/prepare_tokenizer_bench.sh put in
# .carry/bench (the bench binary and its libraries, the corpus, the tokenizer files).
set -euo pipefail
B=${1:-.carry/bench}
OUT_DIR=${2:-.}
export LD_LIBRARY_PATH=$B/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
T=$B/tok
specs=(llama3=$T/llama3.json llama3-tiktoken=$T/llama3.model qwen2=$T/qwen2.json
       gpt2=$T/gpt2.json llama2=$T/llama2.json)
peer_args=()
ours_args=()
for s in "${specs[@]}"; do peer_args+=(--tokenizer "$s"); ours_args+=(--tokenizer "$s"); done
python3 bench/peers/hf_tokenizer.py --corpus "$B/corpus.txt" "${peer_args[@]}" \
  --json-out "$OUT_DIR/bench_tokenizer_peer.json"
"$B/bench_tokenizer" --corpus "$B/corpus.txt" "${ours_args[@]}" \
  --peer-json "$OUT_DIR/bench_tokenizer_peer.json" --json-out "$OUT_DIR/bench_tokenizer.json"
