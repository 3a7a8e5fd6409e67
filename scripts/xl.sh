#!/bin/sh
# Boots the uniperf image as a Xen PVH domU with `xl create -c` on a real Xen host (run it in
# dom0, as root), shows its PV console on stdout and passes the guest's exit status through,
# like scripts/qemu.sh does under QEMU. POSIX sh: it also runs in the rig's busybox dom0
# (scripts/xen/rig.sh), where tests/xen.rs uses it.
#
# usage: scripts/xl.sh [options] -- KERNEL-CMDLINE...
#   --role server|client   server or client VM defaults (name, MAC; see xen/xl-config.sh)
#   --name NAME            domain name (default uniperf-server / uniperf-client)
#   --kernel FILE          the image (default images/target/x86_64-unknown-none/release/uniperf-image)
#   --mem MB               memory (default 64)
#   --vcpus N              virtual CPUs (default 1)
#   --bridge BR            dom0 bridge of the vif (default xenbr0)
#   --mac MAC              the vif's MAC (default 00:16:3e:18:00:02 server, …:03 client)
#   --vif-script S         vif hotplug script (default: xl's, vif-bridge)
#   --timeout SECS         destroy the domain after SECS seconds (default: none)
#   --log FILE             also write the console to FILE
#   --config-out FILE      keep the generated xl config in FILE
#   --dry-run              print the config and check it with `xl create -n`; start nothing
#   KERNEL-CMDLINE         the words after `--`: the image's command line (xl `cmdline`),
#                          iperf3's options plus --ip ADDR/PREFIX [--gateway ADDR] [--mtu N]
#
# Exit status:
#   0..123  the guest's: it prints `uniperf: exit status N` on its console and powers off
#           (0 success, 1 failed test or bad command line, 2 panic: the domain crashes)
#   124     --timeout passed; the domain was destroyed
#   125     the domain ended without printing an exit status, or xl failed to create it
#   126     bad usage or set-up (this script's own error)
#   128+N   this script got signal N; the domain was destroyed first
set -u
here=$(cd "$(dirname "$0")" && pwd)
XL=${XL:-xl}
XL_CONFIG=${XL_CONFIG:-}
if [ -z "$XL_CONFIG" ]; then
    XL_CONFIG=$here/xen/xl-config.sh
    [ -x "$XL_CONFIG" ] || XL_CONFIG=$here/xl-config.sh # side by side, as in the rig's dom0
fi

ROLE=server
NAME=
TIMEOUT=0
LOG=
CONFIG_OUT=
DRY_RUN=0
PASS= # options for xl-config.sh, each word quoted for eval

die() {
    echo "xl.sh: $*" >&2
    exit 126
}
need() {
    [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
}
squote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}
while [ $# -gt 0 ]; do
    case $1 in
        --role) need "$@"; ROLE=$2; PASS="$PASS --role $(squote "$2")"; shift 2 ;;
        --name) need "$@"; NAME=$2; PASS="$PASS --name $(squote "$2")"; shift 2 ;;
        --kernel|--mem|--vcpus|--bridge|--mac|--vif-script)
            need "$@"; PASS="$PASS $1 $(squote "$2")"; shift 2 ;;
        --timeout) need "$@"; TIMEOUT=$2; shift 2 ;;
        --log) need "$@"; LOG=$2; shift 2 ;;
        --config-out) need "$@"; CONFIG_OUT=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (the kernel command line goes after --; see --help)" ;;
    esac
done
case $TIMEOUT in *[!0-9]*|'') die "--timeout wants whole seconds, not '$TIMEOUT'" ;; esac
case $ROLE in server) : "${NAME:=uniperf-server}" ;; client) : "${NAME:=uniperf-client}" ;; esac
command -v "$XL" >/dev/null 2>&1 || die "$XL not found: run this in a Xen dom0 (or scripts/xen/rig.sh)"
[ -x "$XL_CONFIG" ] || die "no xl-config.sh beside this script"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/uniperf-xl.XXXXXX") || die "mktemp failed"
CFG=$WORK/$NAME.cfg
PASS="$PASS --"
for w in "$@"; do PASS="$PASS $(squote "$w")"; done
if ! eval "\"\$XL_CONFIG\" $PASS" >"$CFG" 2>"$WORK/config.err"; then
    cat "$WORK/config.err" >&2
    rm -rf "$WORK"
    exit 126
fi
[ -n "$CONFIG_OUT" ] && cp "$CFG" "$CONFIG_OUT"

if [ "$DRY_RUN" = 1 ]; then
    cat "$CFG"
    "$XL" create -n "$CFG" >"$WORK/dry" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
        cat "$WORK/dry" >&2
        echo "xl.sh: xl create -n rejected the config (status $rc)" >&2
        rm -rf "$WORK"
        exit 125
    fi
    echo "xl.sh: xl create -n accepts the config" >&2
    rm -rf "$WORK"
    exit 0
fi

if "$XL" domid "$NAME" >/dev/null 2>&1; then
    rm -rf "$WORK"
    die "a domain named $NAME exists already (xl destroy $NAME, or pick --name)"
fi

CREATED=0
PIPE=
finish() {
    status=$1
    if [ -n "$PIPE" ]; then
        kill "$(cat "$WORK/xl.pid" 2>/dev/null)" 2>/dev/null
        wait "$PIPE" 2>/dev/null
    fi
    if [ "$CREATED" = 1 ] && "$XL" domid "$NAME" >/dev/null 2>&1; then
        "$XL" destroy "$NAME" >/dev/null 2>&1
    fi
    [ -n "$LOG" ] && cp "$WORK/console" "$LOG" 2>/dev/null
    rm -rf "$WORK"
    exit "$status"
}
trap 'echo "xl.sh: got SIGINT; destroying $NAME" >&2; finish 130' INT
trap 'echo "xl.sh: got SIGTERM; destroying $NAME" >&2; finish 143' TERM
trap 'echo "xl.sh: got SIGHUP; destroying $NAME" >&2; finish 129' HUP

# xenconsole (what -c runs) ends at end of input: give it an input that never ends, a FIFO
# held open for both directions, so a script or a test can run it without a terminal.
GUEST_LOG=${XL_CONSOLE_LOGS:-/var/log/xen/console}/guest-$NAME.log
GUEST_LOG_AT=$(wc -c <"$GUEST_LOG" 2>/dev/null || echo 0)
mkfifo "$WORK/stdin" || die "mkfifo failed"
exec 3<>"$WORK/stdin"
echo "xl.sh: xl create -c $CFG ($NAME)" >&2
(
    # sh -c … exec: its $$ is xl's PID, so xl can be stopped by PID if it outlives the domain.
    sh -c 'echo $$ >"$1/xl.pid"; exec "$2" create -c "$3" 2>"$1/xl.err"' sh "$WORK" "$XL" "$CFG" <&3
    echo $? >"$WORK/xl.status"
) | tee "$WORK/console" &
PIPE=$! # tee's: it ends when xl does
CREATED=1

# Until `xl create -c` returns: it does when the domain is gone (on_poweroff/on_crash destroy).
start=$(cut -d. -f1 /proc/uptime)
timed_out=0
while kill -0 "$PIPE" 2>/dev/null; do
    if [ "$TIMEOUT" -gt 0 ] && [ $(($(cut -d. -f1 /proc/uptime) - start)) -ge "$TIMEOUT" ]; then
        echo "xl.sh: timeout: $NAME ran for $TIMEOUT s; destroying it" >&2
        timed_out=1
        "$XL" destroy "$NAME" >/dev/null 2>&1
        break
    fi
    sleep 0.2
done
# After a destroy, xl's console client should notice within a few seconds; if not, stop it.
i=0
while kill -0 "$PIPE" 2>/dev/null && [ $i -lt 50 ]; do
    sleep 0.2
    i=$((i + 1))
done
if kill -0 "$PIPE" 2>/dev/null; then
    echo "xl.sh: xl create -c did not return after $NAME ended; stopping it" >&2
    kill "$(cat "$WORK/xl.pid" 2>/dev/null)" 2>/dev/null
fi
wait "$PIPE" 2>/dev/null
PIPE=
[ "$timed_out" = 1 ] && finish 124

status_line() {
    tr -d '\r' <"$1" 2>/dev/null | sed -n 's/.*uniperf: exit status \([0-9][0-9]*\).*/\1/p' | tail -n1
}
code=$(status_line "$WORK/console")
# Where xenconsoled keeps guests' consoles (xenconsoled --log=guest), if the attach missed the
# end: only what this domain added.
if [ -z "$code" ] && [ -f "$GUEST_LOG" ]; then
    tail -c +$((GUEST_LOG_AT + 1)) "$GUEST_LOG" >"$WORK/guest.log"
    code=$(status_line "$WORK/guest.log")
fi
if [ -n "$code" ] && [ "$code" -le 123 ]; then
    finish "$code"
fi
xl_status=$(cat "$WORK/xl.status" 2>/dev/null)
if [ "${xl_status:-1}" != 0 ]; then
    echo "xl.sh: xl create failed (status ${xl_status:-?}):" >&2
    tail -n 20 "$WORK/xl.err" >&2
else
    echo "xl.sh: $NAME ended without printing 'uniperf: exit status N' on its console" >&2
fi
finish 125
