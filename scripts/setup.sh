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

# The unikernel target (rust-toolchain.toml pins the toolchain and lists the target).
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
        rustup target add x86_64-unknown-none
    fi
else
    echo "setup: rustup not found; x86_64-unknown-none must already be installed" >&2
fi

echo "setup: done"
