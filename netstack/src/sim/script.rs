//! A raw TCP peer for in-process tests: a [`Role`] that opens or accepts connections and
//! sends exactly the bytes a test tells it to, records everything it receives and how each
//! connection ended. With it a test plays a misbehaving iperf3 client against the server
//! role (garbage cookie, stall, reset mid-test …) or a misbehaving server against the client
//! role, over a [`super::Pair`], without root or a real network.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use crate::driver::{Role, RoleIo};

/// Buffer size of every raw connection, each way.
const BUF: usize = 256 * 1024;

/// One connection of a [`RawPeer`].
#[derive(Debug, Default)]
pub struct RawConn {
    handle: Option<SocketHandle>,
    /// Everything received so far.
    pub rx: Vec<u8>,
    tx: Vec<u8>,
    close: bool,
    abort: bool,
    closed_by_us: bool,
    /// Stop reading (the peer's writes then fill our window and stall).
    pub stop_reading: bool,
    /// The handshake completed.
    pub established: bool,
    /// The other side sent FIN.
    pub peer_closed: bool,
    /// The connection ended without our closing it, after it was established: an RST.
    pub reset: bool,
    /// The connection attempt was refused or timed out.
    pub refused: bool,
    /// The socket is closed (for whatever reason).
    pub gone: bool,
}

impl RawConn {
    fn socket<'a>(&self, sockets: &'a mut SocketSet<'static>) -> Option<&'a mut tcp::Socket<'static>> {
        self.handle.map(|h| sockets.get_mut::<tcp::Socket>(h))
    }

    fn poll(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let Some(sock) = self.socket(sockets) else { return false };
        let mut progress = false;
        if sock.state() == tcp::State::Established || sock.state() == tcp::State::CloseWait {
            progress |= !self.established;
            self.established = true;
        }
        if !self.stop_reading {
            while let Ok(n) = sock.recv(|b| {
                let n = b.len();
                (n, b.to_vec())
            }) {
                if n.is_empty() {
                    break;
                }
                self.rx.extend_from_slice(&n);
                progress = true;
            }
        }
        if !self.tx.is_empty()
            && sock.may_send()
            && let Ok(n) = sock.send_slice(&self.tx)
        {
            self.tx.drain(..n);
            progress |= n > 0;
        }
        if self.abort && !self.closed_by_us {
            sock.abort();
            self.closed_by_us = true;
            progress = true;
        } else if self.close && self.tx.is_empty() && !self.closed_by_us {
            sock.close();
            self.closed_by_us = true;
            progress = true;
        }
        if self.established && !sock.may_recv() && !self.peer_closed && sock.state() != tcp::State::Closed {
            self.peer_closed = true;
            progress = true;
        }
        if sock.state() == tcp::State::Closed && !self.gone {
            self.gone = true;
            if !self.closed_by_us {
                if self.established {
                    self.reset = !self.peer_closed || sock.send_queue() > 0;
                } else {
                    self.refused = true;
                }
            }
            progress = true;
        }
        progress
    }
}

/// A peer that does only what the test says.
#[derive(Debug, Default)]
pub struct RawPeer {
    /// Port and count of listeners it keeps (it accepts as many connections as arrive).
    listen: Option<(u16, usize)>,
    listeners: Vec<SocketHandle>,
    /// Connections to open at the next poll: (index in `conns`, remote, local port).
    to_connect: Vec<(usize, IpEndpoint, u16)>,
    conns: Vec<RawConn>,
    /// UDP datagrams to send at the next poll: (local port, destination, bytes).
    udp_out: Vec<(u16, IpEndpoint, Vec<u8>)>,
    /// UDP sockets opened for them, by local port.
    udp_sockets: Vec<(u16, SocketHandle)>,
    /// UDP datagrams received on those sockets: (local port, bytes).
    pub udp_in: Vec<(u16, Vec<u8>)>,
}

impl RawPeer {
    /// A peer that only connects.
    pub fn client() -> Self {
        RawPeer::default()
    }

    /// A peer that accepts on `port`, with `backlog` listeners waiting at any time.
    pub fn server(port: u16, backlog: usize) -> Self {
        RawPeer { listen: Some((port, backlog.max(1))), ..RawPeer::default() }
    }

    /// Opens a connection to `to` from `local_port` at the next poll; returns its index.
    pub fn connect(&mut self, to: IpEndpoint, local_port: u16) -> usize {
        self.conns.push(RawConn::default());
        let i = self.conns.len() - 1;
        self.to_connect.push((i, to, local_port));
        i
    }

    /// The connections so far, in the order they were opened or accepted.
    pub fn conns(&self) -> &[RawConn] {
        &self.conns
    }

    pub fn conn(&self, i: usize) -> &RawConn {
        &self.conns[i]
    }

    pub fn conn_mut(&mut self, i: usize) -> &mut RawConn {
        &mut self.conns[i]
    }

    /// Queues `bytes` on connection `i`.
    pub fn send(&mut self, i: usize, bytes: &[u8]) {
        self.conns[i].tx.extend_from_slice(bytes);
    }

    /// Sends FIN on connection `i` once what is queued has gone.
    pub fn close(&mut self, i: usize) {
        self.conns[i].close = true;
    }

    /// Resets connection `i` at the next poll.
    pub fn abort(&mut self, i: usize) {
        self.conns[i].abort = true;
    }

    /// Sends one UDP datagram from `local_port` to `to` at the next poll.
    pub fn send_udp(&mut self, local_port: u16, to: IpEndpoint, bytes: &[u8]) {
        self.udp_out.push((local_port, to, bytes.to_vec()));
    }

    /// Resets every connection and stops listening: the peer vanishes.
    pub fn vanish(&mut self) {
        for c in &mut self.conns {
            c.abort = true;
        }
        self.listen = None;
    }
}

impl Role for RawPeer {
    fn poll(&mut self, _now: Instant, io: &mut RoleIo<'_>) -> bool {
        let mut progress = false;
        for (port, to, bytes) in self.udp_out.drain(..) {
            let h = match self.udp_sockets.iter().find(|(p, _)| *p == port) {
                Some(&(_, h)) => h,
                None => {
                    let meta = || vec![udp::PacketMetadata::EMPTY; 64];
                    let mut s = udp::Socket::new(
                        udp::PacketBuffer::new(meta(), vec![0; 64 * 1024]),
                        udp::PacketBuffer::new(meta(), vec![0; 64 * 1024]),
                    );
                    if s.bind(port).is_err() {
                        continue;
                    }
                    let h = io.sockets.add(s);
                    self.udp_sockets.push((port, h));
                    h
                }
            };
            let _ = io.sockets.get_mut::<udp::Socket>(h).send_slice(&bytes, to);
            progress = true;
        }
        for &(port, h) in &self.udp_sockets {
            while let Ok((data, _)) = io.sockets.get_mut::<udp::Socket>(h).recv() {
                self.udp_in.push((port, data.to_vec()));
                progress = true;
            }
        }
        for (i, to, local) in self.to_connect.drain(..) {
            let mut s = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; BUF]), tcp::SocketBuffer::new(vec![0; BUF]));
            s.set_nagle_enabled(false);
            if s.connect(io.iface.context(), to, local).is_ok() {
                self.conns[i].handle = Some(io.sockets.add(s));
            } else {
                self.conns[i].refused = true;
                self.conns[i].gone = true;
            }
            progress = true;
        }
        // Accepted connections become conns; listeners are topped up.
        let mut k = 0;
        while k < self.listeners.len() {
            let h = self.listeners[k];
            if io.sockets.get::<tcp::Socket>(h).state() != tcp::State::Listen {
                self.listeners.swap_remove(k);
                self.conns.push(RawConn { handle: Some(h), ..RawConn::default() });
                progress = true;
            } else {
                k += 1;
            }
        }
        match self.listen {
            Some((port, backlog)) => {
                while self.listeners.len() < backlog {
                    let mut s =
                        tcp::Socket::new(tcp::SocketBuffer::new(vec![0; BUF]), tcp::SocketBuffer::new(vec![0; BUF]));
                    s.set_nagle_enabled(false);
                    if s.listen(port).is_err() {
                        break;
                    }
                    self.listeners.push(io.sockets.add(s));
                }
            }
            None => {
                for h in self.listeners.drain(..) {
                    io.sockets.remove(h);
                }
            }
        }
        for c in &mut self.conns {
            progress |= c.poll(io.sockets);
        }
        progress
    }

    fn poll_at(&self) -> Option<Instant> {
        None
    }

    fn done(&self) -> bool {
        false
    }

    fn flushing(&self, _sockets: &SocketSet<'static>) -> bool {
        false
    }
}
