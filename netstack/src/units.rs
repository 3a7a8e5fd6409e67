//! iperf3's units, both ways: the sizes and rates its options take (`-n 10M`, `-b 1G`) and the
//! Transfer, Bitrate and Cwnd columns of its reports (its `unit_snprintf`). One rule serves
//! both: K, M, G, T are powers of 1024 for bytes and of 1000 for bits. Errors name the
//! offending text.

use alloc::format;
use alloc::string::String;

/// Unit prefixes in order of power: `K` is base¹ … `T` is base⁴ (either case when parsing).
const PREFIXES: [char; 4] = ['K', 'M', 'G', 'T'];
/// Bytes count in 1024s: sizes (`-n`, `-l`, `-w`) and the upper-case `-f` letters.
const BYTE_BASE: f64 = 1024.0;
/// Bits count in 1000s: rates (`-b`) and the lower-case `-f` letters.
const BIT_BASE: f64 = 1000.0;
/// Report labels by power (index 0 is no prefix).
const BYTE_LABELS: [&str; 5] = ["Byte", "KByte", "MByte", "GByte", "TByte"];
const BIT_LABELS: [&str; 5] = ["bit", "Kbit", "Mbit", "Gbit", "Tbit"];

/// The power a prefix letter stands for, in either case: `K` 1 … `T` 4.
fn prefix_power(c: char) -> Option<usize> {
    PREFIXES.iter().position(|&p| p == c.to_ascii_uppercase()).map(|i| i + 1)
}

/// A value that could not be measured (NaN or infinity, e.g. a rate over no time) as 0, which
/// is what iperf3 prints there; text columns, JSON reports and control messages all use it.
pub(crate) fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

// Parsing: option values.

fn split_suffix(s: &str) -> (&str, Option<char>) {
    match s.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => (&s[..s.len() - 1], Some(c)),
        _ => (s, None),
    }
}

fn parse_scaled(s: &str, base: f64, what: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, suffix) = split_suffix(t);
    let power = match suffix {
        None => 0,
        Some(c) => {
            prefix_power(c).ok_or_else(|| format!("invalid {what} '{s}': unknown suffix '{c}' (use K, M, G or T)"))?
        }
    };
    let mult = (0..power).fold(1.0, |m, _| m * base);
    let v: f64 = num.parse().map_err(|_| format!("invalid {what} '{s}': not a number"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("invalid {what} '{s}': must be a non-negative number"));
    }
    let r = v * mult;
    if r >= u64::MAX as f64 {
        return Err(format!("invalid {what} '{s}': too large"));
    }
    Ok(r as u64)
}

/// A byte count: `128K` = 131072.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_scaled(s, BYTE_BASE, "size")
}

/// A bit rate: `100M` = 100000000. The `/N` burst suffix is split off by [`parse_rate_burst`].
pub fn parse_rate(s: &str) -> Result<u64, String> {
    parse_scaled(s, BIT_BASE, "rate")
}

/// `-b RATE[/BURST]`.
pub fn parse_rate_burst(s: &str) -> Result<(u64, Option<u32>), String> {
    match s.split_once('/') {
        None => Ok((parse_rate(s)?, None)),
        Some((r, b)) => {
            let burst: u32 = b.parse().map_err(|_| format!("invalid burst '{b}' in '{s}'"))?;
            if !(1..=1000).contains(&burst) {
                return Err(format!("invalid burst {burst} in '{s}': must be 1-1000"));
            }
            Ok((parse_rate(r)?, Some(burst)))
        }
    }
}

// Formatting: report columns.

/// `unit_snprintf(value, format)`: a value and a `-f` letter become four significant places
/// and a label, e.g. `"47.8 MByte"`. `value` is in bytes (or bytes per second); lower-case
/// (bit) letters multiply by 8 first. `B`/`b` print no prefix, `K`…`T` a fixed one, and `A`/`a`
/// (or anything else) the largest that keeps the number at 1 or more, as iperf3's default.
pub fn unit_string(value: f64, format: char) -> String {
    let bytes = format.is_ascii_uppercase();
    let base = if bytes { BYTE_BASE } else { BIT_BASE };
    let mut n = if bytes { finite(value) } else { finite(value) * 8.0 };
    let power = match format.to_ascii_uppercase() {
        'B' => 0,
        c => prefix_power(c).unwrap_or_else(|| {
            let mut tmp = n;
            let mut power = 0;
            while tmp >= base && power < PREFIXES.len() {
                tmp /= base;
                power += 1;
            }
            power
        }),
    };
    for _ in 0..power {
        n /= base;
    }
    let label = if bytes { BYTE_LABELS[power] } else { BIT_LABELS[power] };
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
    fn sizes_and_rates_use_their_bases() {
        assert_eq!(parse_size("128K").unwrap(), 131072);
        assert_eq!(parse_size("100M").unwrap(), 100 * 1024 * 1024);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert_eq!(parse_rate("100M").unwrap(), 100_000_000);
        assert_eq!(parse_rate("2.5g").unwrap(), 2_500_000_000);
        assert_eq!(parse_rate_burst("10M/20").unwrap(), (10_000_000, Some(20)));
    }

    #[test]
    fn bad_numbers_are_named() {
        assert!(parse_size("12Q").unwrap_err().contains("12Q"));
        assert!(parse_size("abc").unwrap_err().contains("abc"));
        assert!(parse_size("-5").is_err());
        assert!(parse_rate_burst("1M/0").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn labels_follow_the_prefixes() {
        for (i, p) in PREFIXES.iter().enumerate() {
            assert!(BYTE_LABELS[i + 1].starts_with(*p) && BIT_LABELS[i + 1].starts_with(*p));
            assert_eq!(prefix_power(p.to_ascii_lowercase()), Some(i + 1));
        }
        assert_eq!(parse_size("1T").unwrap(), 1 << 40);
        assert_eq!(parse_rate("1t").unwrap(), 1_000_000_000_000);
        assert_eq!(finite(f64::NAN), 0.0);
        assert_eq!(finite(-f64::INFINITY), 0.0);
        assert_eq!(finite(2.5), 2.5);
    }

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
