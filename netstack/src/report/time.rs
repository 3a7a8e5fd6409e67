//! RFC 1123 dates in GMT (`start.timestamp.time`), from Unix seconds, without libc: the
//! proleptic Gregorian calendar via Howard Hinnant's days-to-civil algorithm.

use alloc::format;
use alloc::string::String;

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `strftime("%a, %d %b %Y %H:%M:%S %Z", gmtime(secs))`, e.g. "Sat, 21 Nov 2026 05:21:45 GMT".
pub fn rfc1123(unix_secs: u64) -> String {
    // u64 seconds reach far past year 9999; i64 days keep the arithmetic in range.
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS.get(((days + 4) % 7) as usize).copied().unwrap_or("Sun");
    let month_name = MONTHS.get(month.saturating_sub(1) as usize).copied().unwrap_or("Jan");
    format!("{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} GMT", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf3_capture_timestamp() {
        assert_eq!(rfc1123(1795238505), "Sat, 21 Nov 2026 05:21:45 GMT");
    }

    #[test]
    fn known_dates() {
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(rfc1123(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(rfc1123(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 GMT");
        assert_eq!(rfc1123(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(rfc1123(1_000_000_000), "Sun, 09 Sep 2001 01:46:40 GMT");
    }

    #[test]
    fn huge_values_do_not_panic() {
        let s = rfc1123(u64::MAX);
        assert!(s.ends_with(" GMT"));
    }
}
