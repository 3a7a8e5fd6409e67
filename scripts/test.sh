#!/usr/bin/env bash
# The test entry point (CI runs it through .ci/run, as root, with CI=true): setup, formatting
# and lints (rustfmt, clippy -D warnings on the workspace and the image), release build, the
# unikernel image (scripts/build-image.sh), every test of the workspace (the
# network-namespace/TAP tests and the image-under-QEMU tests too when root; under CI=true they
# fail rather than skip without root, QEMU or the image; tests/xen.rs boots the image under real
# Xen in QEMU with scripts/xen/rig.sh), and the no_std build of the libraries.
# Every step runs even if an earlier one failed; the exit status says whether all passed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

failed=()
step() {
    local name=$1
    shift
    echo "== $name: $*"
    if ! "$@"; then
        echo "== FAILED: $name"
        failed+=("$name")
    fi
}

step "rustfmt" cargo fmt --all --check
step "image rustfmt" bash -c 'cd images && cargo fmt --check'
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
step "image clippy" bash -c 'cd images && env -u CARGO_TARGET_DIR cargo clippy --release -- -D warnings'
step "release build" cargo build --release
# The image tests (tests/image.rs) boot what this builds.
step "image build" scripts/build-image.sh
step "tests" cargo test --workspace --no-fail-fast
step "no_std build" cargo build -p netstack -p server -p client --target x86_64-unknown-none
# Each fuzz target 8 s on its corpus (installs nightly + cargo-fuzz on first use); a crash fails it.
step "fuzz smoke" scripts/fuzz.sh smoke 8

if ((${#failed[@]})); then
    echo "== failed steps: ${failed[*]}"
    exit 1
fi
echo "== all steps passed"
