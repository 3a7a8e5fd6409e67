#!/usr/bin/env bash
# Soak: a uniperf server (TAP, or the server image under QEMU with --target image) under many
# misbehaving iperf3 clients interleaved with good stock ones (benches/soak.py), in a network
# namespace made for the run (198.18.0.0/15 only). Reports good clients served, how each kind of
# misbehaving client ended, and the server's heap in use and its high-water mark after a warm-up
# test and after a last good test at the end (the `uniperf: heap:` lines the image prints with
# `uniperf.heapstats` and the TAP server with UNIPERF_HEAPSTATS=1); on TAP also VmRSS and VmHWM,
# which move with glibc keeping freed pages and so cannot show a leak alone.
#
# usage: benches/soak.sh [--bad N] [--good N] [--parallel N] [--target tap|image] [--mem MB]
#                        [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/netns.sh
source scripts/netns.sh

BAD=1000 GOOD=50 PARALLEL=4 BUILD=1 TARGET=tap IMAGE_MEM=128
while (($#)); do
    case $1 in
        --bad) BAD=$2; shift 2 ;;
        --good) GOOD=$2; shift 2 ;;
        --parallel) PARALLEL=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --target) TARGET=$2; shift 2 ;;
        --mem) IMAGE_MEM=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

netns_init
[[ $TARGET == tap || $TARGET == image ]] || { echo "--target: tap or image, not '$TARGET'" >&2; exit 2; }
WORK=$(mktemp -d /tmp/uniperf-soak.XXXXXX)
trap 'netns_cleanup; rm -rf "$WORK"' EXIT
netns_new NS
if [[ $TARGET == image ]]; then
    if ((BUILD)); then scripts/build-image.sh >/dev/null; fi
    netns_topo_guests "$NS" 1
    netns_spawn_host SRV "$WORK/server.out" "$WORK/server.err" \
        scripts/qemu.sh --mem "$IMAGE_MEM" --netns "$NS" --tap tap0 \
        --kernel "${UNIPERF_IMAGE:-$PWD/images/target/x86_64-unknown-none/release/uniperf-image}" \
        -- -s --ip 198.18.0.2/24 --max-tests 4 --idle-timeout 2 uniperf.heapstats
    netns_wait_for_line "$WORK/server.out" "uniperf: ready: listening on 198.18.0.2:5201" 60 "$SRV"
    CONSOLE=$WORK/server.out
else
    if ((BUILD)); then
        cargo build --release
    fi
    BIN=${UNIPERF_BIN:-"${CARGO_TARGET_DIR:-$PWD/target}/release/uniperf"}
    netns_topo_tap "$NS"
    netns_spawn SRV "$NS" "$WORK/server.out" "$WORK/server.err" \
        env UNIPERF_HEAPSTATS=1 "$BIN" -s --tap tap0 --ip 198.18.0.2/24 --max-tests 4 --idle-timeout 2
    netns_wait_for_line "$WORK/server.err" "uniperf: ready: listening on 198.18.0.2:5201" 15 "$SRV"
    CONSOLE=$WORK/server.err
fi

# heap: "IN_USE HIGH_WATER" in bytes from the server's last heap line.
heap() {
    grep -a "uniperf: heap:" "$CONSOLE" | tail -n 1 |
        sed -E 's/.*: ([0-9]+) B in use, high-water ([0-9]+) B.*/\1 \2/'
}
# rss: "RSS HWM" in KiB of the TAP server process.
rss() {
    echo "$(grep -E "^VmRSS:" "/proc/$SRV/status" | awk '{print $2}') $(grep -E "^VmHWM:" "/proc/$SRV/status" | awk '{print $2}')"
}
ip netns exec "$NS" iperf3 -c 198.18.0.2 -t 1 -J >/dev/null
sleep 0.5
read -r M0 H0 <<<"$(heap)"
if [[ $TARGET == tap ]]; then read -r R0 RH0 <<<"$(rss)"; fi
echo "== soak ($TARGET): $BAD misbehaving clients ($PARALLEL at a time) and $GOOD good ones" >&2
RC=0
ip netns exec "$NS" timeout $((120 + BAD / 2 + GOOD * 5)) \
    python3 benches/soak.py --host 198.18.0.2 --bad "$BAD" --good "$GOOD" --parallel "$PARALLEL" \
    >"$WORK/soak.json" || RC=$?
sleep 3   # let the last stalled connections time out
# One more good test, so the heap line after it shows what the soak left behind.
ip netns exec "$NS" iperf3 -c 198.18.0.2 -t 1 -J >/dev/null || RC=1
sleep 0.5
read -r M1 H1 <<<"$(heap)"
if [[ $TARGET == tap ]]; then read -r R1 RH1 <<<"$(rss)"; fi
ALIVE=yes
kill -0 "$SRV" 2>/dev/null || ALIVE=no
cat "$WORK/soak.json"
echo "server alive: $ALIVE; panics: $(grep -ac panic "$CONSOLE" || true)"
if [[ $TARGET == image ]]; then
    echo "heap (bytes): in use $M0 -> $M1, high-water $H0 -> $H1; refused allocations: $(grep -a "uniperf: heap:" "$CONSOLE" | tail -n 1 | sed -E 's/.*, ([0-9]+) allocations refused.*/\1/')"
else
    echo "heap (bytes): in use $M0 -> $M1, high-water $H0 -> $H1"
    echo "memory (KiB): VmRSS $R0 -> $R1, VmHWM $RH0 -> $RH1"
fi
[[ $ALIVE == yes && $RC == 0 ]]
