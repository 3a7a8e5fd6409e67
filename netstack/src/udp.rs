//! UDP test streams as iperf3 counts them, and pacing that holds its rate.
//!
//! [`UdpRx`] is a receiving stream's statistics: the highest sequence number seen, datagrams
//! lost (gaps, less those that arrive late), out-of-order arrivals and RFC 1889 jitter over
//! transit-time differences — iperf3's `iperf_udp_recv` rules, so both ends agree with stock
//! peers. [`Pacer`] is a token bucket on the monotonic clock: it lets a datagram go when its
//! bits have accrued at `-b`, and caps what accrues during a stall, so a sender that was held
//! up catches up by at most [`PACER_BURST`] and never bursts the way iperf3 does after a pause.

use smoltcp::time::{Duration, Instant};

use crate::proto::udp::DatagramRepr;

/// The most a stalled sender may catch up at once: this much time's worth of its rate (at
/// least two datagrams). With it, any 100 ms window carries the target rate within 1 %.
pub const PACER_BURST: Duration = Duration::from_millis(1);

/// A sequence number more than this many datagrams ahead of what the sender can have sent
/// since the previous one (judged by its own timestamps, at ten million datagrams a second)
/// is not believed: the datagram is counted as bad and skipped.
const MAX_RATE_PER_US: u64 = 10;
const SEQ_SLACK: u64 = 4096;

/// Token bucket for one sending stream. Tokens are kept in bit·microseconds (rate × µs), so
/// the arithmetic is exact.
#[derive(Clone, Debug)]
pub struct Pacer {
    rate_bps: u64,
    /// Bit·µs available.
    tokens: u128,
    cap: u128,
    last: Option<Instant>,
}

impl Pacer {
    /// `rate_bps` 0 means unlimited. `datagram` is the datagram length in bytes.
    pub fn new(rate_bps: u64, datagram: usize) -> Self {
        let per_datagram = datagram as u128 * 8 * 1_000_000;
        let burst = rate_bps as u128 * PACER_BURST.total_micros() as u128;
        Pacer { rate_bps, tokens: per_datagram, cap: burst.max(2 * per_datagram), last: None }
    }

    fn refill(&mut self, now: Instant) {
        let last = *self.last.get_or_insert(now);
        if now > last {
            let us = (now - last).total_micros() as u128;
            self.tokens = (self.tokens + us * self.rate_bps as u128).min(self.cap);
            self.last = Some(now);
        }
    }

    /// True if a datagram of `len` bytes may be sent at `now`; it is then charged.
    pub fn take(&mut self, now: Instant, len: usize) -> bool {
        if self.rate_bps == 0 {
            return true;
        }
        self.refill(now);
        let cost = len as u128 * 8 * 1_000_000;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Gives back what [`Pacer::take`] charged for a datagram that could not be sent.
    pub fn refund(&mut self, len: usize) {
        if self.rate_bps > 0 {
            self.tokens = (self.tokens + len as u128 * 8 * 1_000_000).min(self.cap.max(len as u128 * 8 * 1_000_000));
        }
    }

    /// When a datagram of `len` bytes will next be allowed (None: unlimited).
    pub fn next_at(&self, len: usize) -> Option<Instant> {
        if self.rate_bps == 0 {
            return None;
        }
        let last = self.last?;
        let cost = len as u128 * 8 * 1_000_000;
        let missing = cost.saturating_sub(self.tokens);
        let us = missing.div_ceil(self.rate_bps as u128);
        Some(last + Duration::from_micros(us.min(u64::MAX as u128 / 2) as u64))
    }
}

/// Counters of a sending UDP stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpTx {
    /// Datagrams sent since the test started; also the last sequence number used.
    pub sent: u64,
    /// Of those, sent during the omit period.
    pub omitted: u64,
    interval_base: u64,
}

impl UdpTx {
    /// Datagrams sent in the interval that just ended; starts the next.
    pub fn take_interval(&mut self) -> u64 {
        let n = self.sent - self.interval_base;
        self.interval_base = self.sent;
        n
    }

    /// The omit period ended.
    pub fn reset_after_omit(&mut self) {
        self.omitted = self.sent;
        self.interval_base = self.sent;
    }

    /// Datagrams sent after the omit period.
    pub fn measured(&self) -> u64 {
        self.sent - self.omitted
    }
}

/// Per-interval figures of a receiving stream.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UdpInterval {
    pub packets: u64,
    pub lost: i64,
    pub out_of_order: u64,
    /// Seconds, the running estimate at the interval's end.
    pub jitter: f64,
}

/// What happened to one received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Next in sequence, or after a gap (counted as lost until it arrives late).
    InOrder,
    /// Older than the highest seen.
    OutOfOrder,
    /// A sequence number the sender cannot have reached yet: skipped.
    Implausible,
}

/// Statistics of a receiving UDP stream (iperf3's `packet_count`, `cnt_error`,
/// `outoforder_packets`, `jitter`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UdpRx {
    /// The highest sequence number seen: what iperf3 reports as the receiver's packets.
    pub highest: u64,
    /// Datagrams missing (gaps in the sequence, less late arrivals).
    pub lost: i64,
    pub out_of_order: u64,
    /// Seconds.
    pub jitter: f64,
    prev_transit: Option<f64>,
    /// Sender time (µs) of the datagram that set `highest`.
    highest_sent_us: i64,
    /// Datagrams skipped: implausible sequence numbers.
    pub implausible: u64,
    /// Values at the end of the omit period (subtracted in results and end summaries).
    pub omitted_packets: u64,
    pub omitted_lost: i64,
    pub omitted_out_of_order: u64,
    interval_base: (u64, i64, u64),
}

impl UdpRx {
    /// Counts one datagram with header `h` that arrived at `arrival_us` (this side's clock).
    pub fn on_datagram(&mut self, h: &DatagramRepr, arrival_us: i64) -> Arrival {
        let sent_us = h.micros();
        if self.highest > 0 {
            let dt = sent_us.saturating_sub(self.highest_sent_us).max(0) as u64;
            let plausible = self.highest + SEQ_SLACK + dt.saturating_mul(MAX_RATE_PER_US);
            if h.seq > plausible {
                self.implausible += 1;
                return Arrival::Implausible;
            }
        }
        let arrival = if h.seq > self.highest {
            if h.seq > self.highest + 1 {
                self.lost += (h.seq - 1 - self.highest) as i64;
            }
            self.highest = h.seq;
            self.highest_sent_us = sent_us;
            Arrival::InOrder
        } else {
            self.out_of_order += 1;
            if self.lost > 0 {
                self.lost -= 1;
            }
            Arrival::OutOfOrder
        };
        // RFC 1889: J += (|D| - J) / 16 over differences of transit times.
        let transit = (arrival_us - sent_us) as f64 / 1e6;
        if let Some(prev) = self.prev_transit {
            let d = (transit - prev).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.prev_transit = Some(transit);
        arrival
    }

    /// The interval that just ended; starts the next.
    pub fn take_interval(&mut self) -> UdpInterval {
        let (p, l, o) = self.interval_base;
        self.interval_base = (self.highest, self.lost, self.out_of_order);
        UdpInterval {
            packets: self.highest - p,
            lost: self.lost - l,
            out_of_order: self.out_of_order - o,
            jitter: self.jitter,
        }
    }

    /// The omit period ended: what came so far is omitted, and jitter starts again.
    pub fn reset_after_omit(&mut self) {
        self.omitted_packets = self.highest;
        self.omitted_lost = self.lost;
        self.omitted_out_of_order = self.out_of_order;
        self.jitter = 0.0;
        self.interval_base = (self.highest, self.lost, self.out_of_order);
    }

    /// Measured figures (after the omit period): (packets, lost, out of order).
    pub fn measured(&self) -> (u64, i64, u64) {
        (
            self.highest - self.omitted_packets,
            self.lost - self.omitted_lost,
            self.out_of_order - self.omitted_out_of_order,
        )
    }
}

/// The receive timestamp the flow probe put in a datagram's metadata (`PacketMeta::id`, the
/// low 32 bits of the frame clock in µs), widened against `now` (the stamp is within about
/// half an hour of it either way: the loop reads `now` before the frames are read, and the
/// role reads them right after). Without a stamp, `now`.
pub fn arrival_micros(stamp: u32, now: Instant) -> i64 {
    let now_us = now.total_micros();
    if stamp == 0 {
        return now_us;
    }
    let ahead = stamp.wrapping_sub(now_us as u32) as i32;
    now_us + i64::from(ahead)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dg(seq: u64, sent_us: i64) -> DatagramRepr {
        DatagramRepr { sec: (sent_us / 1_000_000) as u32, usec: (sent_us % 1_000_000) as u32, seq }
    }

    #[test]
    fn loss_and_late_arrivals_follow_iperf3() {
        let mut rx = UdpRx::default();
        for (seq, want) in
            [(1, Arrival::InOrder), (2, Arrival::InOrder), (5, Arrival::InOrder), (3, Arrival::OutOfOrder)]
        {
            assert_eq!(rx.on_datagram(&dg(seq, seq as i64 * 100), seq as i64 * 100 + 50), want);
        }
        // 3 and 4 were missing after 5; 3 came late.
        assert_eq!((rx.highest, rx.lost, rx.out_of_order), (5, 1, 1));
        let i = rx.take_interval();
        assert_eq!((i.packets, i.lost, i.out_of_order), (5, 1, 1));
        rx.on_datagram(&dg(6, 600), 650);
        let i = rx.take_interval();
        assert_eq!((i.packets, i.lost, i.out_of_order), (1, 0, 0));
    }

    #[test]
    fn jitter_is_rfc1889_smoothing_of_transit_differences() {
        let mut rx = UdpRx::default();
        // Transits 100, 300, 200 µs: D = 200 then 100 µs.
        rx.on_datagram(&dg(1, 1000), 1100);
        assert_eq!(rx.jitter, 0.0, "the first datagram only sets the reference");
        rx.on_datagram(&dg(2, 2000), 2300);
        let j1 = 200e-6 / 16.0;
        assert!((rx.jitter - j1).abs() < 1e-15);
        rx.on_datagram(&dg(3, 3000), 3200);
        assert!((rx.jitter - (j1 + (100e-6 - j1) / 16.0)).abs() < 1e-15);
    }

    #[test]
    fn sequence_numbers_from_the_future_are_skipped() {
        let mut rx = UdpRx::default();
        rx.on_datagram(&dg(1, 0), 10);
        assert_eq!(rx.on_datagram(&dg(u32::MAX as u64, 10), 20), Arrival::Implausible);
        assert_eq!((rx.highest, rx.lost, rx.implausible), (1, 0, 1));
        // A real gap after a long pause is believed.
        assert_eq!(rx.on_datagram(&dg(1_000_001, 1_000_000), 1_000_010), Arrival::InOrder);
    }

    #[test]
    fn omit_resets_what_is_reported() {
        let mut rx = UdpRx::default();
        rx.on_datagram(&dg(1, 0), 10);
        rx.on_datagram(&dg(3, 10), 40);
        rx.reset_after_omit();
        assert_eq!(rx.jitter, 0.0);
        rx.on_datagram(&dg(4, 20), 50);
        assert_eq!(rx.measured(), (1, 0, 0));
    }

    #[test]
    fn pacer_holds_the_rate_and_bounds_the_catch_up() {
        let t0 = Instant::from_micros(0);
        // 12 Mbit/s, 1500-byte datagrams: one per millisecond.
        let mut p = Pacer::new(12_000_000, 1500);
        let mut sent = 0;
        for ms in 0..1000 {
            let now = t0 + Duration::from_millis(ms);
            while p.take(now, 1500) {
                sent += 1;
            }
        }
        assert!((999..=1001).contains(&sent), "{sent}");
        // A 50 ms stall: at most the burst (two datagrams here) goes at once.
        let later = t0 + Duration::from_millis(1050);
        let mut burst = 0;
        while p.take(later, 1500) {
            burst += 1;
        }
        assert_eq!(burst, 2);
        assert_eq!(p.next_at(1500), Some(later + Duration::from_millis(1)));
        assert!(Pacer::new(0, 1500).take(t0, 1500), "0 is unlimited");
    }

    #[test]
    fn arrival_stamps_widen_against_now() {
        let now = Instant::from_micros(5_000_000_123i64);
        assert_eq!(arrival_micros(5_000_000_000u64 as u32, now), 5_000_000_000);
        assert_eq!(arrival_micros(5_000_000_200u64 as u32, now), 5_000_000_200, "stamped after `now` was read");
        assert_eq!(arrival_micros(0, now), 5_000_000_123);
    }
}
