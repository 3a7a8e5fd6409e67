#!/usr/bin/env bash
# Soak: a uniperf server (TAP) under many misbehaving iperf3 clients interleaved with good stock
# ones (benches/soak.py), in a network namespace made for the run (198.18.0.0/15 only). Reports
# good clients served, how each kind of misbehaving client ended, and the server's memory
# (VmRSS, VmHWM) after a warm-up test and at the end.
#
# usage: benches/soak.sh [--bad N] [--good N] [--parallel N] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/netns.sh
source scripts/netns.sh

BAD=1000 GOOD=50 PARALLEL=4 BUILD=1
while (($#)); do
    case $1 in
        --bad) BAD=$2; shift 2 ;;
        --good) GOOD=$2; shift 2 ;;
        --parallel) PARALLEL=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

netns_init
if ((BUILD)); then
    cargo build --release
fi
BIN=${UNIPERF_BIN:-"${CARGO_TARGET_DIR:-$PWD/target}/release/uniperf"}
WORK=$(mktemp -d /tmp/uniperf-soak.XXXXXX)
trap 'netns_cleanup; rm -rf "$WORK"' EXIT

netns_new NS
netns_topo_tap "$NS"
netns_spawn SRV "$NS" "$WORK/server.out" "$WORK/server.err" \
    "$BIN" -s --tap tap0 --ip 198.18.0.2/24 --max-tests 4 --idle-timeout 2
netns_wait_for_line "$WORK/server.err" "uniperf: ready: listening on 198.18.0.2:5201" 15 "$SRV"

mem() { grep -E "^$1:" "/proc/$SRV/status" | awk '{print $2}'; }
ip netns exec "$NS" iperf3 -c 198.18.0.2 -t 1 -J >/dev/null
RSS0=$(mem VmRSS) HWM0=$(mem VmHWM)
echo "== soak: $BAD misbehaving clients ($PARALLEL at a time) and $GOOD good ones" >&2
RC=0
ip netns exec "$NS" timeout $((120 + BAD / 2 + GOOD * 5)) \
    python3 benches/soak.py --host 198.18.0.2 --bad "$BAD" --good "$GOOD" --parallel "$PARALLEL" \
    >"$WORK/soak.json" || RC=$?
sleep 3   # let the last stalled connections time out
RSS1=$(mem VmRSS) HWM1=$(mem VmHWM)
ALIVE=yes
kill -0 "$SRV" 2>/dev/null || ALIVE=no
cat "$WORK/soak.json"
echo "server alive: $ALIVE; panics: $(grep -c panic "$WORK/server.err" || true)"
echo "memory (KiB): VmRSS $RSS0 -> $RSS1, VmHWM $HWM0 -> $HWM1"
[[ $ALIVE == yes && $RC == 0 ]]
