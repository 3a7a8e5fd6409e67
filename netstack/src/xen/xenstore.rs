//! The xenstore client protocol over the shared ring page (`io/xs_wire.h`): requests are a
//! 16-byte header `{type, req_id, tx_id, len}` (u32 each, little endian) plus up to 4096
//! payload bytes, written into a 1 KiB request ring; replies come back the same way on a
//! 1 KiB response ring. Ring indices are free-running u32s masked with `& 1023`.
//!
//! [`Client`] sends one request at a time and reads its reply, setting watch events aside.
//! Malformed replies (a length over 4096, an unknown type, a reply to another request, a
//! producer index that ran ahead of the ring) end with [`Error::Protocol`]; the client then
//! refuses further requests, since the stream can no longer be trusted.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub const RING_SIZE: u32 = 1024;
pub const HEADER_LEN: usize = 16;
pub const PAYLOAD_MAX: usize = 4096;

/// Message types (`enum xsd_sockmsg_type`).
pub mod msg {
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const WATCH: u32 = 4;
    pub const UNWATCH: u32 = 5;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
    /// `XS_TYPE_COUNT`: types at or above it are unknown.
    pub const TYPE_COUNT: u32 = 27;
}

/// The shared page, as the client sees it. The implementation orders memory: a release
/// fence before storing an index the other end reads, an acquire fence after loading one.
pub trait Ring {
    fn req_cons(&self) -> u32;
    fn req_prod(&self) -> u32;
    fn set_req_prod(&mut self, v: u32);
    fn rsp_cons(&self) -> u32;
    fn rsp_prod(&self) -> u32;
    fn set_rsp_cons(&mut self, v: u32);
    /// Copies `bytes` into the request ring at offset `at` (`at + len <= RING_SIZE`).
    fn write_req(&mut self, at: usize, bytes: &[u8]);
    /// Copies from the response ring at offset `at` (`at + out.len() <= RING_SIZE`).
    fn read_rsp(&self, at: usize, out: &mut [u8]);
    /// Tells xenstored there is something to look at (an event-channel send).
    fn notify(&mut self);
    /// Waits a little for the other end; false once the caller's time limit is up.
    fn wait(&mut self) -> bool;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// xenstored answered XS_ERROR with this errno name (`ENOENT`, `EAGAIN`, `EACCES`...).
    Xenstore(String),
    /// No reply (or no room in the ring) within the time limit.
    Timeout(&'static str),
    /// The reply broke the protocol; the connection is unusable.
    Protocol(String),
    /// A request that cannot be sent (too long, a NUL inside a path).
    Request(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Xenstore(e) => write!(f, "xenstore error {e}"),
            Error::Timeout(what) => write!(f, "xenstore timed out {what}"),
            Error::Protocol(what) => write!(f, "xenstore protocol error: {what}"),
            Error::Request(what) => write!(f, "bad xenstore request: {what}"),
        }
    }
}

/// A watch event: the path that changed and the watch's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// A decoded message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        for (i, v) in [self.ty, self.req_id, self.tx_id, self.len].into_iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        let w = |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        Header { ty: w(0), req_id: w(1), tx_id: w(2), len: w(3) }
    }
}

/// Splits a NUL-separated payload into strings (a trailing NUL ends the last one).
pub fn split_nul(payload: &[u8]) -> Result<Vec<String>, Error> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == 0)
        .map(|s| {
            core::str::from_utf8(s)
                .map(String::from)
                .map_err(|_| Error::Protocol(String::from("a reply string is not UTF-8")))
        })
        .collect()
}

pub struct Client<R: Ring> {
    ring: R,
    next_id: u32,
    events: VecDeque<WatchEvent>,
    broken: Option<Error>,
}

impl<R: Ring> Client<R> {
    pub fn new(ring: R) -> Self {
        Client { ring, next_id: 1, events: VecDeque::new(), broken: None }
    }

    pub fn ring(&mut self) -> &mut R {
        &mut self.ring
    }

    /// Sends one request and returns its reply's payload.
    pub fn request(&mut self, ty: u32, tx: u32, parts: &[&[u8]]) -> Result<Vec<u8>, Error> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > PAYLOAD_MAX {
            return Err(Error::Request(format!("payload of {len} bytes (at most {PAYLOAD_MAX})")));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let header = Header { ty, req_id: id, tx_id: tx, len: len as u32 };
        let r = self.send(&header.encode()).and_then(|()| {
            for p in parts {
                self.send(p)?;
            }
            self.ring.notify();
            self.reply(ty, id)
        });
        if let Err(e @ (Error::Protocol(_) | Error::Timeout(_))) = &r {
            self.broken = Some(e.clone());
        }
        r
    }

    fn send(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            let prod = self.ring.req_prod();
            let used = prod.wrapping_sub(self.ring.req_cons());
            if used > RING_SIZE {
                return Err(Error::Protocol(format!(
                    "request ring indices {used} bytes apart (ring holds {RING_SIZE})"
                )));
            }
            if used == RING_SIZE {
                self.ring.notify();
                if !self.ring.wait() {
                    return Err(Error::Timeout("waiting for room in the request ring"));
                }
                continue;
            }
            let at = (prod % RING_SIZE) as usize;
            let n = bytes.len().min((RING_SIZE - used) as usize).min(RING_SIZE as usize - at);
            self.ring.write_req(at, &bytes[..n]);
            self.ring.set_req_prod(prod.wrapping_add(n as u32));
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn recv(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < out.len() {
            let cons = self.ring.rsp_cons();
            let avail = self.ring.rsp_prod().wrapping_sub(cons);
            if avail > RING_SIZE {
                return Err(Error::Protocol(format!(
                    "response ring indices {avail} bytes apart (ring holds {RING_SIZE})"
                )));
            }
            if avail == 0 {
                if !self.ring.wait() {
                    return Err(Error::Timeout("waiting for a reply"));
                }
                continue;
            }
            let at = (cons % RING_SIZE) as usize;
            let n = (out.len() - done).min(avail as usize).min(RING_SIZE as usize - at);
            self.ring.read_rsp(at, &mut out[done..done + n]);
            self.ring.set_rsp_cons(cons.wrapping_add(n as u32));
            // xenstored waits for room in the response ring: tell it there is some.
            self.ring.notify();
            done += n;
        }
        Ok(())
    }

    /// Reads one whole message.
    fn message(&mut self) -> Result<(Header, Vec<u8>), Error> {
        let mut h = [0u8; HEADER_LEN];
        self.recv(&mut h)?;
        let header = Header::decode(&h);
        if header.len as usize > PAYLOAD_MAX {
            return Err(Error::Protocol(format!("reply length {} (at most {PAYLOAD_MAX})", header.len)));
        }
        if header.ty >= msg::TYPE_COUNT {
            return Err(Error::Protocol(format!("reply of unknown type {}", header.ty)));
        }
        let mut payload = alloc::vec![0u8; header.len as usize];
        self.recv(&mut payload)?;
        Ok((header, payload))
    }

    fn take_event(&mut self, payload: &[u8]) -> Result<(), Error> {
        let parts = split_nul(payload)?;
        match parts.as_slice() {
            [path, token, ..] => {
                self.events.push_back(WatchEvent { path: path.clone(), token: token.clone() });
                Ok(())
            }
            _ => Err(Error::Protocol(String::from("a watch event without path and token"))),
        }
    }

    fn reply(&mut self, ty: u32, id: u32) -> Result<Vec<u8>, Error> {
        loop {
            let (h, payload) = self.message()?;
            if h.ty == msg::WATCH_EVENT {
                self.take_event(&payload)?;
                continue;
            }
            if h.req_id != id {
                return Err(Error::Protocol(format!("reply to request {} while waiting for {id}", h.req_id)));
            }
            if h.ty == msg::ERROR {
                let text = payload.split(|&b| b == 0).next().unwrap_or(&[]);
                return Err(Error::Xenstore(String::from_utf8_lossy(text).into_owned()));
            }
            if h.ty != ty {
                return Err(Error::Protocol(format!("reply of type {} to a request of type {ty}", h.ty)));
            }
            return Ok(payload);
        }
    }

    /// The next watch event, waiting for one if none is queued.
    pub fn wait_event(&mut self) -> Result<WatchEvent, Error> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let r = self.message().and_then(|(h, payload)| {
            if h.ty != msg::WATCH_EVENT {
                return Err(Error::Protocol(format!("unsolicited message of type {}", h.ty)));
            }
            self.take_event(&payload)?;
            Ok(self.events.pop_front().expect("take_event queued one"))
        });
        if let Err(e @ (Error::Protocol(_) | Error::Timeout(_))) = &r {
            self.broken = Some(e.clone());
        }
        r
    }

    fn path(p: &str) -> Result<&[u8], Error> {
        if p.as_bytes().contains(&0) {
            return Err(Error::Request(format!("path {p:?} contains a NUL")));
        }
        Ok(p.as_bytes())
    }

    pub fn read(&mut self, tx: u32, path: &str) -> Result<String, Error> {
        let v = self.request(msg::READ, tx, &[Self::path(path)?, b"\0"])?;
        let v = v.strip_suffix(&[0]).unwrap_or(&v);
        core::str::from_utf8(v).map(String::from).map_err(|_| Error::Protocol(format!("value of {path} is not UTF-8")))
    }

    pub fn write(&mut self, tx: u32, path: &str, value: &str) -> Result<(), Error> {
        self.request(msg::WRITE, tx, &[Self::path(path)?, b"\0", value.as_bytes()]).map(|_| ())
    }

    pub fn directory(&mut self, tx: u32, path: &str) -> Result<Vec<String>, Error> {
        let v = self.request(msg::DIRECTORY, tx, &[Self::path(path)?, b"\0"])?;
        split_nul(&v)
    }

    pub fn mkdir(&mut self, tx: u32, path: &str) -> Result<(), Error> {
        self.request(msg::MKDIR, tx, &[Self::path(path)?, b"\0"]).map(|_| ())
    }

    pub fn rm(&mut self, tx: u32, path: &str) -> Result<(), Error> {
        self.request(msg::RM, tx, &[Self::path(path)?, b"\0"]).map(|_| ())
    }

    /// Sets a watch; xenstored fires it once at once, then on every change under `path`.
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.request(msg::WATCH, 0, &[Self::path(path)?, b"\0", Self::path(token)?, b"\0"]).map(|_| ())
    }

    pub fn unwatch(&mut self, path: &str, token: &str) -> Result<(), Error> {
        self.request(msg::UNWATCH, 0, &[Self::path(path)?, b"\0", Self::path(token)?, b"\0"]).map(|_| ())
    }

    pub fn transaction_start(&mut self) -> Result<u32, Error> {
        let v = self.request(msg::TRANSACTION_START, 0, &[b"\0"])?;
        let text = v.strip_suffix(&[0]).unwrap_or(&v);
        core::str::from_utf8(text).ok().and_then(|t| t.parse::<u32>().ok()).filter(|&t| t != 0).ok_or_else(|| {
            Error::Protocol(format!("transaction id {:?} is not a number", String::from_utf8_lossy(text)))
        })
    }

    /// Commits (or aborts) `tx`. `Err(Error::Xenstore("EAGAIN"))` means: retry the whole
    /// transaction.
    pub fn transaction_end(&mut self, tx: u32, commit: bool) -> Result<(), Error> {
        self.request(msg::TRANSACTION_END, tx, &[if commit { b"T\0" } else { b"F\0" }]).map(|_| ())
    }
}

#[cfg(test)]
mod tests;
