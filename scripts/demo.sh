#!/usr/bin/env bash
# uniperf in one command: installs what is missing, builds the release binary and the unikernel
# image, and in network namespaces made for the run (198.18.0.0/15 only, removed at exit)
# measures two uniperf servers, each with stock `iperf3 -c` and with `uniperf -c` on a second
# TAP of the same bridge, next to stock iperf3 ↔ iperf3 over a veth pair:
#   1. `uniperf -s`, the Linux program, on tap0;
#   2. the uniperf image booted under QEMU (scripts/qemu.sh, TCG by default) on tap0.
# Prints a table of Gbit/s, the two servers side by side. Every uniperf run also writes a
# per-flow TCP log (the image sends its logs to `uniperf collect`), and `uniperf plot` draws
# them; the logs and plots stay in /tmp/uniperf-flowlogs.XXXXXX (printed at the end).
#
#   namespace A: br0 198.18.0.1/24 (kernel: stock iperf3 -c)
#                ├─ tap0  uniperf -s, then the image under QEMU   198.18.0.2
#                └─ tap1  uniperf -c                               198.18.0.3
#   namespaces B, C: veth 198.18.1.1 (iperf3 -s) ↔ 198.18.1.2 (iperf3 -c)
#
# usage: scripts/demo.sh [-t SECS] [--machine microvm|pc|q35] [--accel tcg|kvm|auto]
#   -t SECS     duration of each run (default 5)
#   --machine   QEMU machine type for the image (default microvm)
#   --accel     QEMU accelerator (default tcg; see scripts/qemu.sh)
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=netns.sh
source scripts/netns.sh

DURATION=5
MACHINE=microvm
ACCEL=tcg
while (($#)); do
    case $1 in
        -t) DURATION=$2; shift 2 ;;
        --machine) MACHINE=$2; shift 2 ;;
        --accel) ACCEL=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || { echo "-t wants whole seconds > 0" >&2; exit 2; }

netns_init
scripts/setup.sh
echo "== building the release binary"
cargo build --release
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/uniperf"
echo "== building the unikernel image"
IMAGE=$(scripts/build-image.sh)
echo "   $IMAGE ($(($(stat -c %s "$IMAGE") / 1024)) KiB with debug info)"

WORK=$(mktemp -d /tmp/uniperf-demo.XXXXXX)
trap 'netns_cleanup; rm -rf "$WORK"' EXIT
LIMIT=$((DURATION + 30))
# Flow logs and their plots outlive the demo.
FLOWLOGS=$(mktemp -d /tmp/uniperf-flowlogs.XXXXXX)
READY="ready: listening on 198.18.0.2:5201"

# client_run NS OUT CMD...: one bounded client run; sets DEMO_RATE to the receiver's Gbit/s or FAIL.
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

# measure LABEL: stock iperf3 -c and uniperf -c (tap1) against whatever serves 198.18.0.2;
# sets R_STOCK and R_UNIPERF.
measure() {
    local label=$1
    echo "== stock iperf3 -c 198.18.0.2 (kernel, via br0) for ${DURATION} s"
    client_run "$A" "$WORK/$label-stock.json" iperf3 -c 198.18.0.2 -t "$DURATION" -J
    R_STOCK=$DEMO_RATE
    echo "   $R_STOCK Gbit/s"
    echo "== uniperf -c 198.18.0.2 on tap1 (198.18.0.3) for ${DURATION} s"
    client_run "$A" "$WORK/$label-uniperf.json" \
        "$BIN" -c 198.18.0.2 --tap tap1 --ip 198.18.0.3/24 -t "$DURATION" -J --flowlog "$FLOWLOGS/$label-client.csv"
    R_UNIPERF=$DEMO_RATE
    echo "   $R_UNIPERF Gbit/s"
}

netns_new A
netns_topo_bridge "$A"
netns_new B
netns_new C
netns_topo_veth "$B" "$C"

echo "== 1. uniperf -s, the Linux program, on tap0 (198.18.0.2)"
netns_spawn SRV "$A" "$WORK/server.out" "$WORK/server.err" "$BIN" -s --tap tap0 --ip 198.18.0.2/24 \
    --flowlog "$FLOWLOGS/tap-server.csv"
netns_wait_for_line "$WORK/server.err" "uniperf: $READY" 15 "$SRV"
measure tap
R_TAP_STOCK=$R_STOCK R_TAP_UNIPERF=$R_UNIPERF
netns_stop "$SRV"

echo "== 2. the uniperf image under QEMU ($MACHINE, $ACCEL) on tap0 (198.18.0.2)"
netns_spawn COLLECT "$A" "$WORK/collect.out" "$WORK/collect.err" "$BIN" collect \
    --listen 198.18.0.1:6000 -o "$FLOWLOGS/image" --count 2 --timeout $((4 * LIMIT))
netns_wait_for_line "$WORK/collect.err" "uniperf collect: listening" 15 "$COLLECT"
netns_spawn_host VM "$WORK/vm.console" "$WORK/vm.err" scripts/qemu.sh --accel "$ACCEL" \
    --machine "$MACHINE" --mem 64 --netns "$A" --tap tap0 --mac 52:54:00:18:00:02 \
    --timeout $((4 * LIMIT)) --kernel "$IMAGE" -- -s --ip 198.18.0.2/24 --flowlog-collect 198.18.0.1:6000
if netns_wait_for_line "$WORK/vm.console" "uniperf: $READY" 60 "$VM"; then
    sed -n 's/^qemu.sh: //p' "$WORK/vm.err" | head -1 | sed 's/^/   /'
    tr -d '\r' <"$WORK/vm.console" | grep -E '^uniperf: (nic|net|memory):' | sed 's/^/   /' || true
    measure image
    R_VM_STOCK=$R_STOCK R_VM_UNIPERF=$R_UNIPERF
    netns_wait_pid "$COLLECT" 30 || true
    sed 's/^/   /' "$WORK/collect.out" "$WORK/collect.err" | grep -v listening || true
else
    R_VM_STOCK=FAIL R_VM_UNIPERF=FAIL
fi
netns_stop "$VM"

echo "== reference: stock iperf3 ↔ iperf3 over veth for ${DURATION} s"
netns_spawn VSRV "$B" "$WORK/vserver.out" "$WORK/vserver.err" iperf3 -s -1
netns_wait_port "$B" 5201 10
client_run "$C" "$WORK/reference.json" iperf3 -c 198.18.1.1 -t "$DURATION" -J
R_REF=$DEMO_RATE
echo "   $R_REF Gbit/s"
netns_stop "$VSRV"

echo
echo "Client sends for ${DURATION} s; Gbit/s at the receiver (ratio to iperf3 <> iperf3 over veth)"
echo
cell() { printf '%s (%s)' "$1" "$(ratio "$1" "$R_REF")"; }
printf '%-28s | %-22s | %-30s\n' "client \\ server" "uniperf -s on tap0" "uniperf image, QEMU $MACHINE $ACCEL"
printf '%.0s-' {1..86}; echo
printf '%-28s | %-22s | %-30s\n' "iperf3 -c (kernel, br0)" "$(cell "$R_TAP_STOCK")" "$(cell "$R_VM_STOCK")"
printf '%-28s | %-22s | %-30s\n' "uniperf -c (tap1)" "$(cell "$R_TAP_UNIPERF")" "$(cell "$R_VM_UNIPERF")"
echo
echo "Reference: stock iperf3 -c > iperf3 -s over veth: $R_REF Gbit/s"
echo "Under TCG the guest CPU is emulated: the image's column measures the emulated vCPU."
echo "Both directions, -P 4, the Linux guest on the same QEMU command line, boot time and memory: benches/image.sh"
echo "TAP program vs iperf3, both directions, -P 4: benches/throughput.sh"
echo
echo "== flow logs (CSV, columns in docs/flowlog.md) and their plots"
plot() {
    local out=$1
    shift
    "$BIN" plot "$@" -o "$out" 2>&1 | sed 's/^/   /' || true
}
plot "$FLOWLOGS/tap.png" "$FLOWLOGS"/tap-server.test*.csv "$FLOWLOGS/tap-client.csv"
plot "$FLOWLOGS/image.png" "$FLOWLOGS"/image/server-*.csv "$FLOWLOGS/image-client.csv"
echo "   $FLOWLOGS: tap-server.test1.csv (stock iperf3 -c > uniperf -s), tap-server.test2.csv and"
echo "   tap-client.csv (both ends of uniperf -c > uniperf -s), image/ (the image's logs, sent to"
echo "   uniperf collect), image-client.csv; tap.png and image.png plot them."
for r in "$R_TAP_STOCK" "$R_TAP_UNIPERF" "$R_VM_STOCK" "$R_VM_UNIPERF" "$R_REF"; do
    [[ $r != FAIL ]] || exit 1
done
