#!/usr/bin/env bash
# Boots Debian's Xen 4.17 under QEMU TCG with the uniperf image itself as a PVH dom0 (no
# Linux): Xen's PVH dom0 builder passes start info v0 without a memory map, so this shows the
# image asking XENMEM_memory_map, finding Xen, and saying clearly that a dom0 has no netback to
# connect netfront to. Xen wants an IOMMU for a PVH dom0: QEMU's amd-iommu (TCG's CPU is AMD).
# QEMU gets no network device at all, and runs in a network namespace made for the run.
#
# usage: scripts/xen/pvh-dom0.sh [--image FILE] [--timeout SECS] [--out FILE] [-- IMAGE ARGS…]
#   IMAGE ARGS   the image's command line (default: -s --ip 198.18.0.2/24)
#   --out FILE   where Xen's serial console goes (default: a temporary file, printed)
# Prints the console. Exit status: the image's (`uniperf: exit status N` on the console,
# relayed by Xen as `(d0) …`); 124 if it printed none within the timeout (default 180 s);
# 125 if QEMU failed; 126 bad usage or set-up (needs root and scripts/xen/fetch.sh).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
QEMU=${QEMU:-qemu-system-x86_64}
CACHE=$(realpath -m "${UNIPERF_CACHE:-$ROOT/.cache}")
XEN=$CACHE/xen/xen
IMAGE="$ROOT/images/target/x86_64-unknown-none/release/uniperf-image"
TIMEOUT=180
OUT=
CPU=${RIG_CPU:-max,-xsave,-avx,-avx2}

die() {
    echo "pvh-dom0.sh: $*" >&2
    exit 126
}
while (($#)); do
    case $1 in
        --image) [[ $# -ge 2 ]] || die "--image needs a file"; IMAGE=$2; shift 2 ;;
        --timeout) [[ $# -ge 2 ]] || die "--timeout needs seconds"; TIMEOUT=$2; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a file"; OUT=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
ARGS=("$@")
((${#ARGS[@]})) || ARGS=(-s --ip 198.18.0.2/24)
[[ $TIMEOUT =~ ^[0-9]+$ && $TIMEOUT -gt 0 ]] || die "--timeout wants whole seconds, not '$TIMEOUT'"
[[ -f $XEN ]] || die "no Xen at $XEN (run scripts/xen/fetch.sh)"
[[ -f $IMAGE ]] || die "no image at $IMAGE (scripts/build-image.sh)"
for a in "${ARGS[@]}"; do
    [[ $a != *,* ]] || die "a comma in '$a' would split QEMU's -initrd"
done
[[ $(id -u) == 0 ]] || die "needs root (a network namespace for QEMU)"
[[ -n $OUT ]] || OUT=$(mktemp /tmp/uniperf-pvh-dom0.XXXXXX)

NS="uniperf-pvhd0-$$"
ip netns add "$NS" || die "cannot create network namespace $NS"
QPID=
cleanup() {
    [[ -n $QPID ]] && kill "$QPID" 2>/dev/null && wait "$QPID" 2>/dev/null
    ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT

# No `noreboot`: Xen halts when dom0 shuts down; the console line is what ends the run.
XEN_ARGS="console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0=pvh dom0_mem=64M,max:64M iommu=1"
ip netns exec "$NS" setpriv --pdeathsig KILL "$QEMU" -accel tcg -machine q35 -cpu "$CPU" -m 1024 -smp 1 \
    -nodefaults -display none -no-reboot -serial stdio -monitor none -device amd-iommu \
    -kernel "$XEN" -append "$XEN_ARGS" -initrd "$IMAGE ${ARGS[*]}" </dev/null >"$OUT" 2>&1 &
QPID=$!
T0=$SECONDS
status=124
while ((SECONDS - T0 < TIMEOUT)); do
    if line=$(grep -a -m1 -o 'uniperf: exit status [0-9]*' "$OUT"); then
        status=${line##* }
        break
    fi
    if grep -a -q 'Panic on CPU' "$OUT"; then
        sleep 1 # the rest of Xen's panic message
        status=125
        break
    fi
    if ! kill -0 "$QPID" 2>/dev/null; then
        wait "$QPID"
        echo "pvh-dom0.sh: QEMU exited (status $?) before the image's exit status line" >&2
        status=125
        QPID=
        break
    fi
    sleep 0.5
done
cat "$OUT"
echo "pvh-dom0.sh: console in $OUT; $((SECONDS - T0)) s; status $status" >&2
exit "$status"
