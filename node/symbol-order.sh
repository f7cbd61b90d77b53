#!/usr/bin/env bash
# Regenerates node/symbol-order.txt, the list of functions a running node executes, which
# node/build.rs hands to the linker so they sit together in the release binary (see there).
#
# It builds the release binaries, runs a 10-node `pvl-testnet bench` (small counts) with the
# requester (node-0) and one provider (node-3) under valgrind's callgrind, and lists every
# function of the `pvl` binary that ran in either, hottest (own instructions) first. Then,
# where `perf` is installed, it samples every node of a 100-node bench (a node under
# callgrind is too slow to start among 100) and adds the functions seen there: the paths of a
# large network (connection limits, lookups that fail) that 10 nodes do not take.
# Needs valgrind and python3. Its steps, timed apart on 2 cores: the release build 9 to 12
# minutes, the 10-node bench under callgrind under a minute, the 100-node bench about 3 minutes.
# Rerun it after upgrading the toolchain or libp2p: symbol names change, and functions no
# longer on the list are laid out as if there were no list.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The profiled binary is built without a list: a list does not change which functions run.
PVL_SYMBOL_ORDER=0 cargo build --release --locked -q -p pvl-node -p pvl-testnet
cp target/release/pvl "$work/pvl"

cat >"$work/wrap.sh" <<EOF
#!/usr/bin/env bash
if [ "\$1" = run ]; then
  for arg in "\$@"; do
    case "\$arg" in
      */node-0|*/node-3)
        exec valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.\$(basename "\$arg")" \\
          --dump-instr=no --dump-line=no --demangle=no --compress-strings=no "$work/pvl" "\$@" ;;
    esac
  done
fi
exec "$work/pvl" "\$@"
EOF
chmod +x "$work/wrap.sh"

PVL_BIN="$work/wrap.sh" target/release/pvl-testnet bench --nodes 10 --intents 20 --rounds 5 \
  --load-rounds 20 --dir "$work/testnet" >"$work/bench.log" 2>&1 || {
  tail -30 "$work/bench.log"; exit 1; }

python3 - "$work/pvl" "$work"/callgrind.* >"$work/profiled.txt" <<'EOF'
"""Functions of one object that ran, from callgrind files, hottest (own cost) first."""
import collections
import re
import sys

binary, files = sys.argv[1], sys.argv[2:]
cost = collections.Counter()
for path in files:
    ob = fn = None
    after_calls = False
    for line in open(path, errors="replace"):
        if line.startswith("ob="):
            ob = line[3:].strip()
        elif line.startswith("fn="):
            # Recursion levels are marked "'2", "'3"...; the symbol is the same.
            fn = re.sub(r"'\d+$", "", line[3:].strip())
            if ob == binary:
                cost[fn] += 0
        elif line.startswith("calls="):
            after_calls = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_calls:  # the inclusive cost of a call, not this function's own
                after_calls = False
            elif ob == binary and fn is not None:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    cost[fn] += int(parts[1])
for name, _ in sorted(cost.items(), key=lambda item: (-item[1], item[0])):
    print(name)
EOF
if command -v perf >/dev/null 2>&1; then
  rm -rf "$work/testnet"
  PVL_BIN="$work/pvl" perf record -q -F 3999 -o "$work/perf.data" -- \
    target/release/pvl-testnet bench --nodes 100 --intents 100 --rounds 10 --load-rounds 100 \
    --dir "$work/testnet" >"$work/bench100.log" 2>&1 || { tail -30 "$work/bench100.log"; exit 1; }
  perf report -i "$work/perf.data" --no-demangle --dsos pvl --sort sym --stdio -F sym 2>/dev/null |
    sed -nE 's/^ +\[\.\] +([^ ]+) *$/\1/p' >"$work/sampled.txt"
else
  echo "perf not found: the list has the 10-node profile only"
  : >"$work/sampled.txt"
fi
# The callgrind list, then the sampled functions it lacks, each once; the file in the tree
# is replaced only once the whole list is made.
cat "$work/profiled.txt" "$work/sampled.txt" | awk '!seen[$0]++' >"$work/order.txt"
mv "$work/order.txt" node/symbol-order.txt
echo "node/symbol-order.txt: $(wc -l <node/symbol-order.txt) functions"
