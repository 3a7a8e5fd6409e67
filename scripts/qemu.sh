#!/usr/bin/env bash
# Boots the uniperf unikernel (or any PVH/Linux kernel) under QEMU with one virtio-net NIC on a
# TAP device, the serial console on stdout, and passes the guest's exit status through.
#
# usage: scripts/qemu.sh [options] -- KERNEL-CMDLINE...
#   --accel kvm|tcg|auto   accelerator (default tcg: /dev/kvm on the project's machines is
#                          kvm_pvm, which runs guests unreliably; auto = kvm if it works, else tcg)
#   --machine microvm|pc|q35   machine type (default microvm). microvm: `-M microvm,acpi=off`
#                          with virtio-net-device (virtio-mmio); pc/q35: virtio-net-pci
#   --acpi on|off          microvm's ACPI (default off; then QEMU puts the virtio-mmio
#                          device on the command line; Linux guests need on)
#   --mem MB               guest memory (default 64)
#   --netns NS             run QEMU inside this existing network namespace (default: the
#                          current one)
#   --tap IF               TAP device (default tap0); created in NS if missing and deleted at
#                          exit, or an existing one used as is (e.g. a bridge port)
#   --mac MAC              the NIC's MAC (default 52:54:00:xx:xx:xx derived from IF, so two
#                          guests on two TAPs of one bridge differ)
#   --timeout SECS         stop QEMU after SECS seconds (default: none)
#   --kernel FILE          kernel (default images/target/x86_64-unknown-none/release/uniperf-image,
#                          built by scripts/build-image.sh)
#   --initrd FILE          initrd, for Linux guests
#   --nic-opts OPTS        more virtio-net device properties, e.g. csum=off,guest_csum=off
#   --qemu-arg ARG         one more QEMU argument (repeatable), e.g. --qemu-arg -smp --qemu-arg 2
#   --dry-run              print the QEMU command line and exit
#   KERNEL-CMDLINE         the words after `--`, joined by spaces, become -append
#
# Exit status:
#   0..123  the guest's exit code: the image writes v to port 0xf4 (isa-debug-exit) and QEMU
#           exits with (v<<1)|1, so QEMU 1 -> 0, 3 -> 1, 5 -> 2 (crash), 2k+1 -> k
#   124     --timeout passed; QEMU was stopped
#   125     QEMU ended without a guest exit code: QEMU error (e.g. TAP busy, bad option), guest
#           reset or triple fault (-no-reboot), QEMU killed
#   126     bad usage or set-up (this script's own error)
#   128+N   this script got signal N; QEMU was stopped first
# QEMU's own messages (stderr) are copied to stderr when it exits. QEMU is stopped by its PID,
# and dies with this script even if the script is killed with SIGKILL (parent-death signal).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
QEMU=${QEMU:-qemu-system-x86_64}

ACCEL=tcg
MACHINE=microvm
ACPI=off
NIC_OPTS=
MEM=64
NETNS=
TAP=tap0
MAC=
TIMEOUT=0
KERNEL="$ROOT/images/target/x86_64-unknown-none/release/uniperf-image"
INITRD=
EXTRA=()
DRY_RUN=0

die() {
    echo "qemu.sh: $*" >&2
    exit 126
}

need() {
    [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"
}

while (($#)); do
    case $1 in
        --accel) need "$@"; ACCEL=$2; shift 2 ;;
        --machine) need "$@"; MACHINE=$2; shift 2 ;;
        --mem) need "$@"; MEM=$2; shift 2 ;;
        --acpi) need "$@"; ACPI=$2; shift 2 ;;
        --nic-opts) need "$@"; NIC_OPTS=$2; shift 2 ;;
        --netns) need "$@"; NETNS=$2; shift 2 ;;
        --tap) need "$@"; TAP=$2; shift 2 ;;
        --mac) need "$@"; MAC=$2; shift 2 ;;
        --timeout) need "$@"; TIMEOUT=$2; shift 2 ;;
        --kernel) need "$@"; KERNEL=$2; shift 2 ;;
        --initrd) need "$@"; INITRD=$2; shift 2 ;;
        --qemu-arg) [[ $# -ge 2 ]] || die "--qemu-arg needs a value"; EXTRA+=("$2"); shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,37p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (the kernel command line goes after --; see --help)" ;;
    esac
done
CMDLINE="$*"

case $ACCEL in kvm|tcg|auto) ;; *) die "--accel wants kvm, tcg or auto, not '$ACCEL'" ;; esac
case $MACHINE in microvm|pc|q35) ;; *) die "--machine wants microvm, pc or q35, not '$MACHINE'" ;; esac
case $ACPI in on|off) ;; *) die "--acpi wants on or off, not '$ACPI'" ;; esac
[[ $MEM =~ ^[0-9]+$ && $MEM -gt 0 ]] || die "--mem wants a size in MB, not '$MEM'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout wants whole seconds, not '$TIMEOUT'"
[[ $TAP =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "--tap: '$TAP' is not an interface name"
[[ -f $KERNEL ]] || die "no kernel at $KERNEL (build the image with scripts/build-image.sh)"
[[ -z $INITRD || -f $INITRD ]] || die "no initrd at $INITRD"
if [[ -z $MAC ]]; then
    # Stable per TAP name, locally administered under QEMU's own 52:54:00 prefix.
    sum=$(printf '%s' "$TAP" | cksum | cut -d' ' -f1)
    MAC=$(printf '52:54:00:%02x:%02x:%02x' $((sum >> 16 & 255)) $((sum >> 8 & 255)) $((sum & 255)))
fi
[[ $MAC =~ ^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$ ]] || die "--mac: '$MAC' is not a MAC address"
command -v "$QEMU" >/dev/null || die "$QEMU not found (scripts/setup.sh installs it)"

# in_ns CMD...: CMD in the target namespace (or here without --netns).
in_ns() {
    if [[ -n $NETNS ]]; then
        ip netns exec "$NETNS" "$@"
    else
        "$@"
    fi
}

if [[ -n $NETNS ]] && ! ip netns exec "$NETNS" true 2>/dev/null; then
    die "network namespace '$NETNS' does not exist (or this is not root)"
fi

# kvm_works: /dev/kvm usable, not the kvm_pvm flavour, and a PVH guest exits cleanly under it.
kvm_works() {
    if [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
        echo "qemu.sh: --accel auto: no usable /dev/kvm; using tcg" >&2
        return 1
    fi
    if [[ -d /sys/module/kvm_pvm ]]; then
        echo "qemu.sh: --accel auto: /dev/kvm is kvm_pvm (guests fail or crawl there); using tcg" >&2
        return 1
    fi
    local image="$ROOT/images/target/x86_64-unknown-none/release/uniperf-image" rc=0
    if [[ -f $image ]]; then
        # The image prints its version and exits 0, i.e. QEMU status 1.
        timeout 20 "$QEMU" -accel kvm -cpu host -M microvm,acpi=off -m 64 -nodefaults -display none \
            -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$image" \
            -append "--version" </dev/null >/dev/null 2>&1 || rc=$?
        if ((rc != 1)); then
            echo "qemu.sh: --accel auto: a probe boot under kvm ended with status $rc; using tcg" >&2
            return 1
        fi
    fi
    return 0
}
if [[ $ACCEL == auto ]]; then
    if kvm_works; then ACCEL=kvm; else ACCEL=tcg; fi
fi

args=(-accel "$ACCEL")
[[ $ACCEL == kvm ]] && args+=(-cpu host)
case $MACHINE in
    microvm)
        # acpi=off: QEMU then appends virtio_mmio.device=512@ADDR:IRQ to the command line,
        # where the image finds the virtio-mmio transport (it probes the slots otherwise).
        args+=(-M "microvm,acpi=$ACPI")
        nic=virtio-net-device
        ;;
    pc|q35)
        args+=(-M "$MACHINE")
        # romfile=: no iPXE option ROM; the kernel comes from -kernel, and SeaBIOS skips ~0.3 s.
        nic=virtio-net-pci,romfile=
        ;;
esac
# shellcheck disable=SC2054  # the commas are QEMU's
args+=(-m "$MEM" -nodefaults -nographic -no-reboot -serial mon:stdio
    -device isa-debug-exit,iobase=0xf4,iosize=0x04
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no"
    -device "$nic,netdev=n0,mac=$MAC${NIC_OPTS:+,$NIC_OPTS}"
    -kernel "$KERNEL")
[[ -n $INITRD ]] && args+=(-initrd "$INITRD")
args+=(-append "$CMDLINE")
args+=("${EXTRA[@]}")

shown=
for word in ${NETNS:+ip netns exec "$NETNS"} "$QEMU" "${args[@]}"; do
    if [[ $word =~ ^[A-Za-z0-9_./:,=@%+-]+$ ]]; then shown+="$word "; else printf -v shown '%s%q ' "$shown" "$word"; fi
done
if ((DRY_RUN)); then
    echo "${shown% }"
    exit 0
fi
echo "qemu.sh: ${shown% }" >&2

WORK=$(mktemp -d /tmp/uniperf-qemu.XXXXXX) || die "mktemp failed"
CREATED_TAP=0
QPID=
SPID=

# shellcheck source=stop-qemu.sh
source "$ROOT/scripts/stop-qemu.sh"

show_qemu_stderr() {
    if [[ -s $WORK/stderr ]]; then
        cat "$WORK/stderr" >&2
        : >"$WORK/stderr"
    fi
}

cleanup() {
    stop_qemu
    if [[ -n $SPID ]]; then
        kill "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
        SPID=
    fi
    show_qemu_stderr
    if ((CREATED_TAP)); then
        in_ns ip link del "$TAP" 2>/dev/null
        CREATED_TAP=0
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
for sig in HUP INT TERM; do
    # shellcheck disable=SC2064  # the signal's number is fixed now
    trap "echo 'qemu.sh: got SIG$sig; stopping QEMU' >&2; exit $((128 + $(kill -l "$sig")))" "$sig"
done

if ! in_ns ip link show dev "$TAP" >/dev/null 2>&1; then
    in_ns ip tuntap add dev "$TAP" mode tap || die "cannot create TAP $TAP${NETNS:+ in $NETNS}"
    CREATED_TAP=1
    in_ns ip link set "$TAP" txqueuelen 10000 up || die "cannot bring $TAP up"
    echo "qemu.sh: created TAP $TAP${NETNS:+ in $NETNS} (deleted at exit)" >&2
fi

# `ip netns exec` and setpriv exec, so $! is QEMU's own PID. The explicit <&0 keeps the
# terminal as QEMU's stdin (a background job would get /dev/null), for Ctrl-A x.
launch=(setpriv --pdeathsig KILL "$QEMU" "${args[@]}")
[[ -n $NETNS ]] && launch=(ip netns exec "$NETNS" "${launch[@]}")
"${launch[@]}" <&0 2>"$WORK/stderr" &
QPID=$!

status=0
if ((TIMEOUT > 0)); then
    sleep "$TIMEOUT" &
    SPID=$!
    finished=
    wait -n -p finished "$QPID" "$SPID" || status=$?
    if [[ $finished == "$SPID" ]]; then
        SPID=
        echo "qemu.sh: timeout: the VM ran for ${TIMEOUT} s; stopping QEMU (pid $QPID)" >&2
        stop_qemu
        exit 124
    fi
    QPID=
    kill "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=
else
    wait "$QPID" || status=$?
    QPID=
fi

qemu_stderr=$(cat "$WORK/stderr" 2>/dev/null)
# A QEMU error also exits with status 1, which is the guest's "exit 0"; QEMU says so on stderr.
qemu_error=$(grep -E '^qemu-system-[a-z0-9_]+: ' <<<"$qemu_stderr" | grep -v -e 'warning:' \
    -e 'terminating on signal' | head -1)
if ((status % 2 == 1 && status < 128)) && [[ -z $qemu_error ]]; then
    exit $(((status - 1) / 2))
fi
if [[ -n $qemu_error ]]; then
    echo "qemu.sh: QEMU failed (status $status): ${qemu_error#*: }" >&2
else
    echo "qemu.sh: QEMU ended with status $status without a guest exit code" \
        "(guest reset, triple fault or power-off, or QEMU was killed)" >&2
fi
exit 125
