//! iperf3's human-readable numbers (its `unit_snprintf`): a value and a format letter become
//! four significant places and a label. Upper-case letters mean bytes and 1024-based units,
//! lower-case mean bits and 1000-based units; 'a'/'A' pick the unit that fits.

use alloc::format;
use alloc::string::String;

const BYTE_LABELS: [&str; 5] = ["Byte", "KByte", "MByte", "GByte", "TByte"];
const BIT_LABELS: [&str; 5] = ["bit", "Kbit", "Mbit", "Gbit", "Tbit"];

/// `unit_snprintf(value, format)`: e.g. `("47.8", "MByte")` joined as `"47.8 MByte"`.
/// `value` is in bytes (or bytes per second); bit formats multiply by 8 first.
pub fn unit_string(value: f64, format: char) -> String {
    let value = if value.is_finite() { value } else { 0.0 };
    let bytes = format.is_ascii_uppercase();
    let mut n = if bytes { value } else { value * 8.0 };
    let conv = match format.to_ascii_uppercase() {
        'B' => 0,
        'K' => 1,
        'M' => 2,
        'G' => 3,
        'T' => 4,
        // 'A' and anything unknown: adaptive, like iperf3's default branch.
        _ => {
            let base = if bytes { 1024.0 } else { 1000.0 };
            let mut tmp = n;
            let mut conv = 0;
            while tmp >= base && conv < 4 {
                tmp /= base;
                conv += 1;
            }
            conv
        }
    };
    let base: f64 = if bytes { 1024.0 } else { 1000.0 };
    for _ in 0..conv {
        n /= base;
    }
    let label = if bytes { BYTE_LABELS[conv] } else { BIT_LABELS[conv] };
    // Always four places: #.##, ##.#, ### (or #### past 999.5 with a fixed unit).
    if n < 9.995 {
        format!("{n:4.2} {label}")
    } else if n < 99.95 {
        format!("{n:4.1} {label}")
    } else {
        format!("{n:4.0} {label}")
    }
}

/// The Transfer column: `"47.8 MBytes"`.
pub fn transfer(bytes: u64) -> String {
    let mut s = unit_string(bytes as f64, 'A');
    s.push('s');
    s
}

/// The Bitrate column for `-f unit`: `" 200 Mbits/sec"`, `"23.9 MBytes/sec"`.
pub fn bitrate(bytes_per_sec: f64, unit: char) -> String {
    let mut s = unit_string(bytes_per_sec, unit);
    s.push_str("s/sec");
    s
}

/// The Cwnd column: `"1.12 MBytes"`.
pub fn window(bytes: u64) -> String {
    transfer(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_examples_from_iperf3_output() {
        assert_eq!(transfer(50069504), "47.8 MBytes");
        assert_eq!(transfer(25034752), "23.9 MBytes");
        assert_eq!(transfer(12 * 1024 * 1024), "12.0 MBytes");
        assert_eq!(transfer(0), "0.00 Bytes");
        assert_eq!(transfer(1170210816), "1.09 GBytes");
        assert_eq!(transfer(1_174_405), "1.12 MBytes");
        assert_eq!(transfer(512), " 512 Bytes");
        assert_eq!(transfer(1023), "1023 Bytes");
        assert_eq!(transfer(1024), "1.00 KBytes");
    }

    #[test]
    fn bitrate_examples_from_iperf3_output() {
        // 50069504 bytes over 2.000094 s.
        assert_eq!(bitrate(50069504.0 / 2.000094, 'a'), " 200 Mbits/sec");
        assert_eq!(bitrate(938_000_000.0 / 8.0, 'a'), " 938 Mbits/sec");
        assert_eq!(bitrate(12_625_000.0, 'a'), " 101 Mbits/sec");
        assert_eq!(bitrate(2_499_000.0 / 2.0, 'a'), "10.0 Mbits/sec");
        assert_eq!(bitrate(0.0, 'a'), "0.00 bits/sec");
        assert_eq!(bitrate(1.25e9, 'a'), "10.0 Gbits/sec");
    }

    #[test]
    fn fixed_units() {
        // 200 Mbit/s shown in Kbits: more than four places, printed whole.
        assert_eq!(bitrate(25_000_000.0, 'k'), "200000 Kbits/sec");
        assert_eq!(bitrate(25_000_000.0, 'g'), "0.20 Gbits/sec");
        assert_eq!(bitrate(25_000_000.0, 'm'), " 200 Mbits/sec");
        // Bytes per second are 1024-based.
        assert_eq!(bitrate(25_034_752.0, 'M'), "23.9 MBytes/sec");
        assert_eq!(bitrate(25_034_752.0, 'K'), "24448 KBytes/sec");
        assert_eq!(bitrate(1024.0 * 1024.0 * 1024.0 * 1024.0 * 3.0, 'T'), "3.00 TBytes/sec");
    }

    #[test]
    fn rounding_edges_keep_four_places() {
        // Just under the 9.995 / 99.95 / 999.5 thresholds.
        assert_eq!(unit_string(9.994, 'B'), "9.99 Byte");
        assert_eq!(unit_string(9.995, 'B'), "10.0 Byte");
        assert_eq!(unit_string(99.96, 'B'), " 100 Byte");
        assert_eq!(unit_string(f64::NAN, 'a'), "0.00 bit");
        assert_eq!(unit_string(f64::INFINITY, 'A'), "0.00 Byte");
    }
}
