#!/usr/bin/env bash
# The Xen test rig: boots Debian's Xen 4.17 with a Linux 6.1 PV dom0 under QEMU TCG (TCG
# emulates AMD SVM with nested paging, so Xen runs HVM/PVH guests here), inside a network
# namespace. Dom0 is a busybox initramfs with the real toolstack (xl, xenstored, xenconsoled),
# xen-netback and a bridge xenbr0 (dom0 198.18.0.1/24); it runs a test script, sends the
# files the script left back to this side, and powers off. One boot serves any number of
# `xl create`s: share it between the cases of a test run.
#
# usage: scripts/xen/rig.sh [options] --script FILE
#   --script FILE      test script, run by dom0's sh from /rig (required). In dom0:
#                        /rig/uniperf-image   the image (--image)
#                        /usr/bin/uniperf     this machine's uniperf (--uniperf), for `collect`
#                        /usr/bin/xl.sh, /usr/bin/xl-config.sh   scripts/xl.sh and xl-config.sh
#                        /etc/xen/scripts/vif-sh   vif hotplug script for busybox (vif_script)
#                        /rig/files/…         --file copies
#                        $RIG_OUT (/rig/out)  files left here come back to --out
#                        /rig/lib.sh          rig_ship FILE… (send now), rig_mark NAME,
#                                             rig_wait_for FILE TEXT SECS
#                      iperf3 3.12, xl, xenstore-*, readnotes and busybox are on PATH.
#   --image FILE       the PVH image (default: images/target/…/release/uniperf-image)
#   --uniperf FILE     the Linux binary (default target/release/uniperf; skipped if absent)
#   --file SRC[:NAME]  one more file, at /rig/files/NAME (repeatable)
#   --out DIR          where the script's files, the console logs and `status` go (created;
#                      default: a fresh /tmp/uniperf-xen-rig.XXXXXX, printed)
#   --netns NS         run QEMU in this existing namespace (default: a new one, deleted at exit)
#   --timeout SECS     stop QEMU (by PID) after SECS (default 600)
#   --xen-arg WORD     one more word for Xen's command line (repeatable)
#   --dom0-arg WORD    one more word for dom0's kernel command line (repeatable)
#   --linux-domu       also put dom0's kernel at /rig/vmlinuz, for scripts/xen/dom0/linux-domu
#                      (a Linux reference domU; ~8 MB more initramfs)
#   --dry-run          build the initramfs, print the QEMU command line, stop
# Environment: RIG_CPU, QEMU's -cpu (default max,-xsave,-avx,-avx2: see below).
#
# In --out: com1.log (COM1 with seconds since QEMU started), com1.raw, each shipped file,
# `marks` (MARK dom0-uptime host-seconds: init, toolstack, ready, test-done, poweroff),
# `status`. Progress goes to stderr.
#
# Exit status: the test script's (0..123); 124 timeout; 125 the rig failed (QEMU error, dom0 did
# not come up, no exit report, a shipped file arrived damaged); 126 bad usage or set-up.
# Needs root (namespace) and `scripts/xen/fetch.sh` (run by scripts/setup.sh) beforehand.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
QEMU=${QEMU:-qemu-system-x86_64}
CACHE=$(realpath -m "${UNIPERF_CACHE:-$ROOT/.cache}")
XDIR=$CACHE/xen

SCRIPT=
IMAGE="$ROOT/images/target/x86_64-unknown-none/release/uniperf-image"
UNIPERF_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/uniperf"
FILES=()
OUT=
NETNS=
TIMEOUT=600
XEN_EXTRA=()
DOM0_EXTRA=()
DRY_RUN=0
LINUX_DOMU=0
# -xsave: with XSAVE offered, dom0's user space corrupts as soon as a domU runs (busybox and
# iperf3 SIGSEGV, malloc aborts, md5sum of unchanged binaries differing): TCG's XSAVE/XRSTOR
# under Xen's vCPU context switches loses FPU/SSE state. Measured with a dom0 probe (md5sum of
# three binaries + a shell loop, 20 times with no domU, 60 with an idle domU, 6 x `iperf3 -t 4`):
# -cpu max failed in every run (2-7 failures), so did max,-xsaves,-xsavec,-xsaveopt and
# max,-pku,-mpx (states 0x7); max,-xsave,-avx,-avx2 failed none in two runs. AVX needs XSAVE.
CPU=${RIG_CPU:-max,-xsave,-avx,-avx2}

die() {
    echo "rig.sh: $*" >&2
    exit 126
}
need() {
    [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value"
}
while (($#)); do
    case $1 in
        --script) need "$@"; SCRIPT=$2; shift 2 ;;
        --image) need "$@"; IMAGE=$2; shift 2 ;;
        --uniperf) need "$@"; UNIPERF_BIN=$2; shift 2 ;;
        --file) need "$@"; FILES+=("$2"); shift 2 ;;
        --out) need "$@"; OUT=$2; shift 2 ;;
        --netns) need "$@"; NETNS=$2; shift 2 ;;
        --timeout) need "$@"; TIMEOUT=$2; shift 2 ;;
        --xen-arg) need "$@"; XEN_EXTRA+=("$2"); shift 2 ;;
        --dom0-arg) need "$@"; DOM0_EXTRA+=("$2"); shift 2 ;;
        --linux-domu) LINUX_DOMU=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[[ -n $SCRIPT ]] || die "--script FILE is required"
[[ -f $SCRIPT ]] || die "no test script at $SCRIPT"
[[ -f $IMAGE ]] || die "no image at $IMAGE (build it with scripts/build-image.sh)"
[[ $TIMEOUT =~ ^[0-9]+$ && $TIMEOUT -gt 0 ]] || die "--timeout wants whole seconds, not '$TIMEOUT'"
for f in xen vmlinuz dom0-base.cpio; do
    [[ -f $XDIR/$f ]] || die "no $XDIR/$f: run scripts/xen/fetch.sh (scripts/setup.sh does)"
done
command -v "$QEMU" >/dev/null || die "$QEMU not found (scripts/setup.sh installs it)"
if [[ -n $NETNS ]] && ! ip netns exec "$NETNS" true 2>/dev/null; then
    die "network namespace '$NETNS' does not exist (or this is not root)"
fi

WORK=$(mktemp -d /tmp/uniperf-xen-rig-work.XXXXXX) || die "mktemp failed"
if [[ -z $OUT ]]; then
    OUT=$(mktemp -d /tmp/uniperf-xen-rig.XXXXXX) || die "mktemp failed"
fi
mkdir -p "$OUT" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
# Files of an earlier run would pass for this one's: a directory the rig made before is emptied,
# any other must be empty.
if [[ -e $OUT/.uniperf-xen-rig ]]; then
    find "$OUT" -mindepth 1 -maxdepth 1 ! -name .uniperf-xen-rig -exec rm -rf {} +
elif [[ -n $(ls -A "$OUT") ]]; then
    die "--out $OUT is not empty (and not a directory of an earlier rig run)"
fi
touch "$OUT/.uniperf-xen-rig"
CREATED_NS=
QPID=
SPID=

# shellcheck source=../stop-qemu.sh
source "$ROOT/scripts/stop-qemu.sh"
cleanup() {
    stop_qemu
    if [[ -n $SPID ]]; then
        kill "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
    fi
    [[ -n $CREATED_NS ]] && ip netns del "$CREATED_NS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
for sig in HUP INT TERM; do
    # shellcheck disable=SC2064  # the signal's number is fixed now
    trap "echo 'rig.sh: got SIG$sig; stopping QEMU' >&2; exit $((128 + $(kill -l "$sig")))" "$sig"
done

# ---- dom0's per-run archive: init, helpers, the test script and what it needs ---------------
L=$WORK/layer
mkdir -p "$L/rig/files" "$L/rig/out" "$L/usr/bin" "$L/etc/xen/scripts" "$L/lib/x86_64-linux-gnu" || die "mkdir failed"
install -m 755 "$ROOT/scripts/xen/dom0/init" "$L/init"
install -m 644 "$ROOT/scripts/xen/dom0/lib.sh" "$L/rig/lib.sh"
install -m 755 "$ROOT/scripts/xen/dom0/vif-sh" "$L/etc/xen/scripts/vif-sh"
install -m 755 "$ROOT/scripts/xen/dom0/linux-domu" "$L/usr/bin/linux-domu"
install -m 755 "$ROOT/scripts/xl.sh" "$L/usr/bin/xl.sh"
install -m 755 "$ROOT/scripts/xen/xl-config.sh" "$L/usr/bin/xl-config.sh"
install -m 755 "$SCRIPT" "$L/rig/test.sh"
install -m 644 "$IMAGE" "$L/rig/uniperf-image"
if ((LINUX_DOMU)); then
    install -m 644 "$XDIR/vmlinuz" "$L/rig/vmlinuz"
fi
if [[ -f $UNIPERF_BIN ]]; then
    install -m 755 "$UNIPERF_BIN" "$L/usr/bin/uniperf"
    # It links against this machine's glibc; the base archive has most of it, these make sure.
    ldd "$UNIPERF_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
        cp -L "$lib" "$L/lib/x86_64-linux-gnu/"
    done
else
    echo "rig.sh: no uniperf binary at $UNIPERF_BIN (cargo build --release); dom0 runs without it" >&2
fi
for spec in "${FILES[@]}"; do
    src=${spec%%:*}
    name=${spec#*:}
    [[ $spec == *:* ]] || name=${src##*/}
    [[ -f $src ]] || die "--file: no file at $src"
    [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "--file: '$name' is not a plain file name"
    install -m 755 "$src" "$L/rig/files/$name"
done
# One gzip stream over both archives (the kernel reads concatenated newc archives; some loaders
# read only the first member of a multi-member gzip).
(cd "$L" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$WORK/layer.cpio" || die "cpio failed"
cat "$XDIR/dom0-base.cpio" "$WORK/layer.cpio" | gzip -1 >"$WORK/dom0.gz" || die "gzip failed"

# ---- QEMU ---------------------------------------------------------------------------------
# serial_tx_buffer: dom0's console output is Xen's too; a 16 KiB buffer drops bytes under bursts.
XEN_ARGS=(console=com1 com1=115200,8n1 serial_tx_buffer=1M loglvl=all guest_loglvl=all noreboot
    "dom0_mem=512M,max:512M" "${XEN_EXTRA[@]}")
# quiet: dom0's kernel messages share the console with the framed output.
DOM0_ARGS=(console=hvc0 earlyprintk=xen quiet loglevel=3 "${DOM0_EXTRA[@]}")
for w in "${XEN_ARGS[@]}" "${DOM0_ARGS[@]}"; do
    [[ $w != *,* || $w == dom0_mem=* || $w == com1=* ]] || die "a comma in '$w' would split QEMU's -initrd"
done
# QEMU's multiboot loader: -initrd "module args,module2 args" (commas doubled inside args).
DOM0_ARGS_Q=$(printf '%s ' "${DOM0_ARGS[@]}")
args=(-accel tcg -machine q35 -cpu "$CPU" -m 2048 -smp 1 -nodefaults -display none -no-reboot
    -serial stdio -monitor none
    -kernel "$XDIR/xen" -append "${XEN_ARGS[*]}"
    -initrd "$XDIR/vmlinuz ${DOM0_ARGS_Q% },$WORK/dom0.gz")
launch=(setpriv --pdeathsig KILL "$QEMU" "${args[@]}")
if ((DRY_RUN)); then
    printf '%q ' "${launch[@]:3}"
    echo
    exit 0
fi

if [[ -z $NETNS ]]; then
    NETNS="uniperf-xen-$$"
    ip netns add "$NETNS" || die "cannot create network namespace $NETNS (not root?)"
    CREATED_NS=$NETNS
    ip -n "$NETNS" link set lo up
fi
launch=(ip netns exec "$NETNS" "${launch[@]}")
echo "rig.sh: booting Xen + dom0 in namespace $NETNS (timeout ${TIMEOUT} s); output in $OUT" >&2

# COM1 goes to com1.raw as is and to com1.log with seconds since start; `@@RIG-MARK` lines
# also go to `marks` with the host's time beside dom0's.
T0=$(date +%s.%N)
exec 4>&2
"${launch[@]}" </dev/null 2>"$WORK/qemu.stderr" > >(
    perl -e '
        use Time::HiRes qw(time);
        my ($t0, $raw, $log, $marks) = @ARGV;
        open(my $r, ">", $raw) or die; open(my $l, ">", $log) or die; open(my $m, ">", $marks) or die;
        $_->autoflush(1) for ($r, $l, $m);
        while (my $line = <STDIN>) {
            my $t = time - $t0;
            print $r $line;
            (my $clean = $line) =~ s/\r//g;
            printf $l "[%7.2f] %s", $t, $clean;
            printf $m "%s %s %.2f\n", $1, $2, $t if $clean =~ /\@\@RIG-MARK (\S+) (\S+)/;
            printf STDERR "rig.sh: [%7.2f] dom0 %s\n", $t, $1 if $clean =~ /\@\@RIG-MARK (\S+)/;
        }' "$T0" "$OUT/com1.raw" "$OUT/com1.log" "$OUT/marks" 2>&4
) &
QPID=$!

sleep "$TIMEOUT" &
SPID=$!
finished=
qstatus=0
wait -n -p finished "$QPID" "$SPID" || qstatus=$?
if [[ $finished == "$SPID" ]]; then
    SPID=
    echo "rig.sh: timeout: the rig ran for ${TIMEOUT} s; stopping QEMU (pid $QPID)" >&2
    stop_qemu
    rig_status=124
else
    QPID=
    kill "$SPID" 2>/dev/null
    wait "$SPID" 2>/dev/null
    SPID=
    rig_status=
fi
# The perl reader ends with QEMU's stdout; let it flush.
wait 2>/dev/null
ELAPSED=$(perl -MTime::HiRes=time -e 'printf "%.2f", time - $ARGV[0]' "$T0")
[[ -s $WORK/qemu.stderr ]] && cp "$WORK/qemu.stderr" "$OUT/qemu.stderr"

# ---- take the framed files out of COM1 ----------------------------------------------------
# Xen prints its own lines, "(XEN) …" and guests' "(dN) …", whenever it likes, also into the
# middle of a line of dom0's: they are cut out first, wherever they start.
parse=$(perl -e '
    use MIME::Base64; use Digest::MD5 qw(md5_hex); use IO::Uncompress::Gunzip qw(gunzip);
    my ($raw, $out) = @ARGV;
    open(my $f, "<", $raw) or die "no $raw\n"; local $/; my $text = <$f>; close $f;
    $text =~ s/\r//g;
    $text =~ s/\((?:XEN|d\d+)\) [^\n]*\n//g;
    my ($name, $size, $md5, $b64, $gz, $exit, %bad, %ok, @got);
    for my $line (split /\n/, $text) {
        if ($line =~ /^\@\@RIG-BEGIN ([A-Za-z0-9._-]+) (\d+) ([0-9a-f]{32})( gz)?$/) {
            ($name, $size, $md5, $b64, $gz) = ($1, $2, $3, "", defined $4);
        } elsif (defined $name && $line =~ /^\@\@RIG-B ([A-Za-z0-9+\/=]*)$/) {
            $b64 .= $1;
        } elsif (defined $name && $line =~ /^\@\@RIG-END \Q$name\E$/) {
            my $data = decode_base64($b64);
            if ($gz) {
                my $plain;
                $data = gunzip(\$data => \$plain) ? $plain : "";
            }
            if ($ok{$name}) {
                # a second copy of a file that already arrived intact
            } elsif (length($data) != $size || md5_hex($data) ne $md5) {
                $bad{$name} = "$name (" . length($data) . " of $size bytes, md5 " . md5_hex($data) . ")";
                open(my $o, ">", "$out/$name.damaged") or die "cannot write $out/$name.damaged\n";
                binmode $o; print $o $data; close $o;
            } else {
                $ok{$name} = 1; delete $bad{$name}; push @got, $name;
                open(my $o, ">", "$out/$name") or die "cannot write $out/$name\n"; binmode $o; print $o $data; close $o;
            }
            undef $name;
        } elsif ($line =~ /^\@\@RIG-EXIT (\d+)$/) {
            $exit = $1;
        } elsif (defined $name && $line =~ /\@\@RIG-/) {
            $bad{$name} = "$name (interrupted)" unless $ok{$name}; undef $name;
        }
    }
    print "exit=", (defined $exit ? $exit : ""), "\n";
    print "got=@got\n";
    # The diagnostics that dom0 /init adds after the test script (dmesg, xl list) are a help,
    # not a result: one that arrives damaged is reported but does not fail the run.
    my %diag = map { $_ => 1 } qw(dom0-dmesg.txt xen-dmesg.txt xl-list.txt);
    print "bad=", join("; ", map { $bad{$_} } grep { !$ok{$_} && !$diag{$_} } sort keys %bad), "\n";
    print "diag_bad=", join("; ", map { $bad{$_} } grep { !$ok{$_} && $diag{$_} } sort keys %bad), "\n";
' "$OUT/com1.raw" "$OUT") || { echo "rig.sh: cannot parse $OUT/com1.raw" >&2; exit 125; }
exit_reported=$(sed -n 's/^exit=//p' <<<"$parse")
damaged=$(sed -n 's/^bad=//p' <<<"$parse")
echo "rig.sh: QEMU ran ${ELAPSED} s (status $qstatus); files: $(sed -n 's/^got=//p' <<<"$parse")" >&2
if [[ -n $damaged ]]; then
    echo "rig.sh: files that arrived damaged: $damaged" >&2
fi
diag_damaged=$(sed -n 's/^diag_bad=//p' <<<"$parse")
if [[ -n $diag_damaged ]]; then
    echo "rig.sh: diagnostics that arrived damaged (not counted): $diag_damaged" >&2
fi

if [[ -z $rig_status ]]; then
    if [[ -n $exit_reported ]]; then
        rig_status=$exit_reported
        ((rig_status > 123)) && rig_status=125
        [[ -n $damaged ]] && rig_status=125
    else
        echo "rig.sh: dom0 reported no exit status (QEMU status $qstatus); see $OUT/com1.log" >&2
        grep -E '^qemu-system' "$WORK/qemu.stderr" >&2
        rig_status=125
    fi
fi
echo "$rig_status" >"$OUT/status"
echo "rig.sh: status $rig_status (test script: ${exit_reported:-none}); total ${ELAPSED} s" >&2
exit "$rig_status"
