# Sourced by the GPU machine's serving benchmarks (run_serve_gpu.sh, run_router_gpu.sh): unpacks
# the carried .carry_serve/bundle.tar.xz (scripts/gpu_serve_bundle.sh) into $d, puts its
# libraries on the loader's path, and records the device in $out/device.txt.
d=/tmp/tandem_bundle
rm -rf "$d" && mkdir -p "$d" && tar -C "$d" -xJf .carry_serve/bundle.tar.xz || exit 1
export LD_LIBRARY_PATH="$d/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,power.limit --format=csv,noheader | tee "$out/device.txt"
