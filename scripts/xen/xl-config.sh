#!/bin/sh
# Prints an xl domain config for the uniperf image as a PVH domU, a server VM or a client VM.
# POSIX sh, so it runs on a Xen host and in the rig's busybox dom0 alike.
#
# usage: scripts/xen/xl-config.sh [options] [-- KERNEL-CMDLINE...]
#   --role server|client   defaults for the VM (default server):
#                            server: name uniperf-server, MAC 00:16:3e:18:00:02,
#                                    command line "-s --ip 198.18.0.2/24"
#                            client: name uniperf-client, MAC 00:16:3e:18:00:03, no default
#                                    command line (give -c HOST … --ip ADDR/PREFIX after --)
#   --name NAME            domain name
#   --kernel FILE          the image (default: $UNIPERF_IMAGE, else images/target/…/release/
#                          uniperf-image of this checkout)
#   --mem MB               memory (default 64)
#   --vcpus N              virtual CPUs (default 1; the image uses one)
#   --bridge BR            bridge of the vif in dom0 (default xenbr0)
#   --mac MAC              the vif's MAC (Xen's 00:16:3e prefix by convention)
#   --vif-script S         vif hotplug script (default: xl's own, vif-bridge)
#   --no-vif               no network interface
#   --on-crash ACTION      destroy (default) or preserve (keep a crashed domain for xl dump-core)
#   KERNEL-CMDLINE         the words after `--`, joined by spaces: the image's command line
#                          (iperf3's options plus --ip/--gateway/--mtu), xl's `cmdline`
# Exit status 0, or 2 with a message on bad usage.
set -u
here=$(cd "$(dirname "$0")" && pwd)

ROLE=server
NAME=
KERNEL=${UNIPERF_IMAGE:-$here/../../images/target/x86_64-unknown-none/release/uniperf-image}
MEM=64
VCPUS=1
BRIDGE=xenbr0
MAC=
VIF_SCRIPT=
VIF=1
ON_CRASH=destroy

die() {
    echo "xl-config.sh: $*" >&2
    exit 2
}
need() {
    [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
}
while [ $# -gt 0 ]; do
    case $1 in
        --role) need "$@"; ROLE=$2; shift 2 ;;
        --name) need "$@"; NAME=$2; shift 2 ;;
        --kernel) need "$@"; KERNEL=$2; shift 2 ;;
        --mem) need "$@"; MEM=$2; shift 2 ;;
        --vcpus) need "$@"; VCPUS=$2; shift 2 ;;
        --bridge) need "$@"; BRIDGE=$2; shift 2 ;;
        --mac) need "$@"; MAC=$2; shift 2 ;;
        --vif-script) need "$@"; VIF_SCRIPT=$2; shift 2 ;;
        --no-vif) VIF=0; shift ;;
        --on-crash) need "$@"; ON_CRASH=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (the kernel command line goes after --; see --help)" ;;
    esac
done
CMDLINE="$*"

case $ROLE in
    server)
        : "${NAME:=uniperf-server}" "${MAC:=00:16:3e:18:00:02}"
        [ -n "$CMDLINE" ] || CMDLINE="-s --ip 198.18.0.2/24"
        ;;
    client)
        : "${NAME:=uniperf-client}" "${MAC:=00:16:3e:18:00:03}"
        [ -n "$CMDLINE" ] || die "--role client needs a command line after -- (e.g. -c 198.18.0.2 --ip 198.18.0.3/24)"
        ;;
    *) die "--role wants server or client, not '$ROLE'" ;;
esac
case $NAME in
    *[!A-Za-z0-9_.-]*|'') die "--name: '$NAME' is not a domain name (letters, digits, _ . -)" ;;
esac
case $MEM in *[!0-9]*|''|0) die "--mem wants a size in MB, not '$MEM'" ;; esac
case $VCPUS in *[!0-9]*|''|0) die "--vcpus wants a number, not '$VCPUS'" ;; esac
case $BRIDGE in *[!A-Za-z0-9_.-]*|'') die "--bridge: '$BRIDGE' is not an interface name" ;; esac
case $ON_CRASH in destroy|preserve) ;; *) die "--on-crash wants destroy or preserve, not '$ON_CRASH'" ;; esac
echo "$MAC" | grep -Eq '^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$' || die "--mac: '$MAC' is not a MAC address"
[ -f "$KERNEL" ] || die "no image at $KERNEL (build it with scripts/build-image.sh)"
KERNEL=$(cd "$(dirname "$KERNEL")" && pwd)/$(basename "$KERNEL")
case $VIF_SCRIPT in *[,=\"]*) die "--vif-script: '$VIF_SCRIPT' has a character xl's vif syntax reserves" ;; esac
# xl strings are double-quoted with C-like escapes.
quote() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g')"
}

vif="bridge=$BRIDGE,mac=$MAC"
[ -n "$VIF_SCRIPT" ] && vif="$vif,script=$VIF_SCRIPT"
echo "# uniperf $ROLE VM, made by scripts/xen/xl-config.sh"
echo "name = $(quote "$NAME")"
echo 'type = "pvh"'
echo "kernel = $(quote "$KERNEL")"
echo "cmdline = $(quote "$CMDLINE")"
echo "memory = $MEM"
echo "vcpus = $VCPUS"
[ "$VIF" = 1 ] && echo "vif = [ $(quote "$vif") ]"
# The image powers off when its test is done (client) or on a fatal error; either way the
# domain should go, and `xl create -c` then returns.
echo 'on_poweroff = "destroy"'
echo 'on_reboot = "destroy"'
echo "on_crash = $(quote "$ON_CRASH")"
