#!/usr/bin/env bash
# UDP pacing benchmark: how steadily each sender holds `-b`, per 100 ms window, and the largest
# rate each platform sends with under 0.1 % loss — uniperf against stock iperf3 on the same
# paths in the same run, in network namespaces made for this run (198.18.0.0/15 only).
#
#   uniperf sender:   `uniperf -c 198.18.0.1 --tap tap0 -u -b R` → stock `iperf3 -s` (TAP)
#   iperf3 sender:    stock `iperf3 -c 198.18.1.1 -u -b R` → stock `iperf3 -s` over a veth pair
#   uniperf sim:      `uniperf sim -u -b R` (two uniperf stacks over the simulated 10 Gbit/s link)
#   uniperf receiver: stock `iperf3 -c 198.18.0.2 -u -b R` → `uniperf -s --tap tap0` (part 2 only)
#
# Part 1, pacing: for 10M, 100M and 1G, the sender's -i 0.1 interval rates (every window of
# the test after the first) as min / max / spread relative to the target, and the loss the
# receiver saw. Part 2, the sustainable rate: the largest of a ladder of rates whose test loses
# under 0.1 % (receiver's view), per sender, with `-w 4M`: the stock receiver's default 208 KiB
# socket buffer overflows at about 1 Gbit/s whoever sends (UdpRcvbufErrors), which would measure
# the receiver, not the sender.
#
# usage: benches/pacing.sh [-t SECS] [--rates "10M 100M 1G"] [--ladder "1G 2G 4G 6G 8G 10G"]
#                          [--no-build] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/netns.sh
source scripts/netns.sh

DURATION=3
RATES="10M 100M 1G"
LADDER="1G 2G 4G 6G 8G 10G"
BUILD=1
KEEP=
while (($#)); do
    case $1 in
        -t) DURATION=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --ladder) LADDER=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 1 ]] || { echo "-t wants whole seconds > 1" >&2; exit 2; }

netns_init
if ((BUILD)); then
    cargo build --release
fi
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/uniperf"
[[ -x $BIN ]] || { echo "no release binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d /tmp/uniperf-pacing.XXXXXX)
trap 'netns_cleanup; rm -rf "$WORK"' EXIT
RUN_LIMIT=$((DURATION + 30))
FAILED=0

netns_new TAPNS
netns_topo_tap "$TAPNS"
netns_new RXNS
netns_topo_tap "$RXNS"
netns_new SRVNS
netns_new CLINS
netns_topo_veth "$SRVNS" "$CLINS"

netns_spawn KSRV "$TAPNS" "$WORK/kserver.out" "$WORK/kserver.err" iperf3 -s
netns_wait_port "$TAPNS" 5201 10
netns_spawn VSRV "$SRVNS" "$WORK/vserver.out" "$WORK/vserver.err" iperf3 -s
netns_wait_port "$SRVNS" 5201 10
netns_spawn USRV "$RXNS" "$WORK/userver.out" "$WORK/userver.err" "$BIN" -s --tap tap0 --ip 198.18.0.2/24
netns_wait_for_line "$WORK/userver.err" "uniperf: ready: listening on 198.18.0.2:5201" 15 "$USRV"

# run OUT NS|- CMD...: one bounded client run writing -J to OUT ("-" runs on the host).
run() {
    local out=$1 ns=$2 pid rc=0
    shift 2
    if [[ $ns == - ]]; then
        netns_spawn_host pid "$out" "$out.err" "$@"
    else
        netns_spawn pid "$ns" "$out" "$out.err" "$@"
    fi
    netns_wait_pid "$pid" "$RUN_LIMIT" || rc=$?
    if ((rc != 0)); then
        echo "failed (exit $rc): $*" >&2
        sed 's/^/    /' "$out.err" >&2 || true
        FAILED=1
    fi
    if [[ -n $KEEP ]]; then
        mkdir -p "$KEEP"
        cp "$out" "$KEEP/"
    fi
}

# stats FILE TARGET: "min max spread loss%" of a client's -J: the sender's interval rates
# after the first window, relative to TARGET bit/s, and the receiver's loss.
stats() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    target = float(sys.argv[2])
    rates = [i["sum"]["bits_per_second"] for i in d["intervals"] if not i["sum"].get("omitted")]
    rates = rates[1:-1] if len(rates) > 2 else rates
    r = d["end"]["sum_received"]
    loss = 100.0 * r["lost_packets"] / r["packets"] if r["packets"] else 100.0
    lo, hi = min(rates) / target, max(rates) / target
    print(f"{100*(lo-1):+.2f}% {100*(hi-1):+.2f}% {100*(hi-lo):.2f}% {loss:.3f}")
except Exception as e:
    print("FAIL FAIL FAIL FAIL")
EOF
}

to_bps() {
    python3 -c "import sys; s=sys.argv[1]; m={'K':1e3,'M':1e6,'G':1e9}; print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$1"
}

echo "== part 1: pacing per 100 ms window (${DURATION} s per run)" >&2
declare -A P
for r in $RATES; do
    bps=$(to_bps "$r")
    run "$WORK/u-$r.json" "$TAPNS" "$BIN" -c 198.18.0.1 --tap tap0 --ip 198.18.0.2/24 -u -b "$r" -t "$DURATION" -i 0.1 -J
    P[u:$r]=$(stats "$WORK/u-$r.json" "$bps")
    run "$WORK/k-$r.json" "$CLINS" iperf3 -c 198.18.1.1 -u -b "$r" -t "$DURATION" -i 0.1 -J
    P[k:$r]=$(stats "$WORK/k-$r.json" "$bps")
    run "$WORK/s-$r.json" - "$BIN" sim -u -b "$r" -t "$DURATION" -i 0.1 -J
    P[s:$r]=$(stats "$WORK/s-$r.json" "$bps")
    echo "   $r: uniperf TAP ${P[u:$r]} | iperf3 veth ${P[k:$r]} | uniperf sim ${P[s:$r]}" >&2
done

echo "== part 2: largest rate with < 0.1 % loss" >&2
declare -A BEST=([u]="none" [k]="none" [s]="none" [v]="none")
for r in $LADDER; do
    for who in u k s v; do
        case $who in
            u) run "$WORK/l-u-$r.json" "$TAPNS" "$BIN" -c 198.18.0.1 --tap tap0 --ip 198.18.0.2/24 -u -b "$r" -l 1400 -w 4M -t 2 -J ;;
            k) run "$WORK/l-k-$r.json" "$CLINS" iperf3 -c 198.18.1.1 -u -b "$r" -l 1400 -w 4M -t 2 -J ;;
            s) run "$WORK/l-s-$r.json" - "$BIN" sim -u -b "$r" -l 1400 -w 4M -t 2 -J ;;
            v) run "$WORK/l-v-$r.json" "$RXNS" iperf3 -c 198.18.0.2 -u -b "$r" -l 1400 -w 4M -t 2 -J ;;
        esac
        read -r _ _ _ loss < <(stats "$WORK/l-$who-$r.json" "$(to_bps "$r")")
        if [[ $loss != FAIL ]] && python3 -c "import sys; sys.exit(0 if float('$loss') < 0.1 else 1)"; then
            BEST[$who]=$r
        fi
        echo "   $r $who: loss $loss %" >&2
    done
done
netns_stop "$KSRV"
netns_stop "$VSRV"
netns_stop "$USRV"

echo
echo "uniperf $(git describe --always --dirty 2>/dev/null || echo '?') vs iperf3 $(iperf3 --version | head -1 | cut -d' ' -f2)," \
    "$(nproc) CPUs, Linux $(uname -r), ${DURATION} s per run"
echo
echo "Sender rate per 100 ms window relative to -b (windows 2..n-1), and the receiver's loss:"
printf '%-6s | %-34s | %-34s | %-34s\n' "-b" "uniperf -c (TAP) min/max/spread/loss%" "iperf3 -c (veth)" "uniperf sim"
printf '%.0s-' {1..118}; echo
for r in $RATES; do
    printf '%-6s | %-34s | %-34s | %-34s\n' "$r" "${P[u:$r]}" "${P[k:$r]}" "${P[s:$r]}"
done
echo
echo "Largest rate of the ladder ($LADDER) with < 0.1 % loss, -l 1400 -w 4M:"
echo "   sending: uniperf -c on TAP: ${BEST[u]}; stock iperf3 -c over veth: ${BEST[k]}; uniperf sim: ${BEST[s]}"
echo "   receiving: uniperf -s on TAP (stock iperf3 -c sending): ${BEST[v]}"
exit "$FAILED"
