#!/usr/bin/env bash
# uniperf in one command: installs what is missing (scripts/setup.sh), builds the release binary,
# the unikernel image and the Linux reference guest, then runs `uniperf compare`: in network
# namespaces made for the run (198.18.0.0/15 only, removed at exit) it measures stock iperf3 over
# a veth pair, stock iperf3 against a Linux guest and against the uniperf image on the identical
# QEMU command line, against uniperf on a TAP device, and the client image against the server
# image — and prints the table. Results (compare.json with every run's command lines, a bar
# chart, and per-flow TCP plots of every case from captured runs) go to out/compare/.
#
# usage: scripts/demo.sh [-t SECS] [--machine microvm|pc|q35] [--accel tcg|kvm|auto] [compare options…]
#   -t SECS     duration of each run (default 5)
# Other options go to `uniperf compare` (see `uniperf compare --help`). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

ARGS=(-t 5)
if (($#)); then
    ARGS=("$@")
fi
scripts/setup.sh
echo "== building the release binary"
cargo build --release
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/uniperf"
echo "== building the unikernel image"
IMAGE=$(scripts/build-image.sh)
echo "   $IMAGE ($(($(stat -c %s "$IMAGE") / 1024)) KiB with debug info)"
echo "== the Linux reference guest"
benches/linux-guest.sh >/dev/null
mkdir -p out/compare
echo "== uniperf compare ${ARGS[*]} -o out/compare"
"$BIN" compare "${ARGS[@]}" -o out/compare
echo
echo "Results: out/compare/ (compare.txt, compare.json, compare.png/.svg, flowlog-*.png, flowlogs.png)"
