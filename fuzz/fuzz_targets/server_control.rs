//! The server role, driven over the in-process simulated link by a scripted peer that sends
//! arbitrary bytes: the cookie check, the length-framed parameter and results JSON, the state
//! bytes and the data connections, all in their real order and timing.
//!
//! Input: parts separated by `#~#`, each sent on its own connection (at most four, opened at
//! once, in order: the first is the control connection of a stock client, the rest may be its
//! data connections). After 3 s of virtual time the peer vanishes (every connection reset).
//! Invariants: no panic, and the server keeps serving — a good uniperf client (`-n 64K`) is
//! then served in full.
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

const SEPARATOR: &[u8] = b"#~#";
const MAX_CONNS: usize = 4;

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

fuzz_target!(|data: &[u8]| {
    let link = LinkConfig { delay: Duration::from_millis(1), rate_bps: Some(1_000_000_000), ..LinkConfig::default() };
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
