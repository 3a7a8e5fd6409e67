#!/usr/bin/env bash
# Macro throughput benchmark: uniperf (release build) on a TAP against stock iperf3, next to
# stock iperf3 ↔ iperf3 over a veth pair, in network namespaces made for this run (addresses in
# 198.18.0.0/15 only). Every run has the same duration; both directions, -P 1 and -P 4.
#
#   uniperf server:  stock `iperf3 -c 198.18.0.2` (kernel side of tap0) → `uniperf -s --tap tap0`
#   uniperf client:  `uniperf -c 198.18.0.1 --tap tap0` → stock `iperf3 -s` (kernel side of tap0)
#   reference:       stock iperf3 -c (198.18.1.2) → stock iperf3 -s (198.18.1.1) over a veth pair
#
# Rates are the receiver's (end.sum_received.bits_per_second of the client's -J output).
# One more row, -Z at -P 1, has the stock sender send with sendfile(2) (no copy from user
# space): where uniperf receives, the stock sender's own copy is what bounds the rate, and
# this row shows what the receive path does when the sender is cheaper (veth gets the same).
#
# usage: benches/throughput.sh [-t SECS] [--no-build] [--keep DIR]
#   -t SECS      duration of each run (default 5, or $DURATION)
#   --no-build   use the existing release binary
#   --keep DIR   copy every run's -J output to DIR
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/netns.sh
source scripts/netns.sh

DURATION=${DURATION:-5}
BUILD=1
KEEP=
while (($#)); do
    case $1 in
        -t) DURATION=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || { echo "-t wants whole seconds > 0" >&2; exit 2; }

netns_init
if ((BUILD)); then
    cargo build --release
fi
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/uniperf"
[[ -x $BIN ]] || { echo "no release binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d /tmp/uniperf-bench.XXXXXX)
trap 'netns_cleanup; rm -rf "$WORK"' EXIT
declare -A RATE
RUN_LIMIT=$((DURATION + 30))   # no run may take longer than this; it is killed past it
FAILED=0

# run_client KEY NS OUT CMD...: one client run, bounded in time; stores the receiver's Gbit/s
# (or FAIL) in RATE[KEY].
run_client() {
    local key=$1 ns=$2 out=$3 pid rc=0 rate
    shift 3
    netns_spawn pid "$ns" "$out" "$out.err" "$@"
    netns_wait_pid "$pid" "$RUN_LIMIT" || rc=$?
    if ((rc == 124)); then
        echo "run killed after ${RUN_LIMIT}s: $*" >&2
    fi
    rate=$(iperf_json_gbps "$out")
    if [[ $rate == FAIL ]]; then
        FAILED=1
        echo "failed (exit $rc): $*" >&2
        sed 's/^/    /' "$out.err" >&2 || true
    fi
    if [[ -n $KEEP ]]; then
        mkdir -p "$KEEP"
        cp "$out" "$KEEP/"
    fi
    RATE[$key]=$rate
    local mode=${key#*:}
    echo "   -P ${mode%%:*} ${mode#*:}  $rate Gbit/s" >&2
}

netns_new TAPNS
netns_topo_tap "$TAPNS"
netns_new SRVNS
netns_new CLINS
netns_topo_veth "$SRVNS" "$CLINS"

MODES=("1:" "1:-R" "4:" "4:-R")
ZMODE="1:-Z"   # stock sender only: uniperf has no -Z

echo "== uniperf -s on tap0, stock iperf3 -c from the kernel side (${DURATION} s per run)" >&2
netns_spawn USRV "$TAPNS" "$WORK/userver.out" "$WORK/userver.err" \
    "$BIN" -s --tap tap0 --ip 198.18.0.2/24
netns_wait_for_line "$WORK/userver.err" "uniperf: ready: listening on 198.18.0.2:5201" 15 "$USRV"
for m in "${MODES[@]}" "$ZMODE"; do
    p=${m%%:*} r=${m#*:}
    run_client "srv:$m" "$TAPNS" "$WORK/srv-P$p$r.json" \
        iperf3 -c 198.18.0.2 -t "$DURATION" -P "$p" ${r:+"$r"} -J
done
netns_stop "$USRV"

echo "== uniperf -c on tap0, stock iperf3 -s on the kernel side" >&2
netns_spawn KSRV "$TAPNS" "$WORK/kserver.out" "$WORK/kserver.err" iperf3 -s
netns_wait_port "$TAPNS" 5201 10
for m in "${MODES[@]}"; do
    p=${m%%:*} r=${m#*:}
    run_client "cli:$m" "$TAPNS" "$WORK/cli-P$p$r.json" \
        "$BIN" -c 198.18.0.1 --tap tap0 --ip 198.18.0.2/24 -t "$DURATION" -P "$p" ${r:+"$r"} -J
done
netns_stop "$KSRV"

echo "== stock iperf3 ↔ iperf3 over veth" >&2
netns_spawn VSRV "$SRVNS" "$WORK/vserver.out" "$WORK/vserver.err" iperf3 -s
netns_wait_port "$SRVNS" 5201 10
for m in "${MODES[@]}" "$ZMODE"; do
    p=${m%%:*} r=${m#*:}
    run_client "ref:$m" "$CLINS" "$WORK/ref-P$p$r.json" \
        iperf3 -c 198.18.1.1 -t "$DURATION" -P "$p" ${r:+"$r"} -J
done
netns_stop "$VSRV"

echo
echo "uniperf $(git describe --always --dirty 2>/dev/null || echo '?') vs iperf3 $(iperf3 --version | head -1 | cut -d' ' -f2)," \
    "$(nproc) CPUs, Linux $(uname -r), ${DURATION} s per run; Gbit/s at the receiver"
echo
printf '%-8s %-4s | %-24s %-24s %-18s | %-8s %-8s\n' \
    "flags" "-P" "iperf3 -c > uniperf -s" "uniperf -c > iperf3 -s" "iperf3 <> iperf3" "srv/ref" "cli/ref"
printf '%-8s %-4s | %-24s %-24s %-18s | %-8s %-8s\n' \
    "" "" "(TAP)" "(TAP)" "(veth)" "" ""
printf '%.0s-' {1..104}; echo
for m in "${MODES[@]}"; do
    p=${m%%:*} r=${m#*:}
    printf '%-8s %-4s | %-24s %-24s %-18s | %-8s %-8s\n' \
        "${r:-(none)}" "$p" "${RATE[srv:$m]}" "${RATE[cli:$m]}" "${RATE[ref:$m]}" \
        "$(ratio "${RATE[srv:$m]}" "${RATE[ref:$m]}")" "$(ratio "${RATE[cli:$m]}" "${RATE[ref:$m]}")"
done
m=$ZMODE p=${ZMODE%%:*} r=${ZMODE#*:}
printf '%-8s %-4s | %-24s %-24s %-18s | %-8s %-8s\n' \
    "$r" "$p" "${RATE[srv:$m]}" "-" "${RATE[ref:$m]}" "$(ratio "${RATE[srv:$m]}" "${RATE[ref:$m]}")" "-"
echo
echo "Without -R the client sends: uniperf receives in the first column and sends in the second;"
echo "with -R it is the other way round. Ratios are uniperf / (iperf3 ↔ iperf3 over veth)."
echo "-Z: the stock client sends with sendfile(2); compare its first column with the (none) row's"
echo "to see how much of uniperf's receive rate the stock sender's copy was holding back."
exit "$FAILED"
