#!/usr/bin/env bash
# Builds the Linux reference guest for benches/image.sh from Debian packages only: Debian's
# cloud kernel (bookworm's linux-image-cloud-amd64) and an initramfs with busybox-static, stock
# iperf3 and its shared libraries, and the kernel's virtio modules (virtio-net, virtio-pci and
# virtio-mmio are modules in Debian's kernels). Its /init brings up eth0 with a static address
# and runs `iperf3 -s`, then prints a ready line on the console:
#   linux-guest: ready: listening on ADDR:5201
#
# Boot it with scripts/qemu.sh like the image (same NIC, TAP and accelerator):
#   scripts/qemu.sh --netns NS --tap tap0 --mem 256 --kernel out/linux-guest/vmlinuz \
#       --initrd out/linux-guest/initrd.gz -- console=ttyS0 quiet panic=-1 linuxguest.ip=198.18.0.2/24
# On microvm it needs ACPI (--acpi on): Debian's kernels have no virtio-mmio command-line devices.
#
# The result is cached in out/linux-guest/ (gitignored) and rebuilt only when this script or the
# Debian package versions change; downloads go to a scratch directory under /tmp, removed at exit.
# Prints the output directory (holding vmlinuz and initrd.gz) on stdout.
#
# usage: benches/linux-guest.sh [--rebuild] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="$PWD/out/linux-guest"
REBUILD=0
while (($#)); do
    case $1 in
        --rebuild) REBUILD=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "linux-guest: unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { echo "linux-guest: $*" >&2; }

# The kernel: what the linux-image-cloud-amd64 metapackage of bookworm points at (not the
# backports one: 6.12 compresses its modules with xz, which busybox's insmod cannot load).
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^  Candidate: //p'; }
if [[ -z $(candidate linux-image-cloud-amd64) || $(candidate linux-image-cloud-amd64) == "(none)" ]]; then
    if [[ $EUID -ne 0 ]]; then
        log "apt has no package lists; run as root (for apt-get update)"
        exit 1
    fi
    log "apt-get update"
    apt-get update -q >&2
fi
KPKG=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^  Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
[[ -n $KPKG ]] || { log "cannot resolve linux-image-cloud-amd64 to a kernel package"; exit 1; }
PKGS=("$KPKG" busybox-static iperf3 libiperf0 libsctp1 libssl3 libc6)
versions=""
for p in "${PKGS[@]}"; do
    versions+="$p=$(candidate "$p") "
done
STAMP="$(sha256sum "$0" | cut -d' ' -f1) $versions"

if ((!REBUILD)) && [[ -f $OUT/vmlinuz && -f $OUT/initrd.gz && -f $OUT/stamp ]] &&
    [[ $(cat "$OUT/stamp") == "$STAMP" ]]; then
    log "cached in $OUT ($versions)"
    echo "$OUT"
    exit 0
fi

SCRATCH=$(mktemp -d /tmp/uniperf-linux-guest.XXXXXX)
chmod 755 "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SCRATCH/debs" "$SCRATCH/x" "$SCRATCH/root"
# apt's download sandbox user must be able to write there.
if id _apt >/dev/null 2>&1 && [[ $EUID -eq 0 ]]; then chown _apt "$SCRATCH/debs"; fi
log "downloading ${PKGS[*]}"
(cd "$SCRATCH/debs" && apt-get download -q "${PKGS[@]}" >&2)
for deb in "$SCRATCH"/debs/*.deb; do
    dpkg-deb -x "$deb" "$SCRATCH/x"
done

X="$SCRATCH/x"
R="$SCRATCH/root"
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,etc,usr/bin,lib/modules,lib/x86_64-linux-gnu,usr/lib/x86_64-linux-gnu,lib64}
cp "$X/bin/busybox" "$R/bin/busybox"
cp "$X/usr/bin/iperf3" "$R/usr/bin/iperf3"
# iperf3's libraries (libiperf0, libsctp1, libssl3) and glibc's core (libc6).
cp -a "$X"/usr/lib/x86_64-linux-gnu/{libiperf.so.0*,libsctp.so.1*,libssl.so.3,libcrypto.so.3} \
    "$R/usr/lib/x86_64-linux-gnu/"
cp -a "$X"/lib/x86_64-linux-gnu/{ld-linux-x86-64.so.2,libc.so.6,libm.so.6,libresolv.so.2,libnss_files.so.2,libnss_dns.so.2} \
    "$R/lib/x86_64-linux-gnu/"
ln -s /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$R/lib64/ld-linux-x86-64.so.2"
printf 'root:x:0:0:root:/:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf '127.0.0.1 localhost\n' >"$R/etc/hosts"

# The virtio modules and what they depend on, in load order (read from each module's
# .modinfo "depends=" entry: the package ships no modules.dep).
KVER=$(basename "$(ls -d "$X"/lib/modules/*)")
python3 - "$X/lib/modules/$KVER" "$R/lib/modules" virtio_net virtio_pci virtio_mmio <<'PY'
import os, re, shutil, sys
src, dst, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
path = {}
for d, _, files in os.walk(src):
    for f in files:
        if f.endswith(".ko"):
            path[f[:-3].replace("-", "_")] = os.path.join(d, f)
order, seen = [], set()
def visit(name):
    if name in seen:
        return
    seen.add(name)
    data = open(path[name], "rb").read()
    m = re.search(rb"depends=([^\x00]*)\x00", data)
    for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
        visit(dep.replace("-", "_"))
    order.append(name)
for w in wanted:
    if w not in path:
        sys.exit(f"linux-guest: module {w} not found in {src}")
    visit(w)
with open(os.path.join(dst, "order"), "w") as out:
    for name in order:
        shutil.copy(path[name], os.path.join(dst, name + ".ko"))
        out.write(name + ".ko\n")
print("linux-guest: modules: " + " ".join(order), file=sys.stderr)
PY

cat >"$R/init" <<'INIT'
#!/bin/busybox sh
# uniperf's Linux reference guest: eth0 gets linuxguest.ip=ADDR/PREFIX from the kernel command
# line, then stock iperf3 -s serves on it.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m" || echo "linux-guest: insmod $m failed"
done
ADDR=198.18.0.2/24
for w in $(cat /proc/cmdline); do
    case $w in linuxguest.ip=*) ADDR=${w#linuxguest.ip=} ;; esac
done
ip link set lo up
i=0
while ! ip link show eth0 >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
        echo "linux-guest: error - no eth0"
        ip link
        poweroff -f
    fi
    sleep 0.1
done
ip addr add "$ADDR" dev eth0
ip link set eth0 up
iperf3 -s &
i=0
while ! netstat -ltn 2>/dev/null | grep -q ':5201 '; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then
        echo "linux-guest: error - iperf3 -s did not start"
        poweroff -f
    fi
    sleep 0.1
done
echo "linux-guest: ready: listening on ${ADDR%/*}:5201 (Linux $(uname -r))"
wait
poweroff -f
INIT
chmod +x "$R/init"

# The initramfs must run here as well as in the guest: check the dynamic linking on the host.
if [[ $EUID -eq 0 ]] && ! chroot "$R" /usr/bin/iperf3 --version >/dev/null 2>&1; then
    log "iperf3 does not run inside the initramfs tree (missing library?)"
    chroot "$R" /usr/bin/iperf3 --version >&2 || true
    exit 1
fi

mkdir -p "$OUT"
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -9 >"$OUT/initrd.gz.new"
cp "$X/boot/vmlinuz-$KVER" "$OUT/vmlinuz.new"
mv "$OUT/initrd.gz.new" "$OUT/initrd.gz"
mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
printf '%s\n' "$STAMP" >"$OUT/stamp"
log "built $OUT: kernel $KVER ($(du -h "$OUT/vmlinuz" | cut -f1)), initrd $(du -h "$OUT/initrd.gz" | cut -f1)"
echo "$OUT"
