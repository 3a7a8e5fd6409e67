# Sourced by scripts/qemu.sh and scripts/xen/rig.sh: stop_qemu stops the QEMU whose PID is in
# $QPID (SIGTERM, up to 2 s, then SIGKILL; by PID, never by name), reaps it and clears QPID.
stop_qemu() {
    [[ -n $QPID ]] || return 0
    if kill -0 "$QPID" 2>/dev/null; then
        kill -TERM "$QPID" 2>/dev/null
        local i
        for ((i = 0; i < 40; i++)); do
            kill -0 "$QPID" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$QPID" 2>/dev/null
    fi
    wait "$QPID" 2>/dev/null
    QPID=
}
