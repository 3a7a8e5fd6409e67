# Helpers of the rig's dom0 (sourced by /init and available to test scripts as /rig/lib.sh).
# Framing is described in /init; rig.sh on the host reads it.

# rig_mark NAME: a timestamp line (dom0 uptime, seconds).
rig_mark() {
    echo "@@RIG-MARK $1 $(cut -d' ' -f1 /proc/uptime)"
}

# rig_ship FILE...: sends files of $RIG_OUT to the host now (later calls and the final sweep
# skip what went already). A test script calls it after each case, so what a case produced
# reaches the host even if a later case hangs until the rig's timeout. Each file goes twice:
# dom0's own messages (a crashing program's "Segmentation fault") can land inside a line of
# the first copy; the host keeps the first copy whose size and MD5 match.
rig_ship() {
    for f in "$@"; do
        case $f in /*) ;; *) f=$RIG_OUT/$f ;; esac
        [ -f "$f" ] || continue
        name=${f##*/}
        [ -e "/run/rig-shipped/$name" ] && continue
        mkdir -p /run/rig-shipped
        : >"/run/rig-shipped/$name"
        # A copy first: the file may still be growing (a running domU's console), and size,
        # MD5 and data must describe the same bytes.
        cp "$f" /run/rig-snapshot
        size=$(wc -c </run/rig-snapshot)
        sum=$(md5sum </run/rig-snapshot | cut -d' ' -f1)
        # Size and MD5 are the file's; a file over 8 KiB goes gzipped (flow logs and -J
        # documents shrink 5-10x, and COM1 carries ~11 KB/s).
        gz=
        send=/run/rig-snapshot
        if [ "$size" -gt 8192 ]; then
            gzip -c /run/rig-snapshot >/run/rig-snapshot.gz && gz=" gz" && send=/run/rig-snapshot.gz
        fi
        for copy in 1 2; do
            echo "@@RIG-BEGIN $name $size $sum$gz"
            base64 "$send" | sed 's/^/@@RIG-B /'
            echo "@@RIG-END $name"
        done
    done
}

# rig_wait_for FILE TEXT SECS: until FILE has a line with TEXT; false after SECS.
rig_wait_for() {
    i=0
    while [ $i -lt $(($3 * 5)) ]; do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}

# rig_finish STATUS: ships everything left in $RIG_OUT, reports STATUS, powers dom0 off.
rig_finish() {
    rig_ship "$RIG_OUT"/*
    rig_mark poweroff
    echo "@@RIG-EXIT $1"
    sync
    poweroff -f
    sleep 60
}
