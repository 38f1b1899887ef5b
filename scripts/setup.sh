#!/usr/bin/env bash
# Installs every build and test dependency of tandem from Debian's archive. Idempotent: packages
# already present are skipped, so running it again is cheap.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git python3
  libgtest-dev libgmock-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev libxxhash-dev
  libopenblas-dev
  libpcre2-dev libutf8proc-dev libsentencepiece-dev python3-jinja2
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libboost-dev libsystemd-dev liburing-dev curl
  libucx-dev ucx-utils valgrind
  python3-grpcio python3-protobuf procps python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node.js and npm drive the OpenAI-client tests. The machine image ships them (NodeSource build,
# npm bundled); Debian's own packages only where they are absent, since the two conflict.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if ((${#missing[@]})); then
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
else
  echo "setup: all packages present"
fi

# The official OpenAI client for the integration tests (tests/integration/openai), at the exact
# version package-lock.json pins. Reinstalled only when the lock file changed since the last run.
openai_tests="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/integration/openai"
lock_sum=$(sha256sum "$openai_tests/package-lock.json" | cut -d' ' -f1)
stamp="$openai_tests/node_modules/.tandem-lock-sha256"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$lock_sum" ]]; then
  echo "setup: npm packages present"
else
  echo "setup: npm ci in tests/integration/openai"
  npm ci --prefix "$openai_tests" --no-audit --no-fund
  echo "$lock_sum" >"$stamp"
fi
