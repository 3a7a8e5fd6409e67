# Helpers of the rig's dom0 (sourced by /init and available to test scripts as /rig/lib.sh).
# Framing is described in /init; rig.sh on the host reads it.

# rig_mark NAME: a timestamp line (dom0 uptime, seconds).
rig_mark() {
    echo "@@RIG-MARK $1 $(cut -d' ' -f1 /proc/uptime)"
}

# rig_ship FILE...: sends files of $RIG_OUT to the host now (each once; later calls and the
# final sweep skip what went already). A test script calls it after each case, so what a case
# produced reaches the host even if a later case hangs until the rig's timeout.
rig_ship() {
    for f in "$@"; do
        case $f in /*) ;; *) f=$RIG_OUT/$f ;; esac
        [ -f "$f" ] || continue
        name=${f##*/}
        [ -e "/run/rig-shipped/$name" ] && continue
        mkdir -p /run/rig-shipped
        : >"/run/rig-shipped/$name"
        echo "@@RIG-BEGIN $name $(wc -c <"$f") $(md5sum <"$f" | cut -d' ' -f1)"
        base64 "$f" | sed 's/^/@@RIG-B /'
        echo "@@RIG-END $name"
    done
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
