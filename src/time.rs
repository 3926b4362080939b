//! RFC 3339 timestamps without a date-time dependency.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats a time as `2026-11-22T12:00:00Z` (UTC, whole seconds).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The current time as RFC 3339.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Parses exactly the form [`rfc3339`] writes (`2026-11-22T12:00:00Z`); anything else is `None`.
///
/// Strict on purpose: it reads back our own lease expiries, and a lenient parse of a hand-edited
/// value could turn into a lease that never expires.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let digits = s.get(from..to)?;
        digits.bytes().all(|c| c.is_ascii_digit()).then(|| digits.parse().ok())?
    };
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if y < 1970 || ss > 59 {
        return None;
    }
    from_civil(i64::from(y), m, d, hh, mm, ss)
}

/// A UTC calendar date and time of day as an instant; `None` when a field is out of range (month
/// 1-12, a day of that month, 23:59:60 at most) or the instant is beyond what a clock can hold.
/// Every step is checked: any year, even `i64::MIN`, is an answer, never an overflow.
pub fn from_civil(y: i64, m: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<SystemTime> {
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, d)?.checked_mul(86_400)?.checked_add(i64::from(h * 3600 + mi * 60 + s))?;
    match u64::try_from(secs) {
        Ok(after) => UNIX_EPOCH.checked_add(Duration::from_secs(after)),
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())),
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let leap = (y.rem_euclid(4) == 0 && y.rem_euclid(100) != 0) || y.rem_euclid(400) == 0;
    match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month 1-12, day) to days since 1970-01-01, Howard Hinnant's `days_from_civil`: the
/// inverse of [`civil_from_days`]. `None` when the count does not fit an `i64`.
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<i64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.checked_mul(146_097)?.checked_add(doe - 719_468)
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_348_800), "2026-11-22T12:00:00Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn parse_reads_back_what_rfc3339_writes() {
        for secs in [0, 951_782_400, 1_795_348_800, 4_107_542_399, 1_709_164_800 /* 2024-02-29 */] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t), "{secs}");
        }
        // Every day of four years, leap day included.
        for day in 0..(4 * 366) {
            let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + day * 86_400 + 3_599);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
    }

    #[test]
    fn parse_is_strict() {
        for bad in [
            "",
            "2026-11-22T12:00:00",
            "2026-11-22T12:00:00+00:00",
            "2026-11-22T12:00:00.5Z",
            "2026-11-22 12:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T12:60:00Z",
            "2026-11-22T12:00:60Z",
            "1969-12-31T23:59:59Z",
            "2026-1a-22T12:00:00Z",
            "+026-11-22T12:00:00Z",
            "2026-11-22t12:00:00z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn from_civil_is_checked_at_every_extreme() {
        assert_eq!(from_civil(1970, 1, 1, 0, 0, 0), Some(UNIX_EPOCH));
        assert_eq!(from_civil(2000, 2, 29, 0, 0, 0), Some(UNIX_EPOCH + Duration::from_secs(951_782_400)));
        assert_eq!(from_civil(1969, 12, 31, 23, 59, 59), UNIX_EPOCH.checked_sub(Duration::from_secs(1)));
        let y9999 = from_civil(9999, 12, 31, 23, 59, 59).expect("year 9999");
        assert_eq!(rfc3339(y9999), "9999-12-31T23:59:59Z");
        // Year 0 (1 BC) is a leap year before the epoch; a clock may or may not reach it.
        let _ = from_civil(0, 2, 29, 0, 0, 0);
        for y in [i64::MIN, i64::MIN + 1, -1, i64::MAX - 1, i64::MAX, 292_277_026_596, 1 << 40] {
            for m in [1, 2, 3, 12] {
                let _ = from_civil(y, m, 1, 23, 59, 60);
            }
        }
        assert_eq!(from_civil(i64::MAX, 12, 31, 23, 59, 59), None);
        assert_eq!(from_civil(i64::MIN, 1, 1, 0, 0, 0), None);
        for (m, d, h, mi, s) in [(0, 1, 0, 0, 0), (13, 1, 0, 0, 0), (2, 30, 0, 0, 0), (4, 31, 0, 0, 0), (1, 0, 0, 0, 0)]
        {
            assert_eq!(from_civil(2024, m, d, h, mi, s), None, "{m}-{d}");
        }
        for (h, mi, s) in [(24, 0, 0), (0, 60, 0), (0, 0, 61), (u32::MAX, u32::MAX, u32::MAX)] {
            assert_eq!(from_civil(2024, 1, 1, h, mi, s), None, "{h}:{mi}:{s}");
        }
        assert_eq!(from_civil(2023, 2, 29, 0, 0, 0), None);
        assert_eq!(from_civil(1900, 2, 29, 0, 0, 0), None);
    }
}
