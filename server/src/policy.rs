//! What the server allows: the limits a test's parameters must meet (`--server-max-duration`,
//! `--server-bitrate-limit`, `--max-streams`, `--max-total-streams`), with iperf3's error
//! codes, and the running check of `--server-bitrate-limit` (iperf3's semantics: the total
//! rate of a test averaged over the last SECS seconds, checked every second).

use alloc::collections::VecDeque;
use alloc::format;

use netstack::proto::{ErrorCode, TestParams};
use netstack::smoltcp::time::{Duration, Instant};

use crate::ServerConfig;
use crate::test::Stop;

/// Checks `params` against the server's limits; `streams_elsewhere` are the data streams other
/// tests hold.
pub(crate) fn admit(params: &TestParams, cfg: &ServerConfig, streams_elsewhere: u32) -> Result<(), Stop> {
    if let Some(max) = cfg.max_duration {
        // iperf3 3.20+: a test that ends by count (duration 0) could run for ever.
        let asked = params.time + params.omit;
        if params.time == 0 || asked > max {
            let why = if params.time == 0 {
                format!("a test that ends by -n/-k is not allowed under --server-max-duration {max}")
            } else {
                format!("the client asked for {asked} s; the server allows {max} s")
            };
            return Err(Stop::Fail(ErrorCode::MAX_SERVER_DURATION, why));
        }
    }
    if let Some((limit, _)) = cfg.bitrate_limit {
        let directions = if params.bidirectional { 2 } else { 1 };
        let streams = u128::from(params.parallel) * directions;
        for (what, rate) in [("-b", params.bandwidth), ("--fq-rate", params.fqrate.unwrap_or(0))] {
            let total = streams * u128::from(rate);
            if total > u128::from(limit) {
                let why = format!("{what} adds up to {total} bit/s over the server's limit of {limit}");
                return Err(Stop::Fail(ErrorCode::TOTAL_RATE, why));
            }
        }
    }
    let streams = params.total_streams();
    if let Some(max) = cfg.max_streams
        && streams > max
    {
        let why = format!("{streams} data streams asked for; the server allows {max} per test");
        return Err(Stop::Fail(ErrorCode::NUM_STREAMS, why));
    }
    if let Some(max) = cfg.max_total_streams
        && streams_elsewhere + streams > max
    {
        let why = format!(
            "{streams} more data streams would exceed the server's {max} in total ({streams_elsewhere} in use)"
        );
        return Err(Stop::Fail(ErrorCode::NUM_STREAMS, why));
    }
    Ok(())
}

/// Bytes a test moved, second by second, for `--server-bitrate-limit RATE/SECS`.
#[derive(Debug)]
pub(crate) struct RateWindow {
    limit_bps: u64,
    seconds: usize,
    /// Bytes moved in total at the end of each of the last `seconds` whole seconds.
    marks: VecDeque<u64>,
    next: Instant,
}

impl RateWindow {
    pub fn new(limit_bps: u64, seconds: u32, start: Instant) -> Self {
        let seconds = seconds.max(1) as usize;
        let mut marks = VecDeque::with_capacity(seconds + 1);
        marks.push_back(0);
        RateWindow { limit_bps, seconds, marks, next: start + Duration::from_secs(1) }
    }

    pub fn next_check(&self) -> Instant {
        self.next
    }

    /// Given the bytes moved so far, the average rate over the window when a check is due and
    /// it exceeds the limit (None: under it, or no check due).
    pub fn update(&mut self, now: Instant, moved: u64) -> Option<u64> {
        if now < self.next {
            return None;
        }
        self.next += Duration::from_secs(1);
        self.marks.push_back(moved);
        if self.marks.len() > self.seconds + 1 {
            self.marks.pop_front();
        }
        let secs = (self.marks.len() - 1) as u64;
        let first = *self.marks.front()?;
        let avg = (moved - first) * 8 / secs.max(1);
        (avg > self.limit_bps).then_some(avg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_is_over_the_last_seconds() {
        let t0 = Instant::from_secs(0);
        let mut w = RateWindow::new(8_000, 2, t0);
        // 1000 B/s = 8000 bit/s: at the limit, not over it.
        assert_eq!(w.update(t0 + Duration::from_secs(1), 1000), None);
        assert_eq!(w.update(t0 + Duration::from_secs(2), 2000), None);
        // A burst: 3000 B in the last second, (3000 + 1000) B over the last two = 16000 bit/s.
        assert_eq!(w.update(t0 + Duration::from_secs(3), 5000), Some(16_000));
        // Not due yet.
        assert_eq!(w.update(t0 + Duration::from_millis(3500), 99_999), None);
    }
}
