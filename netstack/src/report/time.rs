//! Dates without libc: RFC 1123 in GMT (`start.timestamp.time`) and a small strftime for
//! `--timestamps` where there is no C library (the image), from Unix seconds, through the
//! proleptic Gregorian calendar (Howard Hinnant's days-to-civil algorithm).

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

/// `strftime(fmt, gmtime(secs))` for the conversions iperf3 users pass to `--timestamps`:
/// `%a %b %c %d %e %F %H %j %m %M %s %S %T %y %Y %z %Z %%`; others are copied as written.
pub fn strftime_utc(fmt: &str, unix_secs: u64) -> String {
    use core::fmt::Write;
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (h, m, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let weekday = WEEKDAYS.get(((days + 4) % 7) as usize).copied().unwrap_or("Sun");
    let month_name = MONTHS.get(month.saturating_sub(1) as usize).copied().unwrap_or("Jan");
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('a') => write!(out, "{weekday}"),
            Some('b') => write!(out, "{month_name}"),
            Some('c') => write!(out, "{weekday} {month_name} {day:2} {h:02}:{m:02}:{sec:02} {year}"),
            Some('d') => write!(out, "{day:02}"),
            Some('e') => write!(out, "{day:2}"),
            Some('F') => write!(out, "{year}-{month:02}-{day:02}"),
            Some('H') => write!(out, "{h:02}"),
            Some('j') => write!(out, "{yday:03}"),
            Some('m') => write!(out, "{month:02}"),
            Some('M') => write!(out, "{m:02}"),
            Some('s') => write!(out, "{unix_secs}"),
            Some('S') => write!(out, "{sec:02}"),
            Some('T') => write!(out, "{h:02}:{m:02}:{sec:02}"),
            Some('y') => write!(out, "{:02}", year.rem_euclid(100)),
            Some('Y') => write!(out, "{year}"),
            Some('z') => write!(out, "+0000"),
            Some('Z') => write!(out, "UTC"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}

/// Days from 1970-01-01 to the given date (inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Puts `stamp` before every line of `text` (`--timestamps`). `mid_line` carries whether the
/// previous text ended without a newline, so a line written in pieces is stamped once.
pub fn stamp_lines(text: &str, stamp: &str, mid_line: &mut bool) -> String {
    let mut out = String::with_capacity(text.len() + stamp.len() * 4);
    for line in text.split_inclusive('\n') {
        if !*mid_line {
            out.push_str(stamp);
        }
        out.push_str(line);
        *mid_line = !line.ends_with('\n');
    }
    out
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
    fn strftime_matches_glibc_in_utc() {
        // `TZ=UTC date -d @1795238505 +'%c|%F %T|%j|%e|%y|%s|%%|%Q'`
        assert_eq!(
            strftime_utc("%c|%F %T|%j|%e|%y|%s|%%|%Q", 1_795_238_505),
            "Sat Nov 21 05:21:45 2026|2026-11-21 05:21:45|325|21|26|1795238505|%|%Q"
        );
        assert_eq!(strftime_utc("%a %d %b %Y %H:%M:%S %Z", 951_782_400), "Tue 29 Feb 2000 00:00:00 UTC");
    }

    #[test]
    fn lines_are_stamped_once_each() {
        let mut mid = false;
        assert_eq!(stamp_lines("a\nb\n", "T ", &mut mid), "T a\nT b\n");
        assert_eq!(stamp_lines("par", "T ", &mut mid), "T par");
        assert_eq!(stamp_lines("tial\nc\n", "T ", &mut mid), "tial\nT c\n");
    }

    #[test]
    fn huge_values_do_not_panic() {
        let s = rfc1123(u64::MAX);
        assert!(s.ends_with(" GMT"));
    }
}
