#!/bin/sh
# The dom0 half of tests/xen.rs: every case of one rig boot (scripts/xen/rig.sh runs this in the
# busybox dom0 of Xen 4.17 under QEMU TCG). It only runs things and keeps what they printed, in
# $RIG_OUT as CASE.*; tests/xen.rs judges. Each case's files are shipped as soon as it ends.
#
#   readnotes      xen-utils' readnotes on the image
#   dryrun-*       `xl.sh --dry-run` (xl-config.sh + `xl create -n`) for a server and a client VM
#   server.*       the server domU (xl.sh, -s -J, flow logs to `uniperf collect` in dom0),
#                  serving, in order: stock iperf3 clients stock-{text,json,reverse,bidir,
#                  parallel4}.*, then the client domU pair.* (`-c 198.18.0.2`); then destroyed
#   collect.*      `uniperf collect` in dom0, flowlog-*: the logs it stored
#   client.*       a client domU against stock `iperf3 -s -1 -J` in dom0 (stocksrv.*)
#   linux.*, ref-*  a Linux PV domU with stock iperf3 -s (scripts/xen/dom0/linux-domu) and the
#                  server domU, each measured by dom0's iperf3: -P 1/4, both directions
# Environment: XEN_TEST_SECS (iperf3 -t, default 2), XEN_REF_SECS (the reference runs', 4).
# /rig/files/cases (rig.sh --file): `ci` runs readnotes and the dry runs only (no domU); anything
# else (or no file) runs every case. (dom0's user space used to corrupt here with a domU
# running: TCG's XSAVE under Xen; rig.sh now gives QEMU `-cpu max,-xsave,…`.)
. /rig/lib.sh
cd "$RIG_OUT" || exit 125
T=${XEN_TEST_SECS:-2}
REF_T=${XEN_REF_SECS:-4}
CASES=$(cat /rig/files/cases 2>/dev/null || echo all)
FLOWLOG="--flowlog-collect 198.18.0.1:6000"
VIF="--vif-script vif-sh"

# A point in time, in rig.sh's `marks` (dom0 uptime and the host's seconds since QEMU started).
mark() {
    rig_mark "$1"
}

# wait_pid PID SECS: waits for a background job at most SECS (then kills it); its status.
wait_pid() {
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt $(($2 * 5)) ]; do
        sleep 0.2
        i=$((i + 1))
    done
    kill "$1" 2>/dev/null
    wait "$1"
}

mark start
readnotes /rig/uniperf-image >readnotes.txt 2>&1
echo $? >readnotes.status
rig_ship readnotes.txt readnotes.status

xl.sh --dry-run --role server $VIF -- -s --ip 198.18.0.2/24 >dryrun-server.txt 2>&1
echo $? >dryrun-server.status
xl.sh --dry-run --role client $VIF -- -c 198.18.0.2 -t "$T" -J --ip 198.18.0.3/24 >dryrun-client.txt 2>&1
echo $? >dryrun-client.status
rig_ship dryrun-server.txt dryrun-server.status dryrun-client.txt dryrun-client.status
mark dryrun-done
if [ "$CASES" = ci ]; then
    mark done
    exit 0
fi

# Ten tests reach the server domU (five stock clients, one client domU, four reference runs);
# each ships a flow log.
mkdir -p flowlogs
uniperf collect --listen 198.18.0.1:6000 -o flowlogs --count 10 --timeout 900 >collect.stdout 2>collect.stderr &
COLLECT=$!

mark server-create
xl.sh --role server $VIF --timeout 900 -- -s -J --ip 198.18.0.2/24 $FLOWLOG \
    >server.console 2>server.xlsh &
SERVER=$!
if rig_wait_for server.console "uniperf: ready: listening on 198.18.0.2:5201" 120; then
    mark server-ready
    # iperf3_run NAME ADDR SECS ARGS…: stock iperf3 -c ADDR -t SECS ARGS, bounded in time;
    # NAME.out, NAME.err and NAME.status, shipped at once.
    iperf3_run() {
        name=$1 addr=$2 secs=$3
        shift 3
        mark "$name"
        timeout $((secs + 60)) iperf3 -c "$addr" -t "$secs" "$@" >"$name.out" 2>"$name.err"
        echo $? >"$name.status"
        rig_ship "$name.out" "$name.err" "$name.status"
    }
    # stock NAME ARGS…: against the server domU.
    stock() {
        name=$1
        shift
        iperf3_run "stock-$name" 198.18.0.2 "$T" "$@"
    }
    stock text
    stock json -J
    stock reverse -J -R
    stock bidir -J --bidir
    stock parallel4 -J -P 4

    mark pair-create
    # -V: the client domU ends with netfront's counters (TSO frames, checksums vouched for).
    xl.sh --role client $VIF --timeout 120 -- -c 198.18.0.2 -t "$T" -J -V --ip 198.18.0.3/24 \
        >pair.console 2>pair.xlsh
    echo $? >pair.status
    mark pair-done
    rig_ship pair.console pair.xlsh pair.status

    # The reference: a Linux PV domU running stock iperf3 -s on the same Xen and bridge; dom0's
    # stock iperf3 measures it and the server domU the same four ways, one after the other:
    # ref-{uniperf,linux}-{p1,p1r,p4,p4r}.*.
    mark linux-create
    linux-domu start linux-ref 198.18.0.4/24 00:16:3e:18:00:04 >linux.out 2>&1
    echo $? >linux.status
    mark linux-ready
    rig_ship linux.out linux.status
    for target in uniperf:198.18.0.2 linux:198.18.0.4; do
        who=${target%%:*}
        addr=${target#*:}
        [ "$who" = linux ] && [ "$(cat linux.status)" != 0 ] && continue
        for run in p1: p1r:-R "p4:-P 4" "p4r:-P 4 -R"; do
            # shellcheck disable=SC2086 # the run's options are words
            iperf3_run "ref-$who-${run%%:*}" "$addr" "$REF_T" -J ${run#*:}
        done
    done
    cp /run/linux-domu-linux-ref.console linux.console 2>/dev/null
    linux-domu stop linux-ref
    rig_ship linux.console
else
    mark server-not-ready
    echo "the server domU printed no readiness line within 120 s" >server.not-ready
    rig_ship server.not-ready
fi
xl destroy uniperf-server >/dev/null 2>&1
wait_pid $SERVER 60
echo $? >server.status
rig_ship server.console server.xlsh server.status

wait_pid $COLLECT 30
echo $? >collect.status
for f in flowlogs/*; do
    [ -f "$f" ] && cp "$f" "flowlog-${f##*/}"
done
rig_ship collect.stdout collect.stderr collect.status flowlog-*
mark collect-done

# The client domU against stock iperf3 -s in dom0; its -J comes over its PV console.
timeout 180 iperf3 -s -1 -J -B 198.18.0.1 >stocksrv.json 2>stocksrv.err &
STOCKSRV=$!
sleep 1
mark client-create
xl.sh --role client $VIF --timeout 120 -- -c 198.18.0.1 -t "$T" -J --ip 198.18.0.3/24 \
    >client.console 2>client.xlsh
echo $? >client.status
mark client-done
wait_pid $STOCKSRV 30
echo $? >stocksrv.status
rig_ship client.console client.xlsh client.status stocksrv.json stocksrv.err stocksrv.status
mark done
exit 0
