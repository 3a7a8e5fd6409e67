//! Two smoltcp stacks joined by a [`SimLink`] on a virtual clock, each running a [`Role`]:
//! the platform `uniperf sim` runs on, and the harness of the in-process role tests (in the
//! spirit of quinn-proto's test `Pair`). Both stacks and roles are polled at the same virtual
//! instant until nothing moves, then the clock jumps to the next event (a frame arriving, a
//! socket or role timer). Deterministic for a given seed.
//!
//! The server end is [`End::A`] at [`SERVER_IP`], the client end [`End::B`] at [`CLIENT_IP`].
//! Each end has its own flow tracker, lent to a probe around the link's port on every poll, so
//! roles see TCP_INFO as on a real platform.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use smoltcp::iface::{Interface, SocketSet};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use super::{End, LinkConfig, SimLink};
use crate::driver::{self, EndedTest, Role, RoleIo, SETTLE_LIMIT, Setup};
use crate::flowlog::{FlowProbe, FlowTracker, ProbeConfig};
use crate::machine::{SimMachine, SplitMix64};
use crate::stack::{DATA_BUF_BUDGET, NetConfig, build_interface, mac_for};

pub const SERVER_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 1);
pub const CLIENT_IP: Ipv4Address = Ipv4Address::new(198, 18, 0, 2);

/// How many passes the pair makes at one virtual instant while work is being done before the
/// clock moves on anyway (a role that always reports progress must not stop time).
const PASSES_PER_INSTANT: u32 = 64;

/// One end: its interface, sockets, machine and flow tracker, and what its role said.
pub struct Node {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub machine: SimMachine,
    pub tracker: FlowTracker,
    /// Everything the role's reports printed so far.
    pub output: String,
    /// Tests the role reported as ended, in order.
    pub ended: Vec<EndedTest>,
    end: End,
}

impl Node {
    fn new(link: &mut SimLink, end: End, ip: Ipv4Address, salt: u8, rng: &mut SplitMix64, probe: ProbeConfig) -> Node {
        let net = NetConfig { mac: mac_for(ip, salt), ip: Ipv4Cidr::new(ip, 24), gateway: None };
        Node {
            iface: build_interface(&mut link.port(end), &net, Instant::ZERO, rng.next_u64()),
            sockets: SocketSet::new(Vec::new()),
            machine: SimMachine { rng: SplitMix64(rng.next_u64()), name: format!("uniperf-sim {ip}") },
            tracker: FlowTracker::new(probe),
            output: String::new(),
            ended: Vec::new(),
            end,
        }
    }

    /// One pass: the interface through the probe, then the role; collects its output.
    fn step(&mut self, link: &mut SimLink, now: Instant, role: &mut dyn Role) -> bool {
        let mut dev = FlowProbe::with_tracker(link.port(self.end), &mut self.tracker);
        let progress = driver::step(now, &mut self.iface, &mut dev, &mut self.sockets, role, &mut self.machine, || now);
        self.output.push_str(&role.take_output());
        if let Some(t) = role.take_ended_test() {
            self.ended.push(t);
        }
        progress
    }

    /// Lets the role see a signal, as a platform does when it catches one.
    pub fn interrupt(&mut self, now: Instant, role: &mut dyn Role, signal: &str) {
        let mut io = RoleIo {
            iface: &mut self.iface,
            sockets: &mut self.sockets,
            machine: &mut self.machine,
            tcp_info: &self.tracker,
            clock: &mut || now,
        };
        role.interrupt(now, &mut io, signal);
    }
}

/// A server stack and a client stack on one simulated link.
pub struct Pair {
    pub link: SimLink,
    pub now: Instant,
    pub server: Node,
    pub client: Node,
    same_instant: u32,
}

impl Pair {
    /// `seed` derives both stacks' and machines' randomness (the link has its own in `link`).
    pub fn new(link: LinkConfig, seed: u64, probe: ProbeConfig) -> Result<Pair, String> {
        let mut link = SimLink::new(link)?;
        let mut rng = SplitMix64(seed ^ 0x5eed);
        let server = Node::new(&mut link, End::A, SERVER_IP, 0x51, &mut rng, probe);
        let client = Node::new(&mut link, End::B, CLIENT_IP, 0xc1, &mut rng, probe);
        Ok(Pair { link, now: Instant::ZERO, server, client, same_instant: 0 })
    }

    /// What roles on this link are told: the MSS its MTU implies, and the host CLI's budget.
    pub fn setup(&self) -> Setup {
        let mtu = self.link.config(super::Direction::AtoB).mtu;
        Setup { mss: mtu.saturating_sub(14 + 40) as u32, buffer_budget: DATA_BUF_BUDGET }
    }

    /// One pass of both ends at the current instant; true if anything moved.
    pub fn step(&mut self, server: &mut dyn Role, client: &mut dyn Role) -> bool {
        let now = self.now;
        let mut progress = self.server.step(&mut self.link, now, server);
        progress |= self.client.step(&mut self.link, now, client);
        progress
    }

    /// Moves the clock: not while work is being done at this instant (up to a bound), else to
    /// the next event, at most a second ahead.
    pub fn advance(&mut self, progress: bool, server: &dyn Role, client: &dyn Role) {
        if progress && self.same_instant < PASSES_PER_INSTANT {
            self.same_instant += 1;
            return;
        }
        self.same_instant = 0;
        let now = self.now;
        let mut next = now + Duration::from_secs(1);
        let events = [
            self.server.iface.poll_at(now, &self.server.sockets),
            self.client.iface.poll_at(now, &self.client.sockets),
            self.link.next_arrival(),
            server.next_timer(),
            client.next_timer(),
        ];
        for t in events.into_iter().flatten() {
            next = next.min(t);
        }
        self.now = if next > now { next } else { now + Duration::from_micros(1) };
    }

    /// Steps and advances until `until` holds, or fails once `limit` of virtual time has
    /// passed since the call.
    pub fn run_until(
        &mut self,
        server: &mut dyn Role,
        client: &mut dyn Role,
        limit: Duration,
        mut until: impl FnMut(&Pair, &dyn Role, &dyn Role) -> bool,
    ) -> Result<(), String> {
        let deadline = self.now + limit;
        loop {
            let progress = self.step(server, client);
            if until(self, server, client) {
                return Ok(());
            }
            if self.now > deadline {
                return Err(format!("the simulation did not finish within {} s of virtual time", limit.secs()));
            }
            self.advance(progress, server, client);
        }
    }

    /// Runs until the client is done and settled: its last control bytes delivered and the
    /// server done with the test (or itself done), or [`SETTLE_LIMIT`] plus a few link delays
    /// after the client finished. Fails if the client is not done within `limit`.
    pub fn run_test(&mut self, server: &mut dyn Role, client: &mut dyn Role, limit: Duration) -> Result<(), String> {
        let served = self.server.ended.len();
        self.run_until(server, client, limit, |_, _, c| c.done())?;
        let settle = SETTLE_LIMIT + self.link.config(super::Direction::AtoB).delay * 4;
        let _ = self.run_until(server, client, settle, |p, s, c| {
            !c.flushing(&p.client.sockets) && (s.done() || p.server.ended.len() > served)
        });
        Ok(())
    }

    /// Moves the clock by `d` while both ends keep running (e.g. to let a stall time out).
    pub fn run_for(&mut self, server: &mut dyn Role, client: &mut dyn Role, d: Duration) {
        let until = self.now + d;
        let _ = self.run_until(server, client, d + Duration::from_secs(1), |p, _, _| p.now >= until);
    }
}
