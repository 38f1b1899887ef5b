#!/usr/bin/env bash
# Configures (once) and builds tandem into build/ with Ninja and ccache.
# Extra arguments go to the CMake configure step, e.g. scripts/build.sh -DTANDEM_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${TANDEM_BUILD_DIR:-build}
if [[ ! -f "$build_dir/build.ninja" || $# -gt 0 ]]; then
  cmake -S . -B "$build_dir" -G Ninja "$@"
fi
cmake --build "$build_dir" -j "$(nproc)"
