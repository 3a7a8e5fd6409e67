#!/usr/bin/env bash
# Interrupt-driven idle of the unikernel image under QEMU, measured in a network namespace made
# for the run (br0 198.18.0.1/24 with tap0 and tap1; server guest 198.18.0.2, client guest
# 198.18.0.3; removed at exit):
#
#   1. idle CPU: the server image boots and waits for clients; the CPU time of its QEMU
#      process (utime + stime from /proc/PID/stat) over --idle-secs seconds, as % of one core,
#      once with `uniperf.idle=poll` (the busy-poll wait) and once with the default (halt);
#   2. throughput in the same run: stock `iperf3 -c` from the bridge against the server image,
#      the client image against stock `iperf3 -s` on the bridge, then the client image (`-c 198.18.0.2 -J`) against the server image, both -t SECS; the
#      rates are the receiver's.
#
# usage: benches/idle.sh [-t SECS] [--idle-secs N] [--machine microvm|pc|q35] [--mem MB]
#                        [--modes "poll halt"] [--no-build] [--keep DIR]
#   --keep DIR   copy every console and -J output to DIR
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/netns.sh
source scripts/netns.sh

DURATION=5
IDLE_SECS=10
MACHINE=microvm
MEM=256
MODES="poll halt"
BUILD=1
KEEP=
while (($#)); do
    case $1 in
        -t) DURATION=$2; shift 2 ;;
        --idle-secs) IDLE_SECS=$2; shift 2 ;;
        --machine) MACHINE=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "idle.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

netns_init
WORK=$(mktemp -d)
trap 'netns_cleanup; if [[ -n $KEEP ]]; then mkdir -p "$KEEP"; cp -r "$WORK"/. "$KEEP"/; fi; rm -rf "$WORK"' EXIT
if ((BUILD)); then scripts/build-image.sh >/dev/null; fi
netns_new NS
netns_topo_guests "$NS" 2
TCK=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime of PID, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# qemu_pid WRAPPER_PID: the QEMU process qemu.sh started (its child).
qemu_pid() {
    local i
    for ((i = 0; i < 100; i++)); do
        local kids
        kids=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
        for k in $kids; do
            if [[ $(readlink "/proc/$k/exe" 2>/dev/null) == *qemu-system* ]]; then
                echo "$k"
                return 0
            fi
            # qemu.sh may exec through `ip netns exec`: one level further down.
            for g in $(cat "/proc/$k/task/$k/children" 2>/dev/null || true); do
                if [[ $(readlink "/proc/$g/exe" 2>/dev/null) == *qemu-system* ]]; then
                    echo "$g"
                    return 0
                fi
            done
        done
        sleep 0.05
    done
    return 1
}

for mode in $MODES; do
    extra=()
    [[ $mode == poll ]] && extra=(uniperf.idle=poll)
    netns_spawn_host SPID "$WORK/server-$mode.out" "$WORK/server-$mode.err" \
        scripts/qemu.sh --machine "$MACHINE" --mem "$MEM" --netns "$NS" --tap tap0 --timeout 300 \
        -- -s --ip 198.18.0.2/24 -V "${extra[@]}"
    netns_wait_for_line "$WORK/server-$mode.out" "ready: listening" 60 "$SPID"
    grep -h "uniperf: idle:" "$WORK/server-$mode.out" | sed "s/^/[$mode] /"
    QPID=$(qemu_pid "$SPID")
    sleep 1
    t0=$(cpu_ticks "$QPID")
    sleep "$IDLE_SECS"
    t1=$(cpu_ticks "$QPID")
    pct=$(awk -v d=$((t1 - t0)) -v hz="$TCK" -v s="$IDLE_SECS" 'BEGIN { printf "%.1f", 100 * d / hz / s }')
    echo "[$mode] idle server image: QEMU used ${pct}% of a core over ${IDLE_SECS} s"

    ip netns exec "$NS" iperf3 -c 198.18.0.2 -B 198.18.0.1 -t "$DURATION" -J >"$WORK/stock-$mode.json" || true
    stock=$(iperf_json_gbps "$WORK/stock-$mode.json")
    echo "[$mode] stock iperf3 -c -> server image: $stock Gbit/s"

    netns_spawn SIPID "$NS" "$WORK/iperf3-s-$mode.json" "$WORK/iperf3-s-$mode.err" iperf3 -s -B 198.18.0.1 -1 -J
    netns_wait_port "$NS" 5201 10
    rc=0
    scripts/qemu.sh --machine "$MACHINE" --mem "$MEM" --netns "$NS" --tap tap1 --timeout $((DURATION + 60)) \
        -- -c 198.18.0.1 --ip 198.18.0.3/24 -t "$DURATION" -J -V "${extra[@]}" >"$WORK/client-stock-$mode.out" \
        2>"$WORK/client-stock-$mode.err" || rc=$?
    netns_wait_pid "$SIPID" 10 || true
    tostock=$(iperf_json_gbps "$WORK/iperf3-s-$mode.json")
    echo "[$mode] client image -> stock iperf3 -s: $tostock Gbit/s (client exit $rc)"
    grep -h "uniperf: idle:" "$WORK/client-stock-$mode.out" | sed "s/^/[$mode] client: /"

    rc=0
    s0=$(cpu_ticks "$QPID")
    netns_spawn_host CPID "$WORK/client-$mode.out" "$WORK/client-$mode.err" \
        scripts/qemu.sh --machine "$MACHINE" --mem "$MEM" --netns "$NS" --tap tap1 --timeout $((DURATION + 60)) \
        -- -c 198.18.0.2 --ip 198.18.0.3/24 -t "$DURATION" -J -V "${extra[@]}"
    CQPID=$(qemu_pid "$CPID")
    c0=$(cpu_ticks "$CQPID")
    sleep "$DURATION"
    c1=$(cpu_ticks "$CQPID" 2>/dev/null || echo "$c0")
    s1=$(cpu_ticks "$QPID")
    netns_wait_pid "$CPID" 90 || rc=$?
    echo "[$mode] during the pair test (${DURATION} s): client QEMU $(awk -v d=$((c1 - c0)) -v hz="$TCK" -v s="$DURATION" 'BEGIN { printf "%.0f", 100 * d / hz / s }')%," \
        "server QEMU $(awk -v d=$((s1 - s0)) -v hz="$TCK" -v s="$DURATION" 'BEGIN { printf "%.0f", 100 * d / hz / s }')% of a core"
    python3 - "$WORK/client-$mode.out" >"$WORK/client-$mode.json" <<'PY'
import json, sys
text = open(sys.argv[1], errors="replace").read()
start = text.find("{\n")
end = text.rfind("\n}")
print(text[start:end + 2] if start >= 0 and end > start else "{}")
PY
    pair=$(iperf_json_gbps "$WORK/client-$mode.json")
    echo "[$mode] client image -> server image: $pair Gbit/s (client exit $rc)"
    grep -h "uniperf: idle:" "$WORK/client-$mode.out" | sed "s/^/[$mode] client: /"
    echo "[$mode] ratio image<>image / stock->image: $(ratio "$pair" "$stock"), / image->stock: $(ratio "$pair" "$tostock")"
    netns_stop "$SPID"
    grep -h "uniperf: idle:\|uniperf: nic:.*heap" "$WORK/server-$mode.out" | sed "s/^/[$mode] server: /"
done
