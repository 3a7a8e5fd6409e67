//! TCP_INFO for smoltcp connections. smoltcp keeps its congestion window and RTT private, so
//! the flow probe rebuilds a sender's view from the segments both ways (docs/flowlog.md says
//! how); the roles read it here, per data stream, at every interval and at the end, and turn
//! it into iperf3's `retransmits snd_cwnd snd_wnd rtt rttvar pmtu reorder` and end
//! `max_snd_cwnd … mean_rtt` exactly as iperf3 does with Linux's TCP_INFO.

use core::net::SocketAddrV4;

use smoltcp::wire::{IpAddress, IpEndpoint};

use crate::flowlog::{FlowId, FlowTracker};
use crate::report::{EndTcpInfo, TcpSenderInfo};

/// One connection's sender-side state, as Linux's `struct tcp_info` would give it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Segments retransmitted since the connection opened (`tcpi_total_retrans`).
    pub total_retrans: u64,
    /// Congestion window estimate, bytes (`tcpi_snd_cwnd × tcpi_snd_mss`).
    pub snd_cwnd: u64,
    /// The peer's advertised receive window, bytes (`tcpi_snd_wnd`).
    pub snd_wnd: u64,
    /// Smoothed RTT and its variation, µs (`tcpi_rtt`, `tcpi_rttvar`); 0 before a sample.
    pub rtt: u64,
    pub rttvar: u64,
    /// Path MTU: the connection's MSS plus IPv4 and TCP headers (`tcpi_pmtu`).
    pub pmtu: u32,
    /// Reordering events seen (`tcpi_reord_seen`).
    pub reorder: u64,
}

/// Where a platform's TCP_INFO comes from: the flow probe on its device, or nowhere.
pub trait TcpInfoSource {
    /// The sender-side state of the connection `local`→`remote`, if it is tracked.
    fn tcp_info(&self, local: IpEndpoint, remote: IpEndpoint) -> Option<TcpInfo>;
}

/// A platform without a flow probe: reports take iperf3's "no TCP_INFO" shape.
pub struct NoTcpInfo;

impl TcpInfoSource for NoTcpInfo {
    fn tcp_info(&self, _: IpEndpoint, _: IpEndpoint) -> Option<TcpInfo> {
        None
    }
}

fn v4(e: IpEndpoint) -> Option<SocketAddrV4> {
    match e.addr {
        IpAddress::Ipv4(a) => Some(SocketAddrV4::new(a, e.port)),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

impl TcpInfoSource for FlowTracker {
    fn tcp_info(&self, local: IpEndpoint, remote: IpEndpoint) -> Option<TcpInfo> {
        let id = FlowId::new(v4(local)?, v4(remote)?);
        let f = self.flow_summary(id)?;
        Some(TcpInfo {
            total_retrans: f.retx_segs(),
            snd_cwnd: u64::from(f.cwnd_est),
            snd_wnd: u64::from(f.peer_wnd),
            rtt: u64::from(f.srtt_us.unwrap_or(0)),
            rttvar: u64::from(f.rttvar_us.unwrap_or(0)),
            pmtu: if f.mss > 0 { f.mss + 40 } else { 0 },
            reorder: f.reorder,
        })
    }
}

/// What one sending stream accumulates from TCP_INFO, as iperf3's stats callback does:
/// a snapshot at every interval (and at the end), retransmissions as deltas of the running
/// total, and the end summary's maxima, minimum and mean over those snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderTally {
    prev_total_retrans: u64,
    retrans: u64,
    max_snd_cwnd: u64,
    max_snd_wnd: u64,
    max_rtt: u64,
    min_rtt: u64,
    sum_rtt: u64,
    count_rtt: u64,
    reorder: u64,
    seen: bool,
}

impl SenderTally {
    /// Takes one snapshot; returns the interval's figures (retransmits since the last one).
    pub fn sample(&mut self, info: &TcpInfo) -> TcpSenderInfo {
        let interval_retrans = info.total_retrans.saturating_sub(self.prev_total_retrans);
        self.prev_total_retrans = info.total_retrans;
        self.retrans += interval_retrans;
        self.max_snd_cwnd = self.max_snd_cwnd.max(info.snd_cwnd);
        self.max_snd_wnd = self.max_snd_wnd.max(info.snd_wnd);
        self.max_rtt = self.max_rtt.max(info.rtt);
        if self.min_rtt == 0 || info.rtt < self.min_rtt {
            self.min_rtt = info.rtt;
        }
        self.sum_rtt += info.rtt;
        self.count_rtt += 1;
        self.reorder = info.reorder;
        self.seen = true;
        TcpSenderInfo {
            retransmits: interval_retrans as i64,
            snd_cwnd: info.snd_cwnd,
            snd_wnd: info.snd_wnd,
            rtt: info.rtt,
            rttvar: info.rttvar,
            pmtu: info.pmtu,
            reorder: info.reorder as i64,
        }
    }

    /// The omit period ended: retransmissions restart from zero; as in iperf3, the maxima,
    /// minimum and mean RTT keep the samples taken while omitting.
    pub fn reset(&mut self) {
        self.retrans = 0;
    }

    /// True once a snapshot was taken (the platform has TCP_INFO for this stream).
    pub fn seen(&self) -> bool {
        self.seen
    }

    /// The largest peer window seen so far (kept across the omit reset, as iperf3 does).
    pub fn max_snd_wnd(&self) -> u64 {
        self.max_snd_wnd
    }

    /// Retransmissions since the measurement started.
    pub fn retransmits(&self) -> u64 {
        self.retrans
    }

    /// The end summary's sender figures.
    pub fn end(&self) -> EndTcpInfo {
        EndTcpInfo {
            retransmits: self.retrans as i64,
            max_snd_cwnd: self.max_snd_cwnd,
            max_snd_wnd: self.max_snd_wnd,
            max_rtt: self.max_rtt,
            min_rtt: self.min_rtt,
            mean_rtt: self.sum_rtt.checked_div(self.count_rtt).unwrap_or(0),
            reorder: self.reorder as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(total_retrans: u64, cwnd: u64, rtt: u64) -> TcpInfo {
        TcpInfo { total_retrans, snd_cwnd: cwnd, snd_wnd: 1 << 20, rtt, rttvar: rtt / 2, pmtu: 1500, reorder: 0 }
    }

    #[test]
    fn intervals_report_deltas_and_the_end_reports_extremes() {
        let mut t = SenderTally::default();
        assert_eq!(t.sample(&info(3, 100_000, 50)).retransmits, 3);
        assert_eq!(t.sample(&info(3, 300_000, 70)).retransmits, 0);
        assert_eq!(t.sample(&info(10, 200_000, 90)).retransmits, 7);
        let e = t.end();
        assert_eq!((e.retransmits, e.max_snd_cwnd, e.max_rtt, e.min_rtt, e.mean_rtt), (10, 300_000, 90, 50, 70));
    }

    #[test]
    fn omit_reset_restarts_retransmits_only() {
        let mut t = SenderTally::default();
        t.sample(&info(5, 100_000, 40));
        t.reset();
        assert_eq!(t.sample(&info(8, 100_000, 60)).retransmits, 3);
        let e = t.end();
        assert_eq!((e.retransmits, e.min_rtt, e.mean_rtt), (3, 40, 50));
    }
}
