#!/usr/bin/env bash
# The unikernel image's numbers, measured in a network namespace made for the run (br0
# 198.18.0.1/24 with tap0; guests are 198.18.0.2; removed at exit):
#
#   1. size: the ELF as built (with debug info), stripped, and the span it occupies in memory;
#   2. boot time: QEMU start (qemu.sh exec'ing QEMU) to the "ready: listening" console line,
#      median of --boots boots, microvm and pc; also the Linux guest's for reference;
#   3. the smallest -m (MB) that still serves a stock `iperf3 -c -t 1` (bisection over 4..128),
#      microvm and pc;
#   4. throughput: stock `iperf3 -c 198.18.0.2 -J` from the bridge against the server image and
#      against a Linux guest running stock `iperf3 -s` (benches/linux-guest.sh), on the identical
#      QEMU command line (scripts/qemu.sh: same machine, accelerator, memory, TAP, virtio-net;
#      only -kernel/-initrd/-append differ), -P 1 and 4, both directions (-R); ratios are
#      image / Linux from this run. On microvm both boot with ACPI on (--acpi on): Debian's
#      kernels find virtio-mmio devices only through ACPI; the image finds them either way.
#
# Rates are the receiver's (end.sum_received.bits_per_second of the client's -J output).
#
# usage: benches/image.sh [-t SECS] [--boots N] [--mem MB] [--accel tcg|kvm|auto]
#                         [--machines "microvm pc"] [--only size,boot,mem,throughput]
#                         [--nic-opts OPTS] [--no-build] [--keep DIR]
#   -t SECS      duration of each throughput run (default 5)
#   --boots N    boots per machine for the boot-time median (default 5)
#   --mem MB     guest memory for the throughput runs, both guests (default 256)
#   --only LIST  run only these parts (comma-separated)
#   --nic-opts OPTS  extra virtio-net properties for both guests (qemu.sh --nic-opts), e.g.
#                csum=off,guest_csum=off,host_tso4=off,guest_tso4=off to compare without offloads
#   --no-build   use the existing image
#   --keep DIR   copy every run's -J output and console to DIR
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../scripts/netns.sh
source scripts/netns.sh

DURATION=5
BOOTS=5
MEM=256
ACCEL=tcg
MACHINES="microvm pc"
ONLY=size,boot,mem,throughput
NIC_OPTS=
BUILD=1
KEEP=
while (($#)); do
    case $1 in
        -t) DURATION=$2; shift 2 ;;
        --boots) BOOTS=$2; shift 2 ;;
        --mem) MEM=$2; shift 2 ;;
        --accel) ACCEL=$2; shift 2 ;;
        --machines) MACHINES=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --nic-opts) NIC_OPTS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=$2; shift 2 ;;
        -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -gt 0 ]] || { echo "-t wants whole seconds > 0" >&2; exit 2; }
[[ $BOOTS =~ ^[0-9]+$ && $BOOTS -gt 0 ]] || { echo "--boots wants a count > 0" >&2; exit 2; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }

netns_init
if ((BUILD)); then
    IMAGE=$(scripts/build-image.sh)
else
    IMAGE="$PWD/images/target/x86_64-unknown-none/release/uniperf-image"
fi
[[ -f $IMAGE ]] || { echo "no image at $IMAGE (scripts/build-image.sh)" >&2; exit 1; }
if want boot || want throughput; then
    LINUX_DIR=$(benches/linux-guest.sh)
fi

WORK=$(mktemp -d /tmp/uniperf-bench-image.XXXXXX)
trap 'netns_cleanup; rm -rf "$WORK"' EXIT
# A private copy: a rebuild of images/ during the run must not change what is measured.
cp "$IMAGE" "$WORK/uniperf-image"
IMAGE_SRC=$IMAGE
IMAGE="$WORK/uniperf-image"
netns_new NS
netns_topo_guests "$NS" 1
GUEST_IP=198.18.0.2
READY="ready: listening on $GUEST_IP:5201"
# Linux under TCG cannot calibrate the TSC on microvm (no PIT/HPET reference there); QEMU's
# TCG TSC runs at the host's rate, so tell it that rate, and that the TSC is fine.
TSC_KHZ=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
LINUX_APPEND=(console=ttyS0 quiet panic=-1 tsc=reliable "tsc_early_khz=$TSC_KHZ" "linuxguest.ip=$GUEST_IP/24")
IMAGE_APPEND=(-s --ip "$GUEST_IP/24")
FAILED=0

# qemu_args KIND MACHINE MEM: the qemu.sh options for a guest (KIND image or linux).
qemu_args() {
    local kind=$1 machine=$2 mem=$3 acpi=off
    # The throughput comparison gives both guests the same command line: ACPI on for microvm.
    [[ $machine == microvm && $kind == linux ]] && acpi=on
    [[ $machine == microvm && ${COMPARE_ACPI:-0} == 1 ]] && acpi=on
    QARGS=(--accel "$ACCEL" --machine "$machine" --acpi "$acpi" --mem "$mem" --netns "$NS" --tap tap0
        --mac 52:54:00:18:00:02 --timeout 600)
    [[ -n $NIC_OPTS ]] && QARGS+=(--nic-opts "$NIC_OPTS")
    if [[ $kind == linux ]]; then
        QARGS+=(--kernel "$LINUX_DIR/vmlinuz" --initrd "$LINUX_DIR/initrd.gz" -- "${LINUX_APPEND[@]}")
    else
        QARGS+=(--kernel "$IMAGE" -- "${IMAGE_APPEND[@]}")
    fi
}

# boot_once KIND MACHINE MEM: boots, waits for the ready line, stops the guest; prints
# "SECONDS_FROM_QEMU_EXEC GUEST_MS" (GUEST_MS: the image's own "booted in N ms", or -).
boot_once() {
    qemu_args "$1" "$2" "$3"
    python3 - "$READY" scripts/qemu.sh "${QARGS[@]}" <<'PY'
import os, re, selectors, signal, subprocess, sys, time
needle, argv = sys.argv[1], sys.argv[2:]
p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
sel = selectors.DefaultSelector()
sel.register(p.stdout, selectors.EVENT_READ, "out")
sel.register(p.stderr, selectors.EVENT_READ, "err")
buf = {"out": b"", "err": b""}
t_exec = t_ready = None
deadline = time.monotonic() + 120
while t_ready is None and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.5):
        chunk = os.read(key.fileobj.fileno(), 65536)
        now = time.monotonic()
        if not chunk:
            sel.unregister(key.fileobj)
            continue
        buf[key.data] += chunk
        # qemu.sh prints the QEMU command line just before it execs QEMU.
        if t_exec is None and b"qemu.sh: " in buf["err"]:
            t_exec = now
        if key.data == "out" and needle.encode() in buf["out"]:
            t_ready = now
    if p.poll() is not None and t_ready is None:
        break
p.send_signal(signal.SIGTERM)
try:
    p.wait(10)
except subprocess.TimeoutExpired:
    p.kill()
if t_ready is None or t_exec is None:
    sys.stderr.write(buf["out"].decode(errors="replace")[-2000:] + buf["err"].decode(errors="replace")[-2000:])
    print("FAIL -")
    sys.exit(0)
m = re.search(rb"booted in (\d+) ms", buf["out"])
print(f"{t_ready - t_exec:.3f} {m.group(1).decode() if m else '-'}")
PY
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# start_guest VAR KIND MACHINE MEM LABEL: boots a server guest in the background and waits for
# its ready line; the qemu.sh PID goes into VAR.
start_guest() {
    local __var=$1 kind=$2 machine=$3 mem=$4 label=$5 sg_pid
    qemu_args "$kind" "$machine" "$mem"
    echo "   $(scripts/qemu.sh --dry-run "${QARGS[@]}")" >&2
    netns_spawn_host sg_pid "$WORK/$label.console" "$WORK/$label.err" scripts/qemu.sh "${QARGS[@]}"
    if ! netns_wait_for_line "$WORK/$label.console" "$READY" 120 "$sg_pid"; then
        sed 's/^/    /' "$WORK/$label.err" >&2 || true
        netns_stop "$sg_pid"
        return 1
    fi
    printf -v "$__var" '%s' "$sg_pid"
}

# client_rate OUT ARGS...: one stock iperf3 -c run against the guest; prints Gbit/s or FAIL.
client_rate() {
    local out=$1 pid rc=0
    shift
    netns_spawn pid "$NS" "$out" "$out.err" iperf3 -c "$GUEST_IP" -J "$@"
    netns_wait_pid "$pid" $((DURATION + 60)) || rc=$?
    local rate
    rate=$(iperf_json_gbps "$out")
    if [[ $rate == FAIL ]]; then
        FAILED=1
        echo "   failed (exit $rc): iperf3 -c $GUEST_IP $*" >&2
    fi
    if [[ -n $KEEP ]]; then
        mkdir -p "$KEEP"
        cp "$out" "$KEEP/"
    fi
    echo "$rate"
}

REPORT="$WORK/report"
: >"$REPORT"
say() { echo "$@" | tee -a "$REPORT"; }

say "uniperf image $(git describe --always --dirty 2>/dev/null || echo '?') ($IMAGE_SRC, sha256 $(sha256sum "$IMAGE" | cut -c1-12)), $(qemu-system-x86_64 --version | head -1)," \
    "accel $ACCEL, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
say

# 1. Size ------------------------------------------------------------------------------------
if want size; then
    elf=$(stat -c %s "$IMAGE")
    objcopy --strip-all "$IMAGE" "$WORK/stripped"
    stripped=$(stat -c %s "$WORK/stripped")
    # Span of the loadable segments (what the loader places in guest memory).
    span=$(readelf -lW "$IMAGE" | awk '$1 == "LOAD" { print $3, $6 }' | while read -r va size; do
        echo "$((va)) $((va + size))"
    done | sort -n | awk 'NR == 1 { lo = $1 } $2 > hi { hi = $2 } END { print hi - lo }')
    say "== size"
    say "   ELF as built (debug info):  $elf B ($((elf / 1024)) KiB)"
    say "   stripped:                   $stripped B ($((stripped / 1024)) KiB)"
    say "   loaded span (PT_LOAD):      $span B ($((span / 1024)) KiB)"
    say
fi

# 2. Boot time --------------------------------------------------------------------------------
if want boot; then
    say "== boot time: QEMU exec to the console's \"$READY\" line, median of $BOOTS boots"
    say "$(printf '   %-10s %-8s %12s %12s   %s' machine guest median min-max 'image: own "booted in" (TSC, median)')"
    for machine in $MACHINES; do
        for kind in image linux; do
            n=$BOOTS
            [[ $kind == linux ]] && n=$(((BOOTS + 1) / 2))
            : >"$WORK/boots"
            : >"$WORK/guestms"
            for ((i = 0; i < n; i++)); do
                mem=64
                [[ $kind == linux ]] && mem=$MEM
                secs=FAIL gms=-
                read -r secs gms < <(boot_once "$kind" "$machine" "$mem") || true
                if [[ $secs == FAIL ]]; then
                    FAILED=1
                    echo "   boot $((i + 1)) of $kind on $machine failed" >&2
                    continue
                fi
                echo "$secs" >>"$WORK/boots"
                [[ $gms != - ]] && echo "$gms" >>"$WORK/guestms"
            done
            med=$(median <"$WORK/boots")
            range=$(sort -g "$WORK/boots" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.2f-%.2f", lo, hi; else print "-" }')
            own=$(median <"$WORK/guestms")
            [[ $own != - ]] && own="$own ms"
            say "$(printf '   %-10s %-8s %11ss %12s   %s' "$machine" "$kind" "$med" "$range" "$own")"
        done
    done
    say "   (image: -m 64, ACPI off on microvm; Linux guest: -m $MEM, ACPI on on microvm, $(((BOOTS + 1) / 2)) boots,"
    say "    -append \"${LINUX_APPEND[*]}\")"
    say
fi

# 3. Smallest -m ------------------------------------------------------------------------------
# serves_at MACHINE MB: boots the image with -m MB; true if a stock iperf3 -c -t 1 succeeds.
# A failure is tried once more, so that a hiccup of the loaded host does not pass for a limit.
serves_at() {
    local machine=$1 mb=$2
    for _ in 1 2; do
        if serves_once "$machine" "$mb"; then
            return 0
        fi
    done
    return 1
}

serves_once() {
    local machine=$1 mb=$2 pid ok=1 why=
    qemu_args image "$machine" "$mb"
    rm -f "$WORK/mem.json" "$WORK/mem.json.err"
    netns_spawn_host pid "$WORK/mem.console" "$WORK/mem.err" scripts/qemu.sh "${QARGS[@]}"
    if netns_wait_for_line "$WORK/mem.console" "$READY" 30 "$pid" 2>/dev/null; then
        local c rc=0
        netns_spawn c "$NS" "$WORK/mem.json" "$WORK/mem.json.err" iperf3 -c "$GUEST_IP" -t 1 -J
        netns_wait_pid "$c" 20 || rc=$?
        if [[ $rc == 0 && $(iperf_json_gbps "$WORK/mem.json" 2>/dev/null) != FAIL ]]; then
            ok=0
        else
            why="iperf3 ($( ((rc == 124)) && echo "killed after 20 s" || echo "exit $rc")): $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("error", "?"))' "$WORK/mem.json" 2>/dev/null || echo '?')"
        fi
    else
        why="no ready line"
    fi
    netns_stop "$pid"
    local said
    said=$(grep -m1 -E 'error|panic' "$WORK/mem.console" 2>/dev/null | tr -d '\r' || true)
    echo "   -m $mb on $machine: $( ((ok == 0)) && echo serves || echo "fails: $why${said:+; console: $said}")" >&2
    return "$ok"
}

if want mem; then
    say "== smallest -m (MB) that serves a stock iperf3 -c -t 1 (bisection over 4..128)"
    for machine in $MACHINES; do
        lo=4 hi=128
        if serves_at "$machine" "$lo"; then
            say "   $machine: $lo MB or less"
            continue
        fi
        if ! serves_at "$machine" "$hi"; then
            say "   $machine: more than $hi MB (or broken)"
            FAILED=1
            continue
        fi
        # Invariant: lo fails, hi serves.
        while ((hi - lo > 1)); do
            mid=$(((lo + hi) / 2))
            if serves_at "$machine" "$mid"; then hi=$mid; else lo=$mid; fi
        done
        say "   $machine: $hi MB (fails at $lo MB)"
    done
    say
fi

# 4. Throughput -------------------------------------------------------------------------------
MODES=("1:" "1:-R" "4:" "4:-R")
if want throughput; then
    COMPARE_ACPI=1
    declare -A RATE
    say "== throughput: stock iperf3 -c $GUEST_IP -t $DURATION from br0; image vs Linux guest, -m $MEM"
    for machine in $MACHINES; do
        for kind in image linux; do
            echo "-- $kind on $machine" >&2
            if ! start_guest pid "$kind" "$machine" "$MEM" "$kind-$machine"; then
                FAILED=1
                for m in "${MODES[@]}"; do RATE[$machine:$kind:$m]=FAIL; done
                continue
            fi
            for m in "${MODES[@]}"; do
                p=${m%%:*} r=${m#*:}
                RATE[$machine:$kind:$m]=$(client_rate "$WORK/$kind-$machine-P$p$r.json" -t "$DURATION" -P "$p" ${r:+"$r"})
                echo "   -P $p ${r:-  } ${RATE[$machine:$kind:$m]} Gbit/s" >&2
            done
            netns_stop "$pid"
            if [[ -n $KEEP ]]; then
                mkdir -p "$KEEP"
                cp "$WORK/$kind-$machine.console" "$KEEP/"
            fi
        done
    done
    say
    say "$(printf '   %-8s %-4s %-8s | %-14s %-14s | %-8s' machine -P flags 'image Gbit/s' 'Linux Gbit/s' 'ratio')"
    say "   $(printf '%.0s-' {1..66})"
    for machine in $MACHINES; do
        for m in "${MODES[@]}"; do
            p=${m%%:*} r=${m#*:}
            a=${RATE[$machine:image:$m]} b=${RATE[$machine:linux:$m]}
            say "$(printf '   %-8s %-4s %-8s | %-14s %-14s | %-8s' "$machine" "$p" "${r:-(none)}" "$a" "$b" "$(ratio "$a" "$b")")"
        done
    done
    say
    say "   Without -R the host sends and the guest receives; with -R the guest sends."
    say "   Command lines (qemu.sh; -append differs, the rest is identical per machine):"
    for machine in $MACHINES; do
        for kind in image linux; do
            qemu_args "$kind" "$machine" "$MEM"
            say "     $(scripts/qemu.sh --dry-run "${QARGS[@]}")"
        done
    done
    say
fi

say "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
if [[ -n $KEEP ]]; then
    mkdir -p "$KEEP"
    cp "$REPORT" "$KEEP/report.txt"
fi
exit "$FAILED"
