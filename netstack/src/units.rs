//! iperf3's number syntax: sizes take K/M/G/T as powers of 1024 (`-n`, `-l`, `-w`), rates take
//! them as powers of 1000 (`-b`). Errors name the offending text.

use alloc::format;
use alloc::string::String;

fn split_suffix(s: &str) -> (&str, Option<char>) {
    match s.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => (&s[..s.len() - 1], Some(c)),
        _ => (s, None),
    }
}

fn parse_scaled(s: &str, base: f64, what: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, suffix) = split_suffix(t);
    let mult = match suffix.map(|c| c.to_ascii_uppercase()) {
        None => 1.0,
        Some('K') => base,
        Some('M') => base * base,
        Some('G') => base * base * base,
        Some('T') => base * base * base * base,
        Some(c) => return Err(format!("invalid {what} '{s}': unknown suffix '{c}' (use K, M, G or T)")),
    };
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
    parse_scaled(s, 1024.0, "size")
}

/// A bit rate: `100M` = 100000000. The `/N` burst suffix is split off by [`parse_rate_burst`].
pub fn parse_rate(s: &str) -> Result<u64, String> {
    parse_scaled(s, 1000.0, "rate")
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
}
