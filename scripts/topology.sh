#!/usr/bin/env bash
# The VM test topology, made for one command and removed when it ends: a network namespace
# with bridge br0 (198.18.0.1/24, the host side, where stock iperf3 runs) and TAPs tap0 (server
# guest, 198.18.0.2) and tap1 (client guest, 198.18.0.3) as its ports. The namespace's name is
# in $UNIPERF_NS for the command. Only 198.18.0.0/15 addresses, only in this namespace;
# everything is deleted at exit (also on Ctrl-C or an error).
#
#   namespace $UNIPERF_NS:  br0 198.18.0.1/24 (iperf3 -s -B 198.18.0.1 / iperf3 -c 198.18.0.2)
#                           ├─ tap0  scripts/qemu.sh --tap tap0 -- -s --ip 198.18.0.2/24
#                           └─ tap1  scripts/qemu.sh --tap tap1 -- -c 198.18.0.1 --ip 198.18.0.3/24
#
# usage: scripts/topology.sh [--guests N] [-- CMD ARGS...]     (needs root)
#   --guests N   TAPs on the bridge, 1 to 4 (default 2: tap0, tap1)
#   CMD          runs on the host with UNIPERF_NS set; its exit status is the script's. Without
#                CMD the topology stays up until Ctrl-C (use `ip netns exec NAME …` meanwhile).
# example:
#   scripts/topology.sh -- bash -c 'scripts/qemu.sh --netns "$UNIPERF_NS" --tap tap0 --timeout 60 \
#       -- -s -1 --ip 198.18.0.2/24 & sleep 3; ip netns exec "$UNIPERF_NS" iperf3 -c 198.18.0.2 -t 2; wait'
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=netns.sh
source scripts/netns.sh

GUESTS=2
while (($#)); do
    case $1 in
        --guests) GUESTS=${2:-}; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "topology: unknown argument '$1' (the command goes after --)" >&2; exit 2 ;;
    esac
done
[[ $GUESTS =~ ^[1-4]$ ]] || { echo "topology: --guests wants 1 to 4" >&2; exit 2; }

netns_init
CMD_PGID=
# At exit, first whatever the command left running in the background (e.g. a qemu.sh it did
# not wait for): its process group, by ID; then what netns_cleanup knows.
topology_cleanup() {
    local i
    if [[ -n $CMD_PGID ]] && kill -0 -- "-$CMD_PGID" 2>/dev/null; then
        kill -TERM -- "-$CMD_PGID" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            kill -0 -- "-$CMD_PGID" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL -- "-$CMD_PGID" 2>/dev/null || true
    fi
    netns_cleanup
}
trap topology_cleanup EXIT
netns_new UNIPERF_NS
netns_topo_guests "$UNIPERF_NS" "$GUESTS"
export UNIPERF_NS

if (($#)); then
    # Job control gives the command a process group of its own (so the cleanup can reach what
    # it leaves behind); `fg` hands it the terminal and returns its exit status.
    set -m
    "$@" &
    CMD_PGID=$!
    rc=0
    fg %% >/dev/null || rc=$?
    set +m
    exit "$rc"
fi
echo "topology: namespace $UNIPERF_NS: br0 198.18.0.1/24 with tap0..tap$((GUESTS - 1)); Ctrl-C removes it"
# Interruptible: the INT/TERM traps exit, and the EXIT trap removes the namespace.
sleep infinity &
NETNS_PIDS+=("$!")
wait "$!"
