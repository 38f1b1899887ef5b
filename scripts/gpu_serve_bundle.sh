#!/usr/bin/env bash
# Packs what `tandem serve --backend cuda` and `tandem bench` need on the GPU machine, which has
# no gRPC, abseil or UCX: the daemons are built here (build/, CUDA on, sm_90a) and carried with
# every shared library they load that is not glibc's, libstdc++, libgcc or CUDA's own.
#
#   scripts/gpu_serve_bundle.sh            # writes .carry_serve/bundle.tar.xz (~20 MB)
#
# The bundle holds bin/ (stripped: tandem, tandem-frontend, tandem-decode-worker,
# tandem-prefill-worker, bench_transfer,
# bench_engine_workload, bench_engine_gpu), lib/, model/ (a Llama-3.1-8B directory without
# weights: scripts/llama31_8b_dir.py, the real Llama 3 tokenizer) and model-1b/ (Llama-3.2-1B
# shapes). Run it there with
# bench/run_serve_gpu.sh, carrying .carry_serve (see bench/README.md, "Serving on the GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${TANDEM_BUILD_DIR:-build}
out=.carry_serve
bins=(tandem tandem-frontend tandem-decode-worker tandem-prefill-worker bench_engine_workload
  bench_engine_gpu bench_transfer)
if [[ ! -f "$build_dir/build.ninja" ]]; then scripts/build.sh; fi
grep -q "TANDEM_CUDA:BOOL=ON" "$build_dir/CMakeCache.txt" ||
  { echo "gpu_serve_bundle: $build_dir is configured without CUDA" >&2; exit 1; }
cmake --build "$build_dir" --target "${bins[@]}"
rm -rf "$out/stage"
mkdir -p "$out/stage/bin" "$out/stage/lib"
for b in "${bins[@]}"; do strip -o "$out/stage/bin/$b" "$build_dir/bin/$b"; done
# Libraries the machine there has (its own, newer glibc and libstdc++) or must not be replaced
# (the CUDA runtime and cuBLAS of its own toolkit).
system='/(libc|libm|libdl|libpthread|librt|libutil|libresolv|libstdc\+\+|libgcc_s)\.so|/ld-linux|/usr/local/cuda'
for b in "${bins[@]}"; do ldd "$build_dir/bin/$b"; done | awk '/=> \//{print $3}' | sort -u |
  grep -Ev "$system" | while read -r lib; do cp -L "$lib" "$out/stage/lib/"; done
if ldd "$build_dir/bin/tandem-decode-worker" | grep -q "not found"; then
  echo "gpu_serve_bundle: unresolved libraries" >&2; exit 1
fi
scripts/llama31_8b_dir.py "$out/stage/model" >/dev/null
scripts/llama31_8b_dir.py --shape llama-3.2-1b "$out/stage/model-1b" >/dev/null
tar -C "$out/stage" -cJf "$out/bundle.tar.xz" .
rm -rf "$out/stage"
ls -l "$out/bundle.tar.xz"
