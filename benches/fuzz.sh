#!/usr/bin/env bash
# The long fuzzing run (not in CI): every target for RUNS executions (default 10 million) on
# its corpus, one target at a time and one job each, then a table of target, executions,
# wall time, executions per second and crashes. A crashing input stops that target and is kept
# in fuzz/artifacts/<target>/; the script exits 1 if any target crashed.
#
#   benches/fuzz.sh [RUNS] [TARGET...]
#
# server_control is too slow for that (a simulated server and link per input, ~900-1,200/s), so
# unless RUNS is given it runs SLOW_SECONDS (default 600) instead.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10000000
explicit_runs=
if [[ ${1:-} =~ ^[0-9]+$ ]]; then
    runs=$1
    explicit_runs=yes
    shift
fi
scripts/fuzz.sh build
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(scripts/fuzz.sh list)
fi

logs=target/fuzz-logs
mkdir -p "$logs"
table=$(printf '%-16s %14s %10s %12s %8s\n' target executions seconds "exec/s" crashes)
status=0
for t in "${targets[@]}"; do
    limit=(-runs="$runs")
    if [[ $t == server_control && -z $explicit_runs ]]; then
        limit=(-max_total_time="${SLOW_SECONDS:-600}")
    fi
    echo "== $t: ${limit[*]}"
    start=$(date +%s.%N)
    crashes=0
    if ! scripts/fuzz.sh run "$t" "${limit[@]}" -print_final_stats=1 >"$logs/$t.log" 2>&1; then
        crashes=1
        status=1
    fi
    end=$(date +%s.%N)
    # libFuzzer's final stats: "stat::number_of_executed_units: N".
    done_runs=$(awk '/^stat::number_of_executed_units/ {print $NF}' "$logs/$t.log" | tail -n1)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", b - a}')
    rate=$(awk -v n="${done_runs:-0}" -v s="$secs" 'BEGIN {printf "%.0f", (s > 0 ? n / s : 0)}')
    row=$(printf '%-16s %14s %10s %12s %8s' "$t" "${done_runs:-?}" "$secs" "$rate" "$crashes")
    echo "$row"
    table+=$'\n'"$row"
    if ((crashes)); then
        grep -m5 -E "panicked at|ERROR: libFuzzer|Test unit written" "$logs/$t.log" || true
    fi
done
echo
echo "$table"
exit $status
