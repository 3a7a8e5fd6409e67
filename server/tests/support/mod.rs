//! What the in-process server tests share: a [`Bench`] (a server on a simulated link, and
//! helpers that run uniperf clients or scripted peers at it) and JSON helpers.
#![allow(dead_code)]

use client::Client;
use netstack::driver::{FromOptions, Role, Setup};
use netstack::flowlog::ProbeConfig;
use netstack::options::{Options, Target};
use netstack::sim::{LinkConfig, Pair, RawPeer, SERVER_IP};
use netstack::smoltcp::time::Duration;
use netstack::smoltcp::wire::{IpAddress, IpEndpoint};
use serde_json::Value;
use server::Server;

pub const PORT: u16 = 5201;
pub const IDLE_SECS: u64 = 2;

pub fn options(args: &str) -> Options {
    let o = Options::parse(args.split_whitespace(), Target::Tap).unwrap_or_else(|e| panic!("{args}: {e}"));
    o.validate().unwrap_or_else(|e| panic!("{args}: {e}"));
    o
}

pub fn server_at() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(SERVER_IP), PORT)
}

/// A server on a 1 Gbit/s link with 1 ms one-way delay, and helpers to run clients at it.
pub struct Bench {
    pub pair: Pair,
    pub server: Server,
    pub setup: Setup,
}

impl Bench {
    pub fn new(server_args: &str) -> Bench {
        Bench::with_link(server_args, Bench::link())
    }

    /// The default link: 1 Gbit/s, 1 ms one way, 4 MiB queue.
    pub fn link() -> LinkConfig {
        LinkConfig {
            delay: Duration::from_millis(1),
            rate_bps: Some(1_000_000_000),
            queue_bytes: 4 << 20,
            seed: 7,
            ..LinkConfig::default()
        }
    }

    pub fn with_link(server_args: &str, link: LinkConfig) -> Bench {
        let mut pair = Pair::new(link, 11, ProbeConfig::state_only()).unwrap();
        let setup = pair.setup();
        let o = options(&format!("-s --idle-timeout {IDLE_SECS} {server_args}"));
        let server = Server::from_options(&o, &setup, pair.now, &mut pair.server.machine).unwrap();
        Bench { pair, server, setup }
    }

    pub fn client(&mut self, args: &str) -> Client {
        let o = options(&format!("-c {SERVER_IP} {args}"));
        Client::from_options(&o, &self.setup, self.pair.now, &mut self.pair.client.machine).unwrap()
    }

    /// Runs a uniperf client test to its end; returns (client output, server output).
    pub fn run(&mut self, args: &str) -> (String, String, Result<(), String>) {
        let mut cl = self.client(args);
        self.pair.run_test(&mut self.server, &mut cl, Duration::from_secs(120)).unwrap();
        let status = cl.status().map_err(String::from);
        (std::mem::take(&mut self.pair.client.output), std::mem::take(&mut self.pair.server.output), status)
    }

    /// Runs a -J test that must succeed; returns both JSON documents.
    pub fn run_json(&mut self, args: &str) -> (Value, Value) {
        let (c, s, status) = self.run(&format!("-J {args}"));
        status.unwrap_or_else(|e| panic!("{args}: {e}\n{c}\n{s}"));
        (json(&c), json(&s))
    }

    /// Runs the raw peer (as the client side) until `until` holds, at most `limit`.
    pub fn raw_until(&mut self, peer: &mut RawPeer, limit: Duration, until: impl Fn(&RawPeer) -> bool) {
        let deadline = self.pair.now + limit;
        loop {
            let progress = self.pair.step(&mut self.server, peer);
            if until(peer) || self.pair.now > deadline {
                return;
            }
            self.pair.advance(progress, &self.server, peer);
        }
    }

    /// After whatever went before, a good client is served in full.
    pub fn good_client_is_served(&mut self, after: &str) {
        let (c, s, status) = self.run("-n 1M");
        assert!(status.is_ok(), "after {after}: the next client failed: {status:?}\n{c}\n{s}");
        assert!(c.contains("sender") && c.contains("receiver"), "after {after}: no summary:\n{c}");
    }
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
}

/// `end.sum*` objects of a -J document that carry bytes: (key, bytes).
pub fn sums(doc: &Value) -> Vec<(String, u64)> {
    let end = doc["end"].as_object().expect("end");
    let mut v: Vec<(String, u64)> = end
        .iter()
        .filter(|(k, _)| k.starts_with("sum"))
        .filter_map(|(k, s)| Some((k.clone(), s.get("bytes")?.as_u64()?)))
        .collect();
    v.sort();
    v
}

/// Two roles on one stack, polled in turn (the real client and a raw one).
pub struct Both<'a>(pub &'a mut Client, pub &'a mut RawPeer);

impl Role for Both<'_> {
    fn poll(&mut self, now: netstack::smoltcp::time::Instant, io: &mut netstack::driver::RoleIo<'_>) -> bool {
        let a = self.0.poll(now, io);
        self.1.poll(now, io) | a
    }
    fn poll_at(&self) -> Option<netstack::smoltcp::time::Instant> {
        self.0.poll_at()
    }
    fn next_timer(&self) -> Option<netstack::smoltcp::time::Instant> {
        self.0.next_timer()
    }
    fn done(&self) -> bool {
        false
    }
    fn flushing(&self, _: &netstack::smoltcp::iface::SocketSet<'static>) -> bool {
        false
    }
}

/// Several uniperf clients on one stack, polled in turn; each keeps its own output.
pub struct Clients {
    pub clients: Vec<Client>,
    pub outputs: Vec<String>,
}

impl Clients {
    pub fn new(clients: Vec<Client>) -> Self {
        let outputs = vec![String::new(); clients.len()];
        Clients { clients, outputs }
    }
}

impl Role for Clients {
    fn poll(&mut self, now: netstack::smoltcp::time::Instant, io: &mut netstack::driver::RoleIo<'_>) -> bool {
        let mut progress = false;
        for (c, out) in self.clients.iter_mut().zip(&mut self.outputs) {
            progress |= c.poll(now, io);
            out.push_str(&c.take_output());
        }
        progress
    }
    fn poll_at(&self) -> Option<netstack::smoltcp::time::Instant> {
        self.clients.iter().filter_map(|c| c.poll_at()).min()
    }
    fn next_timer(&self) -> Option<netstack::smoltcp::time::Instant> {
        self.clients.iter().filter_map(|c| c.next_timer()).min()
    }
    fn done(&self) -> bool {
        self.clients.iter().all(|c| c.done())
    }
    fn flushing(&self, sockets: &netstack::smoltcp::iface::SocketSet<'static>) -> bool {
        self.clients.iter().any(|c| c.flushing(sockets))
    }
}
