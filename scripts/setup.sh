#!/usr/bin/env bash
# Installs what building and testing uniperf needs. Idempotent: apt runs only when a tool is
# missing, and only Debian packages and the Rust target pinned in rust-toolchain.toml are fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A PROVIDER=(
    [iperf3]=iperf3          # the reference implementation the tests interoperate with
    [ip]=iproute2            # network namespaces, TAP devices, bridge, veth
    [ss]=iproute2            # waiting for kernel-side listeners
    [tcpdump]=tcpdump        # debugging captures
    [python3]=python3        # misbehaving clients in tests/clients/
    [kill]=procps            # stopping test processes by PID
    [cc]=gcc                 # the linker rustc calls
    [cpio]=cpio              # benches/linux-guest.sh packs the Linux guest's initramfs
)

missing=()
for cmd in "${!PROVIDER[@]}"; do
    type -P "$cmd" >/dev/null 2>&1 || missing+=("${PROVIDER[$cmd]}")
done

if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ $EUID -ne 0 ]]; then
        echo "setup: missing packages: ${missing[*]}; run this script as root to install them" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "setup: system packages present"
fi

# QEMU 10 (PVH -kernel on microvm/pc/q35, isa-debug-exit) from bookworm-backports: bookworm's
# own 7.2 is older than what the image and scripts/qemu.sh are tested with.
QEMU_MIN_MAJOR=10
BACKPORTS_LINE="deb http://deb.debian.org/debian bookworm-backports main"
qemu_major() {
    qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'
}
major=$(qemu_major || true)
if [[ -z $major || $major -lt $QEMU_MIN_MAJOR ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "setup: qemu-system-x86_64 ${major:+$major.x }is missing or older than $QEMU_MIN_MAJOR;" \
            "run this script as root to install it from bookworm-backports" >&2
        exit 1
    fi
    if ! grep -rqsF "$BACKPORTS_LINE" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "setup: adding bookworm-backports to /etc/apt/sources.list.d/bookworm-backports.list"
        echo "$BACKPORTS_LINE" >/etc/apt/sources.list.d/bookworm-backports.list
    fi
    echo "setup: installing qemu-system-x86 from bookworm-backports"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86
    major=$(qemu_major || true)
    if [[ -z $major || $major -lt $QEMU_MIN_MAJOR ]]; then
        echo "setup: qemu-system-x86_64 is still ${major:-missing} after the install" >&2
        exit 1
    fi
else
    echo "setup: QEMU $major present"
fi

# The unikernel target (rust-toolchain.toml pins the toolchain and lists the target).
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
        rustup target add x86_64-unknown-none
    fi
else
    echo "setup: rustup not found; x86_64-unknown-none must already be installed" >&2
fi

echo "setup: done"
