//! iperf3 3.12's text lines (its `iperf_locale.c` formats), as functions of already-formatted
//! columns. Trailing blanks are part of iperf3's formats and kept, so output diffs clean
//! against a stock iperf3.

use super::CpuUtil;
use crate::units::{self, finite};
use alloc::format;
use alloc::string::String;

pub const SEPARATOR: &str = "- - - - - - - - - - - - - - - - - - - - - - - - -\n";
pub const OMITTED: &str = "(omitted)";
pub const SENDER: &str = "sender";
pub const RECEIVER: &str = "receiver";

/// The interval header; `retr_cwnd` when the sender reports TCP details.
pub fn interval_header(retr_cwnd: bool, bidir: bool) -> &'static str {
    match (retr_cwnd, bidir) {
        (true, false) => "[ ID] Interval           Transfer     Bitrate         Retr  Cwnd\n",
        (true, true) => "[ ID][Role] Interval           Transfer     Bitrate         Retr  Cwnd\n",
        (false, false) => "[ ID] Interval           Transfer     Bitrate\n",
        (false, true) => "[ ID][Role] Interval           Transfer     Bitrate\n",
    }
}

/// The end-summary header; `retr` when either side's sender reports retransmissions.
pub fn summary_header(retr: bool, bidir: bool) -> &'static str {
    match (retr, bidir) {
        (true, false) => "[ ID] Interval           Transfer     Bitrate         Retr\n",
        (true, true) => "[ ID][Role] Interval           Transfer     Bitrate         Retr\n",
        (false, false) => "[ ID] Interval           Transfer     Bitrate\n",
        (false, true) => "[ ID][Role] Interval           Transfer     Bitrate\n",
    }
}

/// `[  5]` for a stream, `[SUM]` for sums.
pub fn stream_id(socket: i32) -> String {
    format!("[{socket:3}]")
}

pub const SUM_ID: &str = "[SUM]";

/// The columns every report line shares.
pub struct Columns<'a> {
    /// `[  5]` or `[SUM]`.
    pub id: &'a str,
    /// `[TX-C]` and friends in bidir mode, else empty.
    pub role: &'a str,
    pub start: f64,
    pub end: f64,
    pub bytes: u64,
    pub seconds: f64,
    /// `-f` letter.
    pub unit: char,
}

impl Columns<'_> {
    fn head(&self) -> String {
        let rate = if self.seconds > 0.0 && self.seconds.is_finite() { self.bytes as f64 / self.seconds } else { 0.0 };
        format!(
            "{}{} {:6.2}-{:<6.2} sec  {}  {}",
            self.id,
            self.role,
            finite(self.start),
            finite(self.end),
            units::transfer(self.bytes),
            units::bitrate(rate, self.unit)
        )
    }
}

/// `report_bw_format`: no retransmission column.
pub fn bw(c: &Columns, tail: &str) -> String {
    format!("{}                  {tail}\n", c.head())
}

/// `report_bw_retrans_format`: one stream's sender summary (3.18+ has one space less
/// before the tail than 3.12 had, and than the `[SUM]` line still has).
pub fn bw_retrans(c: &Columns, retransmits: i64, tail: &str) -> String {
    format!("{}  {retransmits:3}            {tail}\n", c.head())
}

/// `report_sum_bw_retrans_format`: the `[SUM]` sender line (interval or summary).
pub fn sum_bw_retrans(c: &Columns, retransmits: i64, tail: &str) -> String {
    format!("{}  {retransmits:3}             {tail}\n", c.head())
}

/// `report_bw_retrans_cwnd_format`: the sender's interval line with TCP details.
pub fn bw_retrans_cwnd(c: &Columns, retransmits: i64, cwnd: u64, tail: &str) -> String {
    format!("{}  {retransmits:3}   {}       {tail}\n", c.head(), units::window(cwnd))
}

/// The UDP interval header: a sending side shows datagram counts, a receiving side (and
/// every bidir report) jitter and loss.
pub fn udp_interval_header(sender: bool, bidir: bool) -> &'static str {
    match (sender, bidir) {
        (_, true) => "[ ID][Role] Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams\n",
        (true, false) => "[ ID] Interval           Transfer     Bitrate         Total Datagrams\n",
        (false, false) => "[ ID] Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams\n",
    }
}

/// The UDP end-summary header.
pub fn udp_summary_header(bidir: bool) -> &'static str {
    udp_interval_header(false, bidir)
}

/// `report_bw_udp_sender_format`: a sending stream's interval line (in bidir its count sits
/// under the receivers' loss column).
pub fn udp_sender(c: &Columns, packets: u64, bidir: bool, tail: &str) -> String {
    let pad = if bidir { "          " } else { "" };
    format!("{} {pad} {packets}  {tail}\n", c.head())
}

/// `report_bw_udp_format`: jitter and loss (interval lines of a receiver, summary lines).
pub fn udp_jitter_loss(c: &Columns, jitter_s: f64, lost: i64, packets: u64, tail: &str) -> String {
    let pct = if packets > 0 { 100.0 * lost as f64 / packets as f64 } else { 0.0 };
    format!("{}  {:5.3} ms  {lost}/{packets} ({}%)  {tail}\n", c.head(), finite(jitter_s) * 1000.0, percent_g2(pct))
}

/// `report_sum_outoforder`: labelled `[SUM]` even for one stream, as iperf3 does.
pub fn udp_out_of_order(role: &str, start: f64, end: f64, count: u64) -> String {
    format!("[SUM]{role} {:4.1}-{:4.1} sec  {count} datagrams received out-of-order\n", finite(start), finite(end))
}

/// C's `%.2g`: two significant digits, trailing zeros dropped, exponent form outside
/// 1e-4..1e2 (`100` prints as `1e+02`, as in iperf3's loss percentages).
pub fn percent_g2(x: f64) -> String {
    let x = finite(x);
    if x == 0.0 {
        return String::from("0");
    }
    let e_form = format!("{x:.1e}");
    let (mantissa, exp) = e_form.split_once('e').unwrap_or((&e_form, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') { String::from(s.trim_end_matches('0').trim_end_matches('.')) } else { String::from(s) }
    };
    if (-4..2).contains(&exp) {
        trim(&format!("{x:.*}", (1 - exp) as usize))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

/// `report_cpu`.
pub fn cpu(local_role: &str, remote_role: &str, c: &CpuUtil) -> String {
    format!(
        "CPU Utilization: local/{local_role} {:.1}% ({:.1}%u/{:.1}%s), remote/{remote_role} {:.1}% ({:.1}%u/{:.1}%s)\n",
        finite(c.host_total),
        finite(c.host_user),
        finite(c.host_system),
        finite(c.remote_total),
        finite(c.remote_user),
        finite(c.remote_system)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(id: &str, bytes: u64) -> Columns<'_> {
        Columns { id, role: "", start: 0.0, end: 1.0, bytes, seconds: 1.0, unit: 'a' }
    }

    #[test]
    fn lines_match_iperf3_reference_output() {
        let id = stream_id(5);
        let c = cols(&id, 12 * 1024 * 1024 + 300_000);
        assert_eq!(
            bw_retrans_cwnd(&c, 0, 1_174_405, ""),
            "[  5]   0.00-1.00   sec  12.3 MBytes   103 Mbits/sec    0   1.12 MBytes       \n"
        );
        let c = Columns { id: SUM_ID, role: "", start: 0.0, end: 2.0, bytes: 50069504, seconds: 2.000094, unit: 'a' };
        assert_eq!(
            sum_bw_retrans(&c, 0, SENDER),
            "[SUM]   0.00-2.00   sec  47.8 MBytes   200 Mbits/sec    0             sender\n"
        );
        assert_eq!(
            bw(&c, RECEIVER),
            "[SUM]   0.00-2.00   sec  47.8 MBytes   200 Mbits/sec                  receiver\n"
        );
        // 3.22: `[  4]   0.00-2.00   sec  4.79 GBytes  20.5 Gbits/sec    3            sender`
        let id = stream_id(4);
        let c = Columns { id: &id, role: "", start: 0.0, end: 2.0, bytes: 5_143_129_866, seconds: 2.0, unit: 'a' };
        assert_eq!(
            bw_retrans(&c, 3, SENDER),
            "[  4]   0.00-2.00   sec  4.79 GBytes  20.6 Gbits/sec    3            sender\n"
        );
    }

    #[test]
    fn bidir_role_and_omitted_marker() {
        let id = stream_id(7);
        let c = Columns { id: &id, role: "[RX-C]", start: 10.0, end: 11.0, bytes: 0, seconds: 0.0, unit: 'a' };
        assert_eq!(
            bw(&c, OMITTED),
            "[  7][RX-C]  10.00-11.00  sec  0.00 Bytes  0.00 bits/sec                  (omitted)\n"
        );
    }

    #[test]
    fn udp_lines_match_iperf3() {
        let id = stream_id(4);
        let c = Columns { id: &id, role: "", start: 0.0, end: 1.0, bytes: 1_277_952, seconds: 1.000872, unit: 'a' };
        assert_eq!(udp_sender(&c, 39, false, ""), "[  4]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec  39  \n");
        let c = Columns { role: "[TX-C]", ..c };
        assert_eq!(
            udp_sender(&c, 39, true, ""),
            "[  4][TX-C]   0.00-1.00   sec  1.22 MBytes  10.2 Mbits/sec            39  \n"
        );
        let c = Columns { id: &id, role: "", start: 0.0, end: 2.0, bytes: 2_523_136, seconds: 2.002107, unit: 'a' };
        assert_eq!(
            udp_jitter_loss(&c, 0.000_030_2, 0, 77, RECEIVER),
            "[  4]   0.00-2.00   sec  2.41 MBytes  10.1 Mbits/sec  0.030 ms  0/77 (0%)  receiver\n"
        );
        assert_eq!(udp_out_of_order("", 0.0, 2.0, 3), "[SUM]  0.0- 2.0 sec  3 datagrams received out-of-order\n");
    }

    #[test]
    fn percentages_print_as_c_prints_percent_2g() {
        for (x, want) in [
            (0.0, "0"),
            (0.5, "0.5"),
            (12.345, "12"),
            (100.0, "1e+02"),
            (0.012_34, "0.012"),
            (1.0, "1"),
            (9.96, "10"),
            (0.000_012, "1.2e-05"),
        ] {
            assert_eq!(percent_g2(x), want, "{x}");
        }
    }

    #[test]
    fn cpu_line() {
        assert_eq!(
            cpu(
                SENDER,
                RECEIVER,
                &CpuUtil {
                    host_total: 3.9975,
                    host_user: 3.9975,
                    remote_total: 0.789,
                    remote_user: 0.789,
                    ..Default::default()
                }
            ),
            "CPU Utilization: local/sender 4.0% (4.0%u/0.0%s), remote/receiver 0.8% (0.8%u/0.0%s)\n"
        );
    }
}
