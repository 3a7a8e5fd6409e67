#!/usr/bin/env bash
# Coverage-guided fuzzing of uniperf's parsers (cargo fuzz, libFuzzer; the targets are in
# fuzz/fuzz_targets/, their corpora in fuzz/corpus/<target>/). Installs the nightly toolchain
# and cargo-fuzz on first use, so the rest of CI does not pay for them.
#
#   scripts/fuzz.sh install          nightly toolchain + cargo-fuzz, if missing
#   scripts/fuzz.sh build            build every target
#   scripts/fuzz.sh smoke [SECS]     each target SECS seconds (default 10) on its corpus; fails on
#                                    the first crash (CI runs this from scripts/test.sh)
#   scripts/fuzz.sh run TARGET ARGS  one target on its corpus, ARGS passed to libFuzzer
#   scripts/fuzz.sh cmin [TARGET]    minimise the corpora (fuzz/seeds/<target>/ merged in first)
#   scripts/fuzz.sh list             the targets
#
# New inputs found while fuzzing go to target/fuzz-work/, never into the committed corpus; a
# crashing input is kept in fuzz/artifacts/<target>/. benches/fuzz.sh is the long run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Sanitizer off (the code under test is safe Rust; ASan would halve the speed) and debug
# assertions on, so arithmetic overflow is a crash as in a debug build.
FUZZ_FLAGS=(--sanitizer none --debug-assertions)
WORK=target/fuzz-work

install() {
    if ! rustup run nightly rustc -V >/dev/null 2>&1; then
        rustup toolchain install nightly --profile minimal
    fi
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install cargo-fuzz --locked
    fi
}

targets() {
    (cd fuzz && cargo +nightly fuzz list)
}

build() {
    install
    (cd fuzz && cargo +nightly fuzz build "${FUZZ_FLAGS[@]}" "$@")
}

# run TARGET [libFuzzer args...]: fuzzes TARGET on a scratch copy of its corpus.
run() {
    local t=$1
    shift
    mkdir -p "$WORK/$t"
    (cd fuzz && cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" "../$WORK/$t" "corpus/$t" -- \
        -rss_limit_mb=2048 -max_len=65536 "$@")
}

smoke() {
    local secs=${1:-10} failed=()
    build
    for t in $(targets); do
        echo "== fuzz $t for ${secs}s"
        if ! run "$t" -max_total_time="$secs" -print_final_stats=1 2>&1 | tail -n 15; then
            failed+=("$t")
        fi
    done
    if ((${#failed[@]})); then
        echo "== fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)"
        return 1
    fi
}

cmin() {
    build
    for t in ${1:-$(targets)}; do
        mkdir -p "fuzz/corpus/$t"
        if [[ -d "fuzz/seeds/$t" ]]; then
            cp -n "fuzz/seeds/$t"/* "fuzz/corpus/$t/"
        fi
        (cd fuzz && cargo +nightly fuzz cmin "${FUZZ_FLAGS[@]}" "$t" "corpus/$t" -- -rss_limit_mb=2048 -max_len=65536)
    done
}

cmd=${1:-smoke}
shift || true
case $cmd in
install) install ;;
build) build "$@" ;;
smoke) smoke "$@" ;;
run) install && run "$@" ;;
cmin) cmin "$@" ;;
list) targets ;;
*)
    echo "usage: scripts/fuzz.sh install|build|smoke [SECS]|run TARGET [ARGS]|cmin [TARGET]|list" >&2
    exit 2
    ;;
esac
