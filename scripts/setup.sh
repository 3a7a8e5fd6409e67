#!/usr/bin/env bash
# Installs what building and testing uniperf needs. Idempotent: apt runs only when a tool is
# missing, and only Debian packages and the Rust target pinned in rust-toolchain.toml are fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A PROVIDER=(
    [iperf3]=iperf3          # the reference implementation the tests interoperate with
    [iperf]=iperf            # iperf 2.1.8, the client users point at an iperf3 port by mistake
    [ip]=iproute2            # network namespaces, TAP devices, bridge, veth
    [ss]=iproute2            # waiting for kernel-side listeners
    [tcpdump]=tcpdump        # debugging captures
    [python3]=python3        # misbehaving clients in tests/clients/
    [kill]=procps            # stopping test processes by PID
    [cc]=gcc                 # the linker rustc calls
    [cpio]=cpio              # benches/linux-guest.sh packs the Linux guest's initramfs
)

# The URI this machine's apt already fetches its release from (a local mirror, a caching proxy, a
# snapshot), so that the extra suites below (bookworm-backports, sid) come from the same place, which
# is often the only Debian host a machine can reach. deb.debian.org only when no source names it.
debian_mirror() {
    local codename uri
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    # deb822 (.sources, the default since bookworm): the first enabled "deb" stanza whose Suites
    # include the release itself (not -updates, -security or -backports).
    uri=$(awk -v suite="$codename" '
        function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && enabled != "no" && uris != "") {
                split(uris, u, " "); print u[1]; found = 1; exit
            }
            types = suites = uris = enabled = ""
        }
        FNR == 1 { flush() }
        /^[[:space:]]*$/ { flush(); next }
        /^[[:space:]]*#/ { next }
        {
            key = tolower($0); sub(/:.*/, "", key); val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
            if (key == "types") types = val; else if (key == "suites") suites = val
            else if (key == "uris") uris = val; else if (key == "enabled") enabled = tolower(val)
        }
        END { if (!found) flush() }' /dev/null /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    # One-line format: "deb [options] URI suite components".
    if [[ -z $uri ]]; then
        uri=$(sed -e 's/#.*//' -e 's/\[[^]]*\]//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v suite="$codename" '$1 == "deb" && $3 == suite { print $2; exit }')
    fi
    if [[ -z $uri ]]; then
        echo "setup: no apt source for $codename found; using http://deb.debian.org/debian" >&2
        uri=http://deb.debian.org/debian
    fi
    echo "${uri%/}"
}

# Another apt run (unattended-upgrades, a parallel set-up) holds dpkg's lock: wait for it.
APT_WAIT=(-o DPkg::Lock::Timeout=600)

missing=()
for cmd in "${!PROVIDER[@]}"; do
    type -P "$cmd" >/dev/null 2>&1 || missing+=("${PROVIDER[$cmd]}")
done

if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [[ $EUID -ne 0 ]]; then
        echo "setup: missing packages: ${missing[*]}; run this script as root to install them" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get "${APT_WAIT[@]}" update -q
    apt-get "${APT_WAIT[@]}" install -y -q --no-install-recommends "${missing[@]}"
else
    echo "setup: system packages present"
fi

# QEMU 10 (PVH -kernel on microvm/pc/q35, isa-debug-exit) from bookworm-backports: bookworm's
# own 7.2 is older than what the image and scripts/qemu.sh are tested with.
QEMU_MIN_MAJOR=10
qemu_major() {
    qemu-system-x86_64 --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p'
}
major=$(qemu_major || true)
if [[ -z $major || $major -lt $QEMU_MIN_MAJOR ]]; then
    if [[ $EUID -ne 0 ]]; then
        echo "setup: qemu-system-x86_64 ${major:+$major.x }is missing or older than $QEMU_MIN_MAJOR;" \
            "run this script as root to install it from bookworm-backports" >&2
        exit 1
    fi
    # Any active source of the suite will do, whatever its mirror or format (one-line or deb822).
    if ! grep -qsE '^[^#]*[[:space:]]bookworm-backports([[:space:]]|$)' /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
        echo "setup: adding bookworm-backports to /etc/apt/sources.list.d/bookworm-backports.list"
        echo "deb $(debian_mirror) bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
    fi
    echo "setup: installing qemu-system-x86 from bookworm-backports"
    export DEBIAN_FRONTEND=noninteractive
    apt-get "${APT_WAIT[@]}" update -q
    apt-get "${APT_WAIT[@]}" install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86
    major=$(qemu_major || true)
    if [[ -z $major || $major -lt $QEMU_MIN_MAJOR ]]; then
        echo "setup: qemu-system-x86_64 is still ${major:-missing} after the install" >&2
        exit 1
    fi
else
    echo "setup: QEMU $major present"
fi

# iperf3 3.22 from Debian sid, next to bookworm's 3.12, so uniperf can be checked against the newest
# stock peer too (3.18+ check parameter types and values, 3.20+ add JSON keys, 3.21+ report more
# server errors).
# sid's libiperf0 needs glibc >= 2.38 and bookworm has 2.36, so it cannot be installed; instead its
# packages are unpacked under the cache and run with sid's own dynamic loader. Nothing outside the
# cache changes: apt runs with its own sources list, lists, package cache and preferences, so the
# machine's apt never sees sid. A relative UNIPERF_CACHE is taken from the repository's root.
CACHE=$(realpath -m "${UNIPERF_CACHE:-.cache}")
SID_DIR=$CACHE/iperf3-sid
SID_WRAPPER=$CACHE/bin/iperf3-sid
SID_MIN_MINOR=22
# Only what iperf3 loads: sid's libssl3t64 wants a newer libzstd1 than bookworm's, and zlib1g comes
# along so that every library the binary maps is sid's.
SID_PACKAGES=(iperf3 libiperf0 libc6 libssl3t64 libsctp1 libzstd1 zlib1g)
# The minor version (22) of "iperf 3.22 (cJSON …)" or of a Debian version such as "3.22-0.1"; empty
# for anything else.
iperf3_minor() { sed -n '1s/^\(iperf \)\{0,1\}3\.\([0-9][0-9]*\).*/\2/p'; }
sid_works() {
    local minor
    minor=$("$SID_WRAPPER" --version 2>/dev/null | iperf3_minor || true)
    [[ -n $minor && $minor -ge $SID_MIN_MINOR ]]
}
mkdir -p "$CACHE/bin" "$SID_DIR"
exec {sid_lock}>"$SID_DIR/lock"
flock "$sid_lock" # two set-ups at once (demo and tests) must not unpack over each other
# The wrapper finds the unpacked tree from its own location, so a moved cache still works. It execs,
# so the PID a caller gets is iperf3's own and `kill PID` reaches it; --argv0 makes iperf3 name itself
# "iperf3" in its messages, as the installed one does. (/proc/PID/comm reads "ld-linux-x86-64".)
cat >"$SID_WRAPPER.tmp" <<'WRAPPER'
#!/bin/sh
# iperf3 from Debian sid, unpacked by scripts/setup.sh and run with sid's loader and libraries.
R=$(dirname "$(readlink -f "$0")")/../iperf3-sid/root
exec "$R/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" --argv0 iperf3 \
    --library-path "$R/usr/lib/x86_64-linux-gnu" "$R/usr/bin/iperf3" "$@"
WRAPPER
chmod +x "$SID_WRAPPER.tmp"
# Replaced only when it changed, by rename: a test running the old one keeps reading a whole file.
if cmp -s "$SID_WRAPPER.tmp" "$SID_WRAPPER"; then rm "$SID_WRAPPER.tmp"; else mv "$SID_WRAPPER.tmp" "$SID_WRAPPER"; fi
if sid_works; then
    echo "setup: iperf3 from sid present ($("$SID_WRAPPER" --version | head -n1))"
else
    if [[ $(dpkg --print-architecture) != amd64 ]]; then
        echo "setup: iperf3 from sid: only amd64 is supported (the wrapper runs x86_64's loader)" >&2
        exit 1
    fi
    echo "setup: fetching iperf3 from Debian sid into $SID_DIR"
    mkdir -p "$SID_DIR/apt/lists/partial" "$SID_DIR/apt/cache/archives/partial" "$SID_DIR/apt/preferences.d"
    # Only the Packages index (no translations, DEP-11, Contents, pdiffs): one 11 MB download.
    echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg target=Packages pdiffs=no]" \
        "$(debian_mirror) sid main" >"$SID_DIR/apt/sources.list"
    SID_APT=(
        -o Dir::Etc::sourcelist="$SID_DIR/apt/sources.list" -o Dir::Etc::sourceparts=-
        -o Dir::State::Lists="$SID_DIR/apt/lists" -o Dir::Cache="$SID_DIR/apt/cache"
        -o Dir::Etc::preferences=/dev/null -o Dir::Etc::preferencesparts="$SID_DIR/apt/preferences.d"
    )
    apt-get -q "${SID_APT[@]}" update
    # The candidate of each package is sid's (it is newer than anything installed from bookworm);
    # taken from apt-cache policy rather than written here, since sid's versions move.
    specs=()
    for pkg in "${SID_PACKAGES[@]}"; do
        version=$(apt-cache "${SID_APT[@]}" policy "$pkg" | sed -n 's/^  Candidate: //p')
        if [[ -z $version || $version == "(none)" ]]; then
            echo "setup: iperf3 from sid: $pkg has no candidate in $(cat "$SID_DIR/apt/sources.list")" >&2
            exit 1
        fi
        if [[ $pkg == iperf3 ]]; then
            minor=$(iperf3_minor <<<"$version")
            if [[ -z $minor || $minor -lt $SID_MIN_MINOR ]]; then
                echo "setup: sid's iperf3 is $version, older than 3.$SID_MIN_MINOR (is the mirror a snapshot?)" >&2
                exit 1
            fi
            echo "setup: sid's iperf3 is $version (3.$minor >= 3.$SID_MIN_MINOR)"
        fi
        specs+=("$pkg=$version")
    done
    rm -rf "$SID_DIR/debs" "$SID_DIR/root.new"
    mkdir -p "$SID_DIR/debs"
    # apt-get download writes to the current directory; _apt (apt's sandbox user) may write there.
    chown _apt "$SID_DIR/debs" 2>/dev/null || true
    (cd "$SID_DIR/debs" && apt-get -q "${SID_APT[@]}" download "${specs[@]}")
    for deb in "$SID_DIR"/debs/*.deb; do
        dpkg-deb -x "$deb" "$SID_DIR/root.new"
    done
    # Swapped in whole, so an interrupted unpack never leaves a half tree that the wrapper runs.
    rm -rf "$SID_DIR/root"
    mv "$SID_DIR/root.new" "$SID_DIR/root"
    if ! sid_works; then
        echo "setup: $SID_WRAPPER --version does not report iperf 3.$SID_MIN_MINOR or newer:" >&2
        "$SID_WRAPPER" --version >&2 || true
        exit 1
    fi
    echo "setup: iperf3 from sid ready: $SID_WRAPPER ($("$SID_WRAPPER" --version | head -n1))"
fi
exec {sid_lock}>&-

# The unikernel target (rust-toolchain.toml pins the toolchain and lists the target).
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
        rustup target add x86_64-unknown-none
    fi
else
    echo "setup: rustup not found; x86_64-unknown-none must already be installed" >&2
fi

# The Xen test rig (tests/xen.rs, scripts/xen/rig.sh): Xen 4.17, a dom0 kernel, busybox, the
# toolstack and iperf3 from Debian, unpacked under .cache/xen; nothing is installed.
scripts/xen/fetch.sh

echo "setup: done"

# The fuzz job's nightly toolchain and cargo-fuzz: installed by scripts/fuzz.sh when it first
# runs (the "fuzz smoke" step of scripts/test.sh), or here with UNIPERF_SETUP_FUZZ=1.
if [[ ${UNIPERF_SETUP_FUZZ:-} == 1 ]]; then
    scripts/fuzz.sh install
fi
