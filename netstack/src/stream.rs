//! TCP data streams: moving payload through a smoltcp socket as fast as it will take it,
//! and the per-stream counters behind interval and end reports. Shared by both roles.

use crate::host::Host;
use crate::proto::{ErrorCode, StreamResult};
use crate::report::{EndSide, EndStream};
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

/// The block written over and over: random bytes like iperf3, or `0123456789…` with
/// `--repeating-payload`.
pub struct Payload {
    buf: Vec<u8>,
}

impl Payload {
    pub fn new(len: usize, repeating: bool, host: &mut dyn Host) -> Self {
        let len = len.max(1);
        let mut buf = vec![0u8; len];
        if repeating {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = b'0' + (i % 10) as u8;
            }
        } else {
            host.fill_random(&mut buf);
        }
        Payload { buf }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// One data connection of a test and its counters.
#[derive(Debug)]
pub struct DataStream {
    pub handle: SocketHandle,
    /// iperf3 stream id: 1, 3, 4, 5… in creation order on both sides.
    pub id: i64,
    /// The number shown as `[  5]` and `socket` in reports.
    pub socket_no: i32,
    /// This side sends on the stream (else it receives).
    pub sends: bool,
    /// Bytes since the measurement started (after `-O`).
    pub bytes: u64,
    /// Bytes since the test started, omitted period included.
    pub total_bytes: u64,
    interval_bytes: u64,
    offset: usize,
    /// The peer closed its side (or the socket died).
    pub peer_closed: bool,
}

/// iperf3's stream ids: the first is 1, then 2 + the number of streams already there.
pub fn stream_id(index: usize) -> i64 {
    if index == 0 { 1 } else { index as i64 + 2 }
}

impl DataStream {
    pub fn new(handle: SocketHandle, index: usize, sends: bool) -> Self {
        DataStream {
            handle,
            id: stream_id(index),
            socket_no: 5 + index as i32,
            sends,
            bytes: 0,
            total_bytes: 0,
            interval_bytes: 0,
            offset: 0,
            peer_closed: false,
        }
    }

    /// How many bytes this stream may write now to hold `rate` bit/s on average since
    /// `since` (iperf3's pacing is against the long-run average). 0 rate = unlimited.
    pub fn send_allowance(&self, rate: u64, since: smoltcp::time::Instant, now: smoltcp::time::Instant) -> u64 {
        if !self.sends {
            return 0;
        }
        if rate == 0 {
            return u64::MAX;
        }
        let elapsed_us = (now - since).total_micros() as u128;
        let due = (rate as u128 * elapsed_us / 8_000_000) as u64;
        due.saturating_sub(self.total_bytes)
    }

    /// Writes up to `send_limit` payload bytes into the socket while it has room, and drains
    /// and discards whatever arrived. Returns the bytes moved either way.
    pub fn pump(&mut self, sock: &mut tcp::Socket, payload: &Payload, send_limit: u64) -> u64 {
        let mut moved = 0u64;
        while sock.can_recv() {
            let n = sock.recv(|b| (b.len(), b.len())).unwrap_or(0);
            if n == 0 {
                break;
            }
            if !self.sends {
                self.count(n as u64);
            }
            moved += n as u64;
        }
        if self.sends && send_limit > 0 {
            let pl = &payload.buf;
            let mut left = send_limit;
            while sock.can_send() && left > 0 {
                let off = self.offset;
                let n = sock
                    .send(|b| {
                        let b_len = (b.len() as u64).min(left) as usize;
                        let b = &mut b[..b_len];
                        let mut done = 0;
                        let mut o = off;
                        while done < b.len() {
                            let take = (pl.len() - o).min(b.len() - done);
                            b[done..done + take].copy_from_slice(&pl[o..o + take]);
                            done += take;
                            o = (o + take) % pl.len();
                        }
                        (done, done)
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                self.offset = (self.offset + n) % pl.len();
                left = left.saturating_sub(n as u64);
                self.count(n as u64);
                moved += n as u64;
            }
        }
        if !sock.may_recv() && sock.state() != tcp::State::SynSent {
            self.peer_closed = true;
        }
        moved
    }

    fn count(&mut self, n: u64) {
        self.bytes += n;
        self.total_bytes += n;
        self.interval_bytes += n;
    }

    /// Returns the bytes of the interval that just ended and starts a new one.
    pub fn take_interval(&mut self) -> u64 {
        core::mem::take(&mut self.interval_bytes)
    }

    /// The omit period ended: measured counters restart at zero.
    pub fn reset_after_omit(&mut self) {
        self.bytes = 0;
        self.interval_bytes = 0;
    }

    /// This side's entry in the results JSON.
    pub fn result(&self, seconds: f64) -> StreamResult {
        StreamResult {
            id: self.id,
            bytes: self.bytes,
            retransmits: -1,
            jitter: 0.0,
            errors: 0,
            packets: 0,
            omitted_errors: None,
            omitted_packets: None,
            start_time: 0.0,
            end_time: seconds,
        }
    }

    /// Combines our counters with the peer's results into the end summary of this stream.
    /// 3.12 shows the sender's duration as the receiver's `seconds`; we do the same.
    pub fn end_summary(&self, seconds: f64, remote: &[StreamResult]) -> Result<EndStream, ErrorCode> {
        let r = remote.iter().find(|r| r.id == self.id).ok_or(ErrorCode::STREAM_ID)?;
        let local = EndSide { start: 0.0, end: seconds, seconds, bytes: self.bytes, tcp: None };
        let remote_end = if r.end_time > 0.0 { r.end_time } else { seconds };
        Ok(if self.sends {
            EndStream {
                socket: self.socket_no,
                local_is_sender: true,
                receiver: EndSide { start: 0.0, end: remote_end, seconds, bytes: r.bytes, tcp: None },
                sender: local,
            }
        } else {
            EndStream {
                socket: self.socket_no,
                local_is_sender: false,
                sender: EndSide { start: 0.0, end: remote_end, seconds: remote_end, bytes: r.bytes, tcp: None },
                receiver: EndSide { seconds: remote_end, ..local },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_iperf3() {
        let ids: Vec<i64> = (0..5).map(stream_id).collect();
        assert_eq!(ids, [1, 3, 4, 5, 6]);
    }
}

/// The clock of one running test: the omit period, interval boundaries and the final
/// partial interval. Times in reports are seconds since the measured period began.
#[derive(Debug)]
pub struct Measurement {
    pub streams: Vec<DataStream>,
    /// TEST_START (omit period included).
    pub started: smoltcp::time::Instant,
    measure_start: smoltcp::time::Instant,
    omit_until: Option<smoltcp::time::Instant>,
    interval: Option<smoltcp::time::Duration>,
    interval_start: smoltcp::time::Instant,
    next_interval: Option<smoltcp::time::Instant>,
}

fn secs(d: smoltcp::time::Duration) -> f64 {
    d.total_micros() as f64 / 1e6
}

impl Measurement {
    pub fn new(streams: Vec<DataStream>, now: smoltcp::time::Instant, omit_secs: u32, interval_secs: f64) -> Self {
        use smoltcp::time::Duration;
        let interval = (interval_secs > 0.0).then(|| Duration::from_micros((interval_secs * 1e6) as u64));
        let omit_until = (omit_secs > 0).then(|| now + Duration::from_secs(omit_secs as u64));
        let mut m = Measurement {
            streams,
            started: now,
            measure_start: now,
            omit_until,
            interval,
            interval_start: now,
            next_interval: None,
        };
        m.next_interval = m.boundary(now);
        m
    }

    fn boundary(&self, from: smoltcp::time::Instant) -> Option<smoltcp::time::Instant> {
        let next = self.interval.map(|i| from + i);
        match (next, self.omit_until) {
            (Some(n), Some(o)) => Some(if o < n { o } else { n }),
            (n, o) => n.or(o),
        }
    }

    pub fn omitting(&self, now: smoltcp::time::Instant) -> bool {
        self.omit_until.is_some_and(|o| now < o)
    }

    /// Seconds of measured time (0 during the omit period).
    pub fn elapsed(&self, now: smoltcp::time::Instant) -> f64 {
        if self.omitting(now) { 0.0 } else { secs(now - self.measure_start) }
    }

    pub fn poll_at(&self) -> Option<smoltcp::time::Instant> {
        self.next_interval
    }

    fn report(&mut self, now: smoltcp::time::Instant, omitted: bool) -> crate::report::IntervalReport {
        let base = if omitted { self.started } else { self.measure_start };
        let start = secs(self.interval_start - base);
        let end = secs(now - base);
        let streams = self
            .streams
            .iter_mut()
            .map(|s| crate::report::IntervalStream {
                socket: s.socket_no,
                start,
                end,
                bytes: s.take_interval(),
                omitted,
                sender: s.sends,
                tcp: None,
            })
            .collect();
        self.interval_start = now;
        crate::report::IntervalReport { streams }
    }

    /// Emits the interval that ended at `now`, if one did, and handles the end of the omit
    /// period (counters restart at zero and report times restart at 0.0).
    pub fn poll_timers(&mut self, now: smoltcp::time::Instant) -> Option<crate::report::IntervalReport> {
        let due = self.next_interval?;
        if now < due {
            return None;
        }
        let omit_ends = self.omit_until.is_some_and(|o| now >= o);
        let omitted = self.omit_until.is_some();
        let rep = if self.interval.is_some() { Some(self.report(now, omitted)) } else { None };
        if omit_ends {
            self.omit_until = None;
            self.measure_start = now;
            self.interval_start = now;
            for s in &mut self.streams {
                s.reset_after_omit();
            }
        }
        self.next_interval = self.boundary(now);
        rep
    }

    /// The test ended: the final partial interval, unless it is too short to mean anything
    /// (under a tenth of the interval, as iperf3 skips them) and an earlier one was reported.
    /// A test shorter than one interval (`-n` on a fast path) still gets its one interval.
    pub fn finish(&mut self, now: smoltcp::time::Instant) -> Option<crate::report::IntervalReport> {
        let i = self.interval?;
        let omitted = self.omitting(now);
        let len = now - self.interval_start;
        let first = self.interval_start == self.started;
        self.next_interval = None;
        if len.total_micros() * 10 < i.total_micros() && !first {
            return None;
        }
        Some(self.report(now, omitted))
    }
}
