#!/usr/bin/env bash
# Issue 16: `cargo install --path node` works, and the installed `pvl` runs a node that joins
# a network: two nodes (the second bootstrapping off the first) connect, and an intent
# published on one is served by the other. Then the systemd unit is checked with
# `systemd-analyze verify` against the installed binary. Reuses the debug build in target/.
set -euo pipefail
cd "$(dirname "$0")/.."

root=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT

fail() {
  echo "installed pvl: $*"
  for log in "$root"/*.log; do [ -f "$log" ] && { echo "--- $log"; tail -20 "$log"; }; done
  exit 1
}

# Waits up to 30 s for a command to succeed.
wait_for() {
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "timed out waiting for $what"
}

start=$(date +%s)
cargo install --path node --root "$root/install" --locked --debug --target-dir target --quiet
echo "cargo install: $(( $(date +%s) - start )) s"
pvl="$root/install/bin/pvl"
"$pvl" --version

"$pvl" init --dir "$root/a" --listen /ip4/127.0.0.1/tcp/0 --builtin echo:5:50 >/dev/null
"$pvl" run --dir "$root/a" >"$root/a.log" 2>&1 & pids+=($!)
wait_for "node a's control API" test -f "$root/a/api.addr"
boot=$("$pvl" id --dir "$root/a" --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["listen_addrs"][0])')

"$pvl" init --dir "$root/b" --listen /ip4/127.0.0.1/tcp/0 --bootstrap "$boot" >/dev/null
"$pvl" run --dir "$root/b" >"$root/b.log" 2>&1 & pids+=($!)
wait_for "node b's control API" test -f "$root/b/api.addr"

peer_a=$("$pvl" id --dir "$root/a" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["peer_id"])')
connected() {
  "$pvl" peers --dir "$root/b" --json | python3 -c '
import json, sys
peers = json.load(sys.stdin)
sys.exit(0 if any(p["peer_id"] == sys.argv[1] and p["connected"] for p in peers) else 1)' "$peer_a"
}
wait_for "node b to connect to node a" connected
"$pvl" peers --dir "$root/b"
"$pvl" status --dir "$root/a" | grep -E '^connected_peers +1$' >/dev/null || fail "node a does not count node b"

out=$("$pvl" intent publish --dir "$root/b" --capability echo --input "installed pvl" --wait 2>&1) ||
  fail "the intent failed: $out"
echo "$out" | grep -q '^output  installed pvl$' || fail "unexpected outcome: $out"
echo "two installed nodes connected; an intent published on b was served by a"

# The systemd unit, with its ExecStart pointing at the installed binary.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  fail "systemd-analyze is missing (apt-get install systemd)"
fi
sed "s#/usr/local/bin/pvl#$pvl#g" packaging/pvl.service > "$root/pvl.service"
systemd-analyze verify --man=no "$root/pvl.service"
echo "packaging/pvl.service: systemd-analyze verify ok"
