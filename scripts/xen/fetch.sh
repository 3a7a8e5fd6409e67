#!/usr/bin/env bash
# Fetches what the Xen test rig (scripts/xen/rig.sh) boots, from Debian, into the cache, and
# builds the toolstack part of dom0's initramfs. Nothing is installed on this machine: packages
# are `apt-get download`ed and unpacked with `dpkg-deb -x`.
#
# usage: scripts/xen/fetch.sh [--force]      (--force: fetch and build again even if cached)
#
# Leaves in $UNIPERF_CACHE/xen (default .cache/xen of the repository):
#   xen             the hypervisor, gunzipped: a multiboot1 ELF that QEMU's -kernel loads
#   vmlinuz         Debian's Linux 6.1 kernel for the PV dom0
#   dom0-base.cpio  newc archive (uncompressed): busybox, xl + xenstored + xenconsoled,
#                   xen-utils' readnotes, stock iperf3, their libraries, the dom0 kernel modules
#   root/           the unpacked packages (of the kernel only vmlinuz and dom0's modules);
#   debs/           the packages; versions: what was fetched
# rig.sh appends its own per-run archive (init, test script, image, uniperf) to dom0-base.cpio
# and gzips the whole as one stream.
#
# Idempotent: when `versions` lists exactly the packages apt would fetch now and the outputs
# exist, it does nothing. Versions come from apt-cache (the machine's apt lists), so they
# follow Debian's point releases; the dom0 kernel is the newest linux-image-6.1.0-N-amd64.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
CACHE=$(realpath -m "${UNIPERF_CACHE:-.cache}")
DIR=$CACHE/xen
FORCE=0
case ${1:-} in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    '') ;;
    *) echo "fetch.sh: unknown argument '$1'" >&2; exit 2 ;;
esac

die() {
    echo "xen fetch: $*" >&2
    exit 1
}

[[ $(dpkg --print-architecture 2>/dev/null) == amd64 ]] || die "only amd64 hosts are supported"
for tool in apt-get apt-cache dpkg-deb cpio gzip; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs cpio)"
done

XENV=4.17
# The Xen 4.17 hypervisor and toolstack, xenstore-*, the libraries xl and xenstored load, busybox
# for dom0's userland, and stock iperf3 with its libraries (the host's glibc comes along).
PACKAGES=(
    "xen-hypervisor-$XENV-amd64" "xen-utils-$XENV" xenstore-utils
    libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1 libxengnttab1 libxenhypfs1
    "libxenmisc$XENV" libxenstore4 libxentoolcore1 libxentoollog1 libyajl2
    busybox-static iperf3 libiperf0 libsctp1 libssl3
)
# Dom0 kernel: bookworm's Linux 6.1 (as a PV dom0 it needs no SVM of its own). The newest ABI
# that apt knows, e.g. linux-image-6.1.0-57-amd64 (the signed package: same kernel).
KPKG=$(apt-cache pkgnames linux-image-6.1.0- | grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V | tail -n1 || true)
[[ -n $KPKG ]] || die "apt-cache knows no linux-image-6.1.0-N-amd64 (run apt-get update?)"
KVER=${KPKG#linux-image-}
PACKAGES+=("$KPKG")

# One apt-cache call for all candidates (each call reads the whole package cache).
declare -A candidate=()
while read -r pkg version; do
    candidate[$pkg]=$version
done < <(apt-cache policy "${PACKAGES[@]}" 2>/dev/null | awk '/^[^ ]/ {sub(/:$/, ""); p = $0} /^  Candidate:/ {print p, $2}')
specs=()
for pkg in "${PACKAGES[@]}"; do
    version=${candidate[$pkg]:-}
    [[ -n $version && $version != "(none)" ]] || die "apt-cache has no candidate for $pkg (run apt-get update?)"
    specs+=("$pkg=$version")
done
# The layout line makes a cache built by an older fetch.sh (same packages) rebuild.
want=$(printf '%s\n' "${specs[@]}" layout=2-xen-netfront | sort)

mkdir -p "$DIR"
exec {lock}>"$DIR/lock"
flock "$lock" # two fetches at once (a test and a manual run) must not unpack over each other

have=$(cat "$DIR/versions" 2>/dev/null || true)
if ((!FORCE)) && [[ $have == "$want" && -f $DIR/xen && -f $DIR/vmlinuz && -f $DIR/dom0-base.cpio ]]; then
    echo "xen fetch: cached in $DIR (Xen $(sed -n 's/^xen-hypervisor-[^=]*=//p' <<<"$want"), dom0 $KVER)"
    exit 0
fi

# Packages already in debs/ (same version) are kept; the rest are downloaded.
mkdir -p "$DIR/debs"
fetch=()
for spec in "${specs[@]}"; do
    pkg=${spec%%=*} version=${spec#*=}
    f=$(ls "$DIR/debs/${pkg}_${version/:/%3a}"_*.deb 2>/dev/null | head -n1 || true)
    [[ -n $f ]] || fetch+=("$spec")
done
if ((${#fetch[@]})); then
    echo "xen fetch: downloading ${#fetch[@]} packages into $DIR/debs"
    # apt-get download writes to the current directory; as root it drops to _apt, which must write there.
    chown _apt "$DIR/debs" 2>/dev/null || true
    (cd "$DIR/debs" && apt-get download -q "${fetch[@]}") || die "apt-get download failed"
fi
rm -rf "$DIR/root.new"
# Dom0's modules, in the order its /init loads them (busybox insmod resolves no dependencies).
MODULES=(drivers/xen/xen-privcmd drivers/xen/xenfs/xenfs drivers/xen/xen-evtchn drivers/xen/xen-gntdev
    drivers/xen/xen-gntalloc net/llc/llc net/802/stp net/bridge/bridge drivers/net/xen-netback/xen-netback)
members=("./boot/vmlinuz-$KVER")
# Not loaded by dom0: the Linux reference domU's (scripts/xen/dom0/linux-domu).
DOMU_MODULES=(drivers/net/xen-netfront)
for m in "${MODULES[@]}" "${DOMU_MODULES[@]}"; do members+=("./lib/modules/$KVER/kernel/$m.ko"); done
mkdir -p "$DIR/root.new"
for spec in "${specs[@]}"; do
    pkg=${spec%%=*} version=${spec#*=}
    deb=$(ls "$DIR/debs/${pkg}_${version/:/%3a}"_*.deb 2>/dev/null | head -n1 || true)
    [[ -n $deb ]] || die "apt-get download left no package file for $spec"
    if [[ $pkg == "$KPKG" ]]; then
        # Only the kernel and those modules: the whole package unpacks to ~400 MB.
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$DIR/root.new" "${members[@]}" ||
            die "$KPKG lacks the kernel or one of: ${MODULES[*]}"
    else
        dpkg-deb -x "$deb" "$DIR/root.new"
    fi
done
R=$DIR/root.new
gunzip -c "$R/boot/xen-$XENV-amd64.gz" >"$DIR/xen.new" || die "no /boot/xen-$XENV-amd64.gz in the hypervisor package"
cp "$R/boot/vmlinuz-$KVER" "$DIR/vmlinuz.new" || die "no /boot/vmlinuz-$KVER in $KPKG"

# ---- dom0's toolstack archive -------------------------------------------------------------
W=$DIR/base.new
rm -rf "$W"
mkdir -p "$W"
cd "$W"
mkdir -p bin usr/bin usr/sbin sbin lib64 lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu \
    "usr/lib/xen-$XENV/bin" lib/modules proc sys dev run tmp root var/lib/xen var/log/xen \
    var/lib/xenstored var/lock etc/xen/scripts
cp "$R/bin/busybox" bin/busybox
for applet in $(bin/busybox --list); do
    [[ -e bin/$applet ]] || ln -s busybox "bin/$applet"
done
# The real binaries, not Debian's /usr/sbin/xl wrapper (it picks a Xen version with a script).
for b in xl xenstored xenconsoled xenconsole xen-init-dom0 libxl-save-helper readnotes; do
    cp "$R/usr/lib/xen-$XENV/bin/$b" "usr/lib/xen-$XENV/bin/"
done
# xenstore-read, -write, … are hard links of one binary (xenstore-control is a symlink to
# Debian's wrapper, left out).
for f in "$R"/usr/bin/xenstore*; do
    [[ -L $f ]] || cp "$f" usr/bin/
done
cp "$R/usr/bin/iperf3" usr/bin/iperf3
# Libraries: the packages' own from root/, the rest (glibc, zlib, ncurses, …) from this host.
# glibc dlopen()s libgcc_s for pthread_cancel: without it xl aborts right after unpausing a domain.
{
    LD_LIBRARY_PATH=$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu \
        ldd "usr/lib/xen-$XENV/bin"/* usr/bin/xenstore* usr/bin/iperf3 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
    echo /lib/x86_64-linux-gnu/libgcc_s.so.1
} | sort -u | while read -r lib; do
    case $lib in
        "$R"/*) cp -L "$lib" "usr/lib/x86_64-linux-gnu/${lib##*/}" ;;
        *) cp -L "$lib" "lib/x86_64-linux-gnu/${lib##*/}" ;;
    esac
done
cp -L /lib64/ld-linux-x86-64.so.2 lib64/
missing=$(LD_LIBRARY_PATH=$R/usr/lib/x86_64-linux-gnu ldd "usr/lib/xen-$XENV/bin/xl" usr/bin/iperf3 | grep 'not found' || true)
[[ -z $missing ]] || die "libraries not found: $missing"
# Kernel modules, flat; etc/dom0-modules lists them in load order.
MODS="$R/lib/modules/$KVER/kernel"
for m in "${MODULES[@]}" "${DOMU_MODULES[@]}"; do
    cp "$MODS/$m.ko" lib/modules/
done
printf '%s\n' "${MODULES[@]##*/}" >etc/dom0-modules
echo "$KVER" >etc/dom0-kernel
# xl's own config: dom0's memory is fixed by Xen's dom0_mem, so xl must not balloon it.
echo 'autoballoon="off"' >etc/xen/xl.conf
find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 >"$DIR/dom0-base.cpio.new"
cd "$DIR"
rm -rf "$W"

# Swapped in whole, so an interrupted fetch never leaves a half tree that the rig boots.
rm -rf "$DIR/root"
mv "$DIR/root.new" "$DIR/root"
mv "$DIR/xen.new" "$DIR/xen"
mv "$DIR/vmlinuz.new" "$DIR/vmlinuz"
mv "$DIR/dom0-base.cpio.new" "$DIR/dom0-base.cpio"
echo "$want" >"$DIR/versions"
echo "xen fetch: ready in $DIR: xen ($(stat -c %s xen) B), vmlinuz $KVER, dom0-base.cpio ($(stat -c %s dom0-base.cpio) B)"
