//! The server role, driven over the in-process simulated link by a scripted peer that sends
//! arbitrary bytes: the cookie check, the length-framed parameter and results JSON, the state
//! bytes and the data connections, all in their real order and timing.
//!
//! Input: parts separated by `#~#`, each sent on its own connection (at most four, opened at
//! once, in order: the first is the control connection of a stock client, the rest may be its
//! data connections). After 3 s of virtual time the peer vanishes (every connection reset).
//! Invariants: no panic, and the server keeps serving — a good uniperf client (`-n 64K`) is
//! then served in full.
//!
//! Speed (a few hundred inputs/s instead of 1–2): every input gets a fresh server and link, so
//! a failing input fails alone too (libFuzzer's minimisation and `fuzz run` of an artifact need
//! that). The good client costs several times what a hostile input does, so it runs after one
//! input in `CHECK_EVERY`, picked by a hash of the input (an input is always checked or never)
//! and always after the first input of a process, which is what reproducing an artifact runs.
//! The trade-off: an input that leaves the server unable to serve is caught once it or a
//! mutation of it hashes to a checked one, not at once; a panic is caught on every input. The
//! link runs at 10 Mbit/s, as the server's behaviour does not depend on the rate and a test a
//! hostile input starts then moves a hundredth of the frames in its 3 s.
#![no_main]

use client::Client;
use libfuzzer_sys::fuzz_target;
use netstack::driver::{FromOptions, Role};
use netstack::flowlog::ProbeConfig;
use netstack::options::{Options, Target};
use netstack::sim::{LinkConfig, Pair, RawPeer, SERVER_IP};
use netstack::smoltcp::time::Duration;
use netstack::smoltcp::wire::{IpAddress, IpEndpoint};
use server::Server;
use std::sync::atomic::{AtomicBool, Ordering};

const SEPARATOR: &[u8] = b"#~#";
const MAX_CONNS: usize = 4;
/// One input in this many is followed by a good client.
const CHECK_EVERY: u64 = 8;

static FIRST_DONE: AtomicBool = AtomicBool::new(false);

/// Whether `data` is followed by a good client: by its FNV-1a hash, and the first input.
fn checked(data: &[u8]) -> bool {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    !FIRST_DONE.swap(true, Ordering::Relaxed) || hash % CHECK_EVERY == 0
}

fn options(args: &str) -> Options {
    let o = Options::parse(args.split_whitespace(), Target::Tap).expect(args);
    o.validate().expect(args);
    o
}

/// `data` cut at each separator, at most `MAX_CONNS` parts (the last keeps any later ones).
fn parts(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < MAX_CONNS {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                out.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// glibc gives blocks above its mmap threshold back to the kernel when they are freed, so the
/// 4 MiB socket buffers of every input's test were fresh pages, each faulted in as the server
/// zeroed it (a third of the time per input). Kept in the heap, reuse costs just the zeroing.
fn keep_freed_memory() {
    unsafe extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only tunes glibc's allocator (32 MiB is its largest mmap threshold); it
    // takes effect for later allocations and frees, so calling it at any time is sound.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

fuzz_target!(
    init: keep_freed_memory(),
    |data: &[u8]| {
    let link = LinkConfig { delay: Duration::from_millis(1), rate_bps: Some(10_000_000), ..LinkConfig::default() };
    let mut pair = Pair::new(link, 11, ProbeConfig::state_only()).unwrap();
    let setup = pair.setup();
    let so = options("-s --idle-timeout 1");
    let mut server = Server::from_options(&so, &setup, pair.now, &mut pair.server.machine).unwrap();

    let to = IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), 5201);
    let mut peer = RawPeer::client();
    for (i, part) in parts(data).into_iter().enumerate() {
        let c = peer.connect(to, 40_000 + i as u16);
        peer.send(c, part);
    }
    pair.run_for(&mut server, &mut peer, Duration::from_secs(3));
    peer.vanish();
    pair.run_for(&mut server, &mut peer, Duration::from_secs(2));
    if !checked(data) {
        return;
    }

    let co = options(&format!("-c {SERVER_IP} -n 64K"));
    let mut good = Client::from_options(&co, &setup, pair.now, &mut pair.client.machine).unwrap();
    let ran = pair.run_test(&mut server, &mut good, Duration::from_secs(30));
    let status = good.status();
    assert!(
        ran.is_ok() && status.is_ok(),
        "after {data:02x?} the server no longer serves: {ran:?} {status:?}\nserver said:\n{}",
        pair.server.output
    );
    let _ = server.done();
});
