#!/usr/bin/env bash
# Gathers what bench/run_tokenizer_device.sh needs into .carry/bench (ignored by git): the
# benchmark binary built here with its non-system libraries, the corpus, and the tokenizer files
# from ../shared/data. The GPU machine has none of these; the device tool carries the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
B=.carry/bench
T=../shared/data/tokenizers
mkdir -p "$B/lib" "$B/tok"
cp build/bin/bench_tokenizer "$B/"
for lib in libutf8proc.so.2 libsentencepiece.so.0 libpcre2-8.so.0; do
  cp "/lib/x86_64-linux-gnu/$lib" "$B/lib/"
done
cp "$T/llama3/tokenizer.json" "$B/tok/llama3.json"
cp "$T/llama3/tokenizer.model" "$B/tok/llama3.model"
cp "$T/qwen2/tokenizer.json" "$B/tok/qwen2.json"
cp "$T/gpt2/tokenizer.json" "$B/tok/gpt2.json"
cp "$T/llama2/tokenizer.json" "$B/tok/llama2.json"
build/bin/bench_tokenizer --make-corpus "$B/corpus.txt" --data ../shared/data
