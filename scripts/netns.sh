# shellcheck shell=bash
# Network-namespace topologies for uniperf's demo and benchmark scripts.
# Source this file; it never sends a packet itself. Every namespace it makes carries the
# prefix "up-<pid>-" so parallel runs never collide, and `netns_cleanup` (installed as an
# EXIT trap by `netns_init`) kills the processes started with `netns_spawn` by PID and
# deletes the namespaces. Addresses come from 198.18.0.0/15 only.
#
# Topologies (same names and addresses as tests/common/mod.rs):
#   netns_topo_tap NS          one ns, persistent tap0, kernel side 198.18.0.1/24
#                              (uniperf's smoltcp side takes 198.18.0.2 on that TAP)
#   netns_topo_bridge NS       one ns, br0 198.18.0.1/24 with tap0 and tap1 enslaved
#                              (uniperf server 198.18.0.2 on tap0, client 198.18.0.3 on tap1)
#   netns_topo_guests NS [N]   the same with N (1..4) TAPs tap0.. on br0: the VM topology, where
#                              scripts/qemu.sh --tap tapI attaches guest I (server guest
#                              198.18.0.2 on tap0, client guest 198.18.0.3 on tap1); stock
#                              iperf3 runs on the host side, bound to br0's 198.18.0.1
#   netns_topo_veth NS_A NS_B  veth pair, 198.18.1.1/24 in NS_A, 198.18.1.2/24 in NS_B

NETNS_PREFIX="up-$$"
NETNS_COUNTER=0
NETNS_CREATED=()
NETNS_PIDS=()

# netns_init: install the cleanup trap. Call once, after sourcing.
netns_init() {
    if [[ $EUID -ne 0 ]]; then
        echo "error: network namespaces and TAP devices need root" >&2
        exit 1
    fi
    trap netns_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# netns_new VAR: create a fresh namespace with loopback up; its name goes into VAR.
netns_new() {
    local __var=$1 __name
    NETNS_COUNTER=$((NETNS_COUNTER + 1))
    __name="${NETNS_PREFIX}-${NETNS_COUNTER}"
    ip netns add "$__name"
    NETNS_CREATED+=("$__name")
    ip -n "$__name" link set lo up
    printf -v "$__var" '%s' "$__name"
}

# netns_topo_tap NS [TAP]: persistent TAP with the kernel address 198.18.0.1/24.
netns_topo_tap() {
    local ns=$1 tap=${2:-tap0}
    ip -n "$ns" tuntap add dev "$tap" mode tap
    ip -n "$ns" addr add 198.18.0.1/24 dev "$tap"
    ip -n "$ns" link set "$tap" txqueuelen 10000 up
}

# netns_topo_bridge NS: br0 (198.18.0.1/24) with persistent tap0 and tap1 as ports.
netns_topo_bridge() {
    netns_topo_guests "$1" 2
}

# netns_topo_guests NS [N]: br0 (198.18.0.1/24) with N (default 2, at most 4) persistent TAPs
# tap0..tap(N-1) as ports, for VMs (scripts/qemu.sh --netns NS --tap tapI) or uniperf on TAP.
netns_topo_guests() {
    local ns=$1 n=${2:-2} i
    [[ $n =~ ^[1-4]$ ]] || { echo "netns_topo_guests: 1 to 4 TAPs, not '$n'" >&2; return 1; }
    ip -n "$ns" link add br0 type bridge forward_delay 0 stp_state 0
    ip -n "$ns" addr add 198.18.0.1/24 dev br0
    for ((i = 0; i < n; i++)); do
        ip -n "$ns" tuntap add dev "tap$i" mode tap
        ip -n "$ns" link set "tap$i" master br0
        ip -n "$ns" link set "tap$i" txqueuelen 10000 up
    done
    ip -n "$ns" link set br0 up
}

# netns_topo_veth NS_A NS_B: veth pair va (198.18.1.1/24, in NS_A) <-> vb (198.18.1.2/24, in NS_B).
netns_topo_veth() {
    local a=$1 b=$2
    ip -n "$a" link add va type veth peer name vb netns "$b"
    ip -n "$a" addr add 198.18.1.1/24 dev va
    ip -n "$b" addr add 198.18.1.2/24 dev vb
    ip -n "$a" link set va up
    ip -n "$b" link set vb up
}

# netns_spawn VAR NS STDOUT STDERR CMD...: start CMD in NS in the background; its PID goes into
# VAR and is killed by netns_cleanup if still running. `ip netns exec` execs CMD, so the PID is
# CMD's own.
netns_spawn() {
    local __var=$1 __ns=$2 __out=$3 __err=$4 __pid
    shift 4
    ip netns exec "$__ns" "$@" >"$__out" 2>"$__err" </dev/null &
    __pid=$!
    NETNS_PIDS+=("$__pid")
    printf -v "$__var" '%s' "$__pid"
}

# netns_spawn_host VAR STDOUT STDERR CMD...: like netns_spawn, for a command that enters the
# namespace itself (scripts/qemu.sh --netns NS). Killing it kills its QEMU too (qemu.sh starts
# QEMU with a parent-death signal).
netns_spawn_host() {
    local __var=$1 __out=$2 __err=$3 __pid
    shift 3
    "$@" >"$__out" 2>"$__err" </dev/null &
    __pid=$!
    NETNS_PIDS+=("$__pid")
    printf -v "$__var" '%s' "$__pid"
}

# netns_wait_pid PID TIMEOUT_SECS: wait for PID to exit; kill it (by PID) after the timeout.
# Returns the exit status, or 124 on timeout.
netns_wait_pid() {
    local pid=$1 timeout=$2 deadline
    deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            return 124
        fi
        sleep 0.05
    done
    local rc=0
    wait "$pid" || rc=$?
    return "$rc"
}

# netns_stop PID: stop a background process started here (TERM, then KILL after 2 s).
netns_stop() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# netns_wait_for_line FILE NEEDLE TIMEOUT_SECS [PID]: poll FILE until a line contains NEEDLE.
# Fails early if PID (the process writing FILE) exits first.
netns_wait_for_line() {
    local file=$1 needle=$2 timeout=$3 pid=${4:-} deadline
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if [[ -f $file ]] && grep -qF -- "$needle" "$file"; then
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            echo "error: process $pid exited before printing '$needle'; its output:" >&2
            sed 's/^/    /' "$file" >&2 || true
            return 1
        fi
        sleep 0.05
    done
    echo "error: '$needle' did not appear in $file within ${timeout}s; it holds:" >&2
    sed 's/^/    /' "$file" >&2 || true
    return 1
}

# netns_wait_port NS PORT TIMEOUT_SECS: wait until a kernel-side TCP listener on PORT exists in NS.
netns_wait_port() {
    local ns=$1 port=$2 timeout=$3 deadline
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if ip netns exec "$ns" ss -Htln "sport = :$port" 2>/dev/null | grep -q .; then
            return 0
        fi
        sleep 0.05
    done
    echo "error: nothing listens on port $port in $ns after ${timeout}s" >&2
    return 1
}

# netns_cleanup: stop what netns_spawn/netns_spawn_host started (by PID: TERM, so that
# scripts/qemu.sh can stop its QEMU and tidy up, then KILL after 2 s) and delete the namespaces
# made here.
netns_cleanup() {
    local pid ns live=() i
    for pid in "${NETNS_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            live+=("$pid")
        fi
    done
    for ((i = 0; i < 40 && ${#live[@]}; i++)); do
        sleep 0.05
        for pid in "${!live[@]}"; do
            kill -0 "${live[$pid]}" 2>/dev/null || unset 'live[pid]'
        done
    done
    for pid in "${NETNS_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    NETNS_PIDS=()
    for ns in "${NETNS_CREATED[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    NETNS_CREATED=()
}

# iperf_json_gbps FILE: the receiver's rate (end.sum_received.bits_per_second) of an iperf3 -J
# document, in Gbit/s with two decimals; prints FAIL (and the reason on stderr) if there is none.
iperf_json_gbps() {
    python3 - "$1" <<'PY'
import json, sys
try:
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    if "error" in doc:
        raise ValueError(doc["error"])
    print(f'{doc["end"]["sum_received"]["bits_per_second"] / 1e9:.2f}')
except Exception as e:  # noqa: BLE001 - any failure is reported the same way
    print(f"{sys.argv[1]}: {e}", file=sys.stderr)
    print("FAIL")
PY
}

# ratio A B: A/B with two decimals, or "-" when either is not a number.
ratio() {
    python3 -c '
import sys
try:
    a, b = float(sys.argv[1]), float(sys.argv[2])
    print(f"{a / b:.2f}" if b > 0 else "-")
except ValueError:
    print("-")
' "$1" "$2"
}
