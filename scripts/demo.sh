#!/usr/bin/env bash
# The local testnet demo: builds `pvl`, starts a small network of real node processes on
# loopback (node-0 is the bootstrap node), waits until they have found each other through
# Kademlia, publishes an intent on one node, shows it arriving in the trace store of the others,
# exports the trace (DOT, JSON, signed bundle), verifies the bundle offline, and stops every node
# with SIGTERM. Exit status 0 only if every step worked.
#
#   bash scripts/demo.sh            # 3 nodes
#   NODES=5 bash scripts/demo.sh    # more
#
# Then it runs contract-net auctions: every provider serves the builtin `sha256` at its own
# price and speed; the requester selects by lowest cost and then by speed, the winner executes,
# and both sides hold the countersigned receipt. The workflow, parallel, consensus and adaptive
# patterns are not built yet.
set -euo pipefail
cd "$(dirname "$0")/.."
NODES=${NODES:-3}
[ "$NODES" -ge 2 ] || { echo "NODES must be at least 2"; exit 2; }

echo "==> building pvl (release)"
cargo build --release --quiet -p pvl-node
PVL=$PWD/target/release/pvl
WORK=$(mktemp -d /tmp/pvl-demo.XXXXXX)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# wait_for DESCRIPTION COMMAND...: retries COMMAND for up to 30 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what (logs in $WORK/node-*/node.log)"; exit 1
}

start() {
  local dir=$1
  "$PVL" run --dir "$dir" 2>"$dir/node.log" &
  pids+=($!)
  wait_for "the control API of $dir" test -f "$dir/api.addr"
}

echo "==> starting $NODES nodes in $WORK"
"$PVL" init --dir "$WORK/node-0" --listen /ip4/127.0.0.1/tcp/0 >/dev/null
start "$WORK/node-0"
BOOT=$("$PVL" id --dir "$WORK/node-0" --json | json 'd["listen_addrs"][0]')
echo "    bootstrap node: $BOOT"
for i in $(seq 1 $((NODES - 1))); do
  # Provider i: price 10*i, eta 900/i ms: the cheapest is the slowest.
  "$PVL" init --dir "$WORK/node-$i" --listen /ip4/127.0.0.1/tcp/0 --bootstrap "$BOOT" \
    --builtin "sha256:$((10 * i)):$((900 / i))" >/dev/null
  start "$WORK/node-$i"
done

knows_all() { [ "$("$PVL" peers --dir "$1" --json | json 'len(d)')" -ge $((NODES - 1)) ]; }
for i in $(seq 0 $((NODES - 1))); do
  wait_for "node-$i to know every other node" knows_all "$WORK/node-$i"
done
echo "==> every node knows the $((NODES - 1)) others (Kademlia); peers of node-0:"
"$PVL" peers --dir "$WORK/node-0"

LAST=$((NODES - 1))
echo "==> node-$LAST publishes an intent"
"$PVL" intent publish --dir "$WORK/node-$LAST" --capability sha256 --input "hello, pervasive world" \
  --budget 10 --deadline 30s --strategy lowest-cost | tee "$WORK/published.txt"
TRACE=$(awk '/^trace /{print $2}' "$WORK/published.txt")

has_trace() { "$PVL" trace list --dir "$1" --json | json "any(t['trace_id'] == '$TRACE' for t in d)" | grep -q True; }
for i in $(seq 0 $((NODES - 1))); do
  wait_for "the intent in node-$i's trace store" has_trace "$WORK/node-$i"
done
echo "==> the intent is in every node's trace store; node-0 sees:"
"$PVL" trace list --dir "$WORK/node-0"
"$PVL" trace show "$TRACE" --dir "$WORK/node-0"

echo "==> contract-net: node-0 asks for sha256 of 'hello', lowest cost wins"
"$PVL" intent publish --dir "$WORK/node-0" --capability sha256 --input hello --budget 100 \
  --deadline 30s --strategy lowest-cost --min-offers $((NODES - 1)) --window 5s --wait | tee "$WORK/auction.txt"
grep -q '^completed by' "$WORK/auction.txt" || { echo "the auction did not complete"; exit 1; }
echo "==> the same with the fastest strategy"
"$PVL" intent publish --dir "$WORK/node-0" --capability sha256 --input hello --budget 100 \
  --deadline 30s --strategy fastest --min-offers $((NODES - 1)) --window 5s --wait | tee "$WORK/fastest.txt"
grep -q '^completed by' "$WORK/fastest.txt" || { echo "the auction did not complete"; exit 1; }
TRACE=$(awk '/^trace /{print $2}' "$WORK/fastest.txt")
echo "==> the trace of the last auction, as node-0 stored it"
"$PVL" trace show "$TRACE" --dir "$WORK/node-0"
"$PVL" trace analyze "$TRACE" --dir "$WORK/node-0"

echo "==> exports and offline verification"
"$PVL" trace export "$TRACE" --dir "$WORK/node-0" --format dot --out "$WORK/trace.dot"
"$PVL" trace export "$TRACE" --dir "$WORK/node-0" --format json --out "$WORK/trace.json"
"$PVL" trace export "$TRACE" --dir "$WORK/node-0" --format bundle --out "$WORK/trace.bundle"
"$PVL" trace verify "$WORK/trace.bundle"

echo "==> stopping the nodes (SIGTERM)"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
pids=()
[ $status -eq 0 ] || { echo "a node did not stop cleanly"; exit 1; }
echo "demo OK: exports in $WORK"
