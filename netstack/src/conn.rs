//! A control connection's outgoing bytes. smoltcp's send buffer is fixed, but a results
//! message (with `--get-server-output`) can exceed it, so bytes queue here and drain as the
//! socket takes them.

use alloc::vec::Vec;
use smoltcp::socket::tcp;

#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    pos: usize,
}

impl Outbox {
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Moves queued bytes into the socket. Returns false if the socket can no longer send.
    pub fn flush(&mut self, sock: &mut tcp::Socket) -> bool {
        if self.is_empty() {
            return true;
        }
        if !sock.may_send() {
            return false;
        }
        if let Ok(n) = sock.send_slice(&self.buf[self.pos..]) {
            self.pos += n;
        }
        true
    }
}

/// Reads up to `out.len()` bytes without blocking; returns how many arrived.
pub fn read_some(sock: &mut tcp::Socket, out: &mut [u8]) -> usize {
    if !sock.can_recv() {
        return 0;
    }
    sock.recv_slice(out).unwrap_or(0)
}
