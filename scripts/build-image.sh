#!/usr/bin/env bash
# Builds the uniperf unikernel (images/, release, x86_64-unknown-none) and prints the path of
# the ELF on stdout (cargo's own output goes to stderr), so callers can write
#   IMAGE=$(scripts/build-image.sh)
#
# usage: scripts/build-image.sh [--debug]     (--debug: the dev profile instead of release)
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release
while (($#)); do
    case $1 in
        --debug) PROFILE=debug; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument: $1" >&2; exit 2 ;;
    esac
done

flags=(--target x86_64-unknown-none)
[[ $PROFILE == release ]] && flags+=(--release)
# images/ is its own workspace with its own target dir; a CARGO_TARGET_DIR meant for the host
# workspace must not move it.
(cd images && env -u CARGO_TARGET_DIR cargo build "${flags[@]}" >&2)

IMAGE="$PWD/images/target/x86_64-unknown-none/$PROFILE/uniperf-image"
if [[ ! -f $IMAGE ]]; then
    echo "build-image: cargo succeeded but $IMAGE is missing" >&2
    exit 1
fi
echo "$IMAGE"
