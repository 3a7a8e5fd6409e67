//! The wall clock, read once at boot from the CMOS RTC (MC146818 at ports 0x70/0x71; QEMU
//! sets it to the host's UTC by default). Later dates are boot time plus the TSC clock. A
//! machine without an RTC (Xen PVH) reads all-ones and gets no date.

use x86_64::instructions::port::{PortRead, PortWrite};

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;
/// Bit 7 of the index port masks NMIs while we select a register.
const NMI_OFF: u8 = 0x80;
const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0A;
const REG_STATUS_B: u8 = 0x0B;
const REG_CENTURY: u8 = 0x32;
const STATUS_A_UPDATING: u8 = 0x80;
const STATUS_B_24H: u8 = 0x02;
const STATUS_B_BINARY: u8 = 0x04;
const HOUR_PM: u8 = 0x80;

fn read(reg: u8) -> u8 {
    // SAFETY: CMOS index/data ports; selecting and reading a register has no memory effects.
    unsafe {
        u8::write_to_port(INDEX, NMI_OFF | reg);
        u8::read_from_port(DATA)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Raw([u8; 7]);

fn read_raw() -> Option<Raw> {
    // Wait (bounded) for an update cycle to finish; it lasts < 2 ms.
    for _ in 0..100_000 {
        if read(REG_STATUS_A) & STATUS_A_UPDATING == 0 {
            return Some(Raw([
                read(REG_SECONDS),
                read(REG_MINUTES),
                read(REG_HOURS),
                read(REG_DAY),
                read(REG_MONTH),
                read(REG_YEAR),
                read(REG_CENTURY),
            ]));
        }
    }
    None
}

fn from_bcd(v: u8) -> Option<u8> {
    let (hi, lo) = (v >> 4, v & 0x0F);
    (hi < 10 && lo < 10).then_some(hi * 10 + lo)
}

/// Seconds since the Unix epoch now, or None without a plausible RTC.
pub fn unix_time() -> Option<u64> {
    // Two identical reads in a row rule out a torn read across an update.
    let mut prev = read_raw()?;
    let mut stable = None;
    for _ in 0..5 {
        let next = read_raw()?;
        if next == prev {
            stable = Some(next);
            break;
        }
        prev = next;
    }
    let raw = stable?;
    let status_b = read(REG_STATUS_B);
    if status_b == 0xFF {
        return None;
    }
    let binary = status_b & STATUS_B_BINARY != 0;
    let conv = |v: u8| if binary { Some(v) } else { from_bcd(v) };
    let [s, m, h, d, mo, y, c] = raw.0;
    let pm = h & HOUR_PM != 0;
    let mut hour = conv(h & !HOUR_PM)?;
    if status_b & STATUS_B_24H == 0 {
        hour = (hour % 12) + if pm { 12 } else { 0 };
    }
    let (sec, min, day, month, yy) = (conv(s)?, conv(m)?, conv(d)?, conv(mo)?, conv(y)?);
    let century = conv(c).filter(|c| (19..=21).contains(c)).unwrap_or(20);
    let year = u64::from(century) * 100 + u64::from(yy);
    if sec > 59 || min > 59 || hour > 23 || !(1..=31).contains(&day) || !(1..=12).contains(&month) || year < 2000 {
        return None;
    }
    let days = days_from_civil(year, u64::from(month), u64::from(day));
    Some(days * 86_400 + u64::from(hour) * 3600 + u64::from(min) * 60 + u64::from(sec))
}

/// Days since 1970-01-01 for a Gregorian date from 1970 on (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
