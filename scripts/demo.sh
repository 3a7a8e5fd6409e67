#!/usr/bin/env bash
# uniperf in one command: installs what is missing, builds the release binary, and in a network
# namespace made for the run (198.18.0.0/15 only, removed at exit) starts `uniperf -s` on a TAP,
# then measures it with stock `iperf3 -c` and with `uniperf -c` on a second TAP of the same
# bridge, next to stock iperf3 ↔ iperf3 over a veth pair. Prints a table of Gbit/s and ratios.
#
#   namespace A: br0 198.18.0.1/24 (kernel: stock iperf3 -c)
#                ├─ tap0  uniperf -s  198.18.0.2
#                └─ tap1  uniperf -c  198.18.0.3
#   namespaces B, C: veth 198.18.1.1 (iperf3 -s) ↔ 198.18.1.2 (iperf3 -c)
#
# usage: scripts/demo.sh [-t SECS]      (default 5 s per run; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=netns.sh
source scripts/netns.sh

DURATION=5
while (($#)); do
    case $1 in
        -t) DURATION=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || { echo "-t wants whole seconds > 0" >&2; exit 2; }

netns_init
scripts/setup.sh
echo "== building the release binary"
cargo build --release
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/uniperf"

WORK=$(mktemp -d /tmp/uniperf-demo.XXXXXX)
trap 'netns_cleanup; rm -rf "$WORK"' EXIT
LIMIT=$((DURATION + 30))

# client_run NS OUT CMD...: one bounded client run; prints the receiver's Gbit/s or FAIL.
client_run() {
    local ns=$1 out=$2 pid rc=0
    shift 2
    netns_spawn pid "$ns" "$out" "$out.err" "$@"
    netns_wait_pid "$pid" "$LIMIT" || rc=$?
    local rate
    rate=$(iperf_json_gbps "$out")
    if [[ $rate == FAIL ]]; then
        echo "   failed (exit $rc): $*" >&2
        sed 's/^/      /' "$out.err" >&2 || true
    fi
    DEMO_RATE=$rate
}

netns_new A
netns_topo_bridge "$A"
netns_new B
netns_new C
netns_topo_veth "$B" "$C"

echo "== uniperf -s on tap0 (198.18.0.2)"
netns_spawn SRV "$A" "$WORK/server.out" "$WORK/server.err" "$BIN" -s --tap tap0 --ip 198.18.0.2/24
netns_wait_for_line "$WORK/server.err" "uniperf: ready: listening on 198.18.0.2:5201" 15 "$SRV"

echo "== stock iperf3 -c 198.18.0.2 (kernel, via br0) for ${DURATION} s"
client_run "$A" "$WORK/stock-client.json" iperf3 -c 198.18.0.2 -t "$DURATION" -J
R_STOCK_CLIENT=$DEMO_RATE
echo "   $R_STOCK_CLIENT Gbit/s"

echo "== uniperf -c 198.18.0.2 on tap1 (198.18.0.3) for ${DURATION} s"
client_run "$A" "$WORK/uniperf-client.json" \
    "$BIN" -c 198.18.0.2 --tap tap1 --ip 198.18.0.3/24 -t "$DURATION" -J
R_UNIPERF_CLIENT=$DEMO_RATE
echo "   $R_UNIPERF_CLIENT Gbit/s"
netns_stop "$SRV"

echo "== reference: stock iperf3 ↔ iperf3 over veth for ${DURATION} s"
netns_spawn VSRV "$B" "$WORK/vserver.out" "$WORK/vserver.err" iperf3 -s -1
netns_wait_port "$B" 5201 10
client_run "$C" "$WORK/reference.json" iperf3 -c 198.18.1.1 -t "$DURATION" -J
R_REF=$DEMO_RATE
echo "   $R_REF Gbit/s"
netns_stop "$VSRV"

echo
echo "Client sends for ${DURATION} s; Gbit/s at the receiver; ratio = row / (iperf3 <> iperf3 over veth)"
echo
printf '%-44s %10s %8s\n' "path" "Gbit/s" "ratio"
printf '%.0s-' {1..64}; echo
printf '%-44s %10s %8s\n' "iperf3 -c (kernel)  > uniperf -s (tap0)" "$R_STOCK_CLIENT" "$(ratio "$R_STOCK_CLIENT" "$R_REF")"
printf '%-44s %10s %8s\n' "uniperf -c (tap1)   > uniperf -s (tap0)" "$R_UNIPERF_CLIENT" "$(ratio "$R_UNIPERF_CLIENT" "$R_REF")"
printf '%-44s %10s %8s\n' "iperf3 -c (veth)    > iperf3 -s (veth)" "$R_REF" "1.00"
echo
echo "For both directions, -P 4 and uniperf as a client of stock iperf3 -s: benches/throughput.sh"
[[ $R_STOCK_CLIENT != FAIL && $R_UNIPERF_CLIENT != FAIL && $R_REF != FAIL ]]
