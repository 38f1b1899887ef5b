#!/usr/bin/env bash
# `tandem serve` end to end (issue 4): starts serve with the demo model on ephemeral ports, waits
# until it is ready, checks the ready line and the API key, runs the official OpenAI client tests
# (tests/integration/openai/*.test.mjs) against it, then stops it with SIGTERM and expects exit 0
# with no daemon left behind.
#
# Usage: serve_test.sh BIN_DIR SOURCE_DIR. Exits 77 (ctest SKIP_RETURN_CODE) when node or the npm
# packages (scripts/setup.sh installs them) are missing.
set -euo pipefail

bin_dir=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
openai_dir="$source_dir/tests/integration/openai"
seed=4            # Weights whose greedy output mixes words, bytes and cut characters.
api_key=serve-test-key

if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed (scripts/setup.sh)"
  exit 77
fi
if [[ ! -d "$openai_dir/node_modules/openai" ]]; then
  echo "SKIP: $openai_dir/node_modules is missing (run scripts/setup.sh)"
  exit 77
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tandem-serve-test-XXXXXX")
serve_pid=
cleanup() {
  if [[ -n "$serve_pid" ]] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -KILL "$serve_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  echo "--- serve stderr ---" >&2
  cat "$work/serve.err" >&2 || true
  exit 1
}

"$bin_dir/tandem" serve --port 0 --port-file "$work/serve.json" --state-dir "$work/state" \
  --workers 2 --seed "$seed" --api-key "$api_key" --log-level warn \
  >"$work/serve.out" 2>"$work/serve.err" &
serve_pid=$!

# Ready: the port file appears (serve writes it after GET /health answered 200).
for ((i = 0; i < 1200; i++)); do
  [[ -s "$work/serve.json" ]] && break
  kill -0 "$serve_pid" 2>/dev/null || fail "tandem serve exited during start-up"
  sleep 0.1
done
[[ -s "$work/serve.json" ]] || fail "tandem serve was not ready within 120 s"

json_field() { node -e "process.stdout.write(String(require('$work/serve.json')['$1']))"; }
port=$(json_field http_port)
model=$(json_field model)
model_dir=$(json_field model_dir)
base_url="http://127.0.0.1:$port/v1"

expected="tandem serve ready: $base_url (model $model, 2 workers)"
[[ "$(cat "$work/serve.out")" == "$expected" ]] ||
  fail "stdout is '$(cat "$work/serve.out")', expected '$expected'"
[[ "$model" == demo && -f "$model_dir/tokenizer.json" ]] || fail "unexpected model $model at $model_dir"

# The key guards /v1.
code=$(curl -s -o /dev/null -w '%{http_code}' "$base_url/models")
[[ "$code" == 401 ]] || fail "GET /v1/models without the API key answered $code, expected 401"

echo "serve ready at $base_url; running the OpenAI client tests"
TANDEM_BASE_URL="$base_url" TANDEM_MODEL="$model" TANDEM_API_KEY="$api_key" \
  TANDEM_BIN="$bin_dir/tandem" TANDEM_MODEL_DIR="$model_dir" TANDEM_WEIGHTS=random \
  TANDEM_SEED="$seed" node --test --test-reporter=spec "$openai_dir"/*.test.mjs ||
  fail "the OpenAI client tests failed"

# The gRPC API through the README's example client (scripts/grpc_generate.py), with the key from
# the environment as the README shows.
grpc_port=$(json_field grpc_port)
grpc_out=$(TANDEM_API_KEY="$api_key" /usr/bin/python3 "$source_dir/scripts/grpc_generate.py" \
  --address "127.0.0.1:$grpc_port" --chat "Hello!" --max-tokens 8 2>"$work/grpc.err") ||
  fail "scripts/grpc_generate.py failed: $(cat "$work/grpc.err")"
grep -q "FINISH_REASON_LENGTH, [0-9]* prompt + 8 completion tokens" "$work/grpc.err" ||
  fail "scripts/grpc_generate.py: unexpected end: $(cat "$work/grpc.err")"
if /usr/bin/python3 "$source_dir/scripts/grpc_generate.py" --address "127.0.0.1:$grpc_port" \
  --list-models >/dev/null 2>"$work/grpc.err"; then
  fail "gRPC ListModels without the API key succeeded"
fi
grep -q UNAUTHENTICATED "$work/grpc.err" || fail "gRPC without the key: $(cat "$work/grpc.err")"

# Children of serve, to check none outlives it.
children=$(pgrep -P "$serve_pid" || true)
[[ $(wc -w <<<"$children") == 3 ]] || fail "expected 3 daemons under serve, found: $children"

kill -TERM "$serve_pid"
status=0
wait "$serve_pid" || status=$?
serve_pid=
[[ "$status" == 0 ]] || fail "tandem serve exited $status after SIGTERM, expected 0"
for pid in $children; do
  if kill -0 "$pid" 2>/dev/null; then fail "daemon $pid outlived tandem serve"; fi
done
echo "PASS"
