//! When to try again: backoff with jitter, rate-limit answers and the waits servers ask for.

use super::{Headers, header};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// First backoff step; doubled per attempt, with jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Longest wait between attempts when the request has no deadline of its own.
pub(crate) const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// Shortest wait after a rate-limit answer that names no time (GitHub's secondary limit: "wait
/// at least one minute"); a run that cannot afford it gives up instead of hammering.
pub const MIN_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// True for GitHub's secondary rate limit (SPEC §4): a 403 or 429 whose body gives the
/// documented message ("You have exceeded a secondary rate limit", formerly "abuse detection
/// mechanism"). It is a "slow down", never a missing permission, whatever the headers say.
pub fn is_secondary_rate_limit(status: u16, body: &[u8]) -> bool {
    if status != 403 && status != 429 {
        return false;
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    head.contains("secondary rate limit") || head.contains("abuse detection")
}

/// True when the answer means "slow down" rather than "no": 429, or GitHub's 403 with the
/// primary limit exhausted (`x-ratelimit-remaining: 0`) or a secondary limit (`retry-after`).
pub fn is_rate_limited(status: u16, headers: &Headers) -> bool {
    status == 429
        || (status == 403
            && (header(headers, "x-ratelimit-remaining").is_some_and(|v| v.trim() == "0")
                || header(headers, "retry-after").is_some()))
}

/// How long the server asked us to wait: `Retry-After` (seconds or HTTP-date), else, when the
/// quota is exhausted, until `x-ratelimit-reset` / `RateLimit-Reset` (epoch seconds, or seconds
/// from now for small values as in the IETF draft). Any value is an answer, never an overflow:
/// a wait too long to count saturates, and the caller holds it against its budget.
pub fn server_wait(headers: &Headers, now: SystemTime) -> Option<Duration> {
    if let Some(v) = header(headers, "retry-after") {
        let v = v.trim();
        if let Some(secs) = seconds(v) {
            return Some(Duration::from_secs(secs));
        }
        if let Some(at) = parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    let exhausted = ["x-ratelimit-remaining", "ratelimit-remaining"]
        .iter()
        .any(|h| header(headers, h).is_some_and(|v| v.trim() == "0"));
    if !exhausted {
        return None;
    }
    let reset = header(headers, "x-ratelimit-reset").or_else(|| header(headers, "ratelimit-reset"))?;
    let n = seconds(reset.trim())?;
    // Epoch seconds are > 10^9; the IETF draft's delta-seconds are small.
    if n > 1_000_000_000 {
        // An instant past what the clock can hold is as good as never.
        let wait = match UNIX_EPOCH.checked_add(Duration::from_secs(n)) {
            Some(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
            None => Duration::MAX,
        };
        Some(wait)
    } else {
        Some(Duration::from_secs(n))
    }
}

/// Delta-seconds: digits only (no sign, no fraction); more than a `u64` holds saturates.
fn seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Only an overflow fails to parse an all-digit string.
    Some(v.parse().unwrap_or(u64::MAX))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers must send; the
/// calendar arithmetic is `time::from_civil`'s (checked).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut parts = s.split_whitespace();
    let (_weekday, day, month, year, time, zone) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if zone != "GMT" || parts.next().is_some() {
        return None;
    }
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(month))?;
    let mut hms = time.split(':');
    let (h, mi, sec) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() {
        return None;
    }
    let n = |v: &str, max_len: usize| -> Option<u32> {
        (!v.is_empty() && v.len() <= max_len && v.bytes().all(|b| b.is_ascii_digit())).then(|| v.parse().ok())?
    };
    let m = u32::try_from(m).ok()? + 1;
    crate::time::from_civil(i64::from(n(year, 4)?), m, n(day, 2)?, n(h, 2)?, n(mi, 2)?, n(sec, 2)?)
}

/// Exponential backoff with jitter: attempt 1 -> 0.25-0.5 s, 2 -> 0.5-1 s, 3 -> 1-2 s, ...
pub fn backoff(attempt: u32) -> Duration {
    let step = BACKOFF_BASE.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let half = step / 2;
    half + half.mul_f64(jitter())
}

/// A number in [0, 1) that differs between calls and processes (no RNG crate needed for this).
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_770);
        assert_eq!(server_wait(&h(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        let date = h(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        assert_eq!(server_wait(&date, now), Some(Duration::from_secs(7)));
        assert_eq!(server_wait(&h(&[("retry-after", "soon")]), now), None);
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    }

    #[test]
    fn rate_limit_reset_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let gh = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000042")]);
        assert_eq!(server_wait(&gh, now), Some(Duration::from_secs(42)));
        let gl = h(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "1700000005")]);
        assert_eq!(server_wait(&gl, now), Some(Duration::from_secs(5)));
        let draft = h(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "30")]);
        assert_eq!(server_wait(&draft, now), Some(Duration::from_secs(30)));
        let past = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1600000000")]);
        assert_eq!(server_wait(&past, now), Some(Duration::ZERO));
        // Quota left: the reset time is no reason to wait.
        assert_eq!(server_wait(&h(&[("x-ratelimit-remaining", "10"), ("x-ratelimit-reset", "1700000042")]), now), None);
    }

    #[test]
    fn secondary_limits_are_told_by_their_message() {
        let msg = br#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert!(is_secondary_rate_limit(403, msg));
        assert!(is_secondary_rate_limit(429, msg));
        assert!(is_secondary_rate_limit(403, b"You have triggered an abuse detection mechanism."));
        assert!(!is_secondary_rate_limit(403, br#"{"message":"Resource not accessible by integration"}"#));
        assert!(!is_secondary_rate_limit(500, msg));
    }

    #[test]
    fn which_answers_are_rate_limits() {
        assert!(is_rate_limited(429, &h(&[])));
        assert!(is_rate_limited(403, &h(&[("x-ratelimit-remaining", "0")])));
        assert!(is_rate_limited(403, &h(&[("retry-after", "60")])));
        assert!(!is_rate_limited(403, &h(&[("x-ratelimit-remaining", "4999")])));
        assert!(!is_rate_limited(401, &h(&[("x-ratelimit-remaining", "0")])));
    }

    #[test]
    fn backoff_grows_with_jitter_in_bounds() {
        for attempt in 1..=4 {
            let step = BACKOFF_BASE * (1 << (attempt - 1));
            let d = backoff(attempt);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn hostile_retry_after_values_are_answers_not_panics() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let wait = |v: &str| server_wait(&h(&[("retry-after", v)]), now);
        let max = Some(Duration::from_secs(u64::MAX));
        assert_eq!(wait("18446744073709551615"), max);
        // Longer than a u64: saturates rather than being mistaken for no answer.
        assert_eq!(wait("18446744073709551616"), max);
        assert_eq!(wait(&"9".repeat(10_000)), max);
        assert_eq!(wait("0"), Some(Duration::ZERO));
        for v in ["-1", "-9223372036854775808", "+5", "1.5", "5s", "", " ", "0x10", "１２"] {
            assert_eq!(wait(v), None, "{v:?}");
        }
        let year_9999 = wait("Fri, 31 Dec 9999 23:59:59 GMT").expect("a date far ahead");
        assert!(year_9999 > Duration::from_secs(200_000_000_000), "{year_9999:?}");
        // A date in the past (year 0 included) means "now".
        assert_eq!(wait("Sat, 01 Jan 0000 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(wait("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
    }

    #[test]
    fn hostile_rate_limit_resets_are_answers_not_panics() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for name in ["x-ratelimit-reset", "ratelimit-reset", "X-RateLimit-Reset", "RateLimit-Reset"] {
            let remaining = if name.starts_with(['x', 'X']) { "x-ratelimit-remaining" } else { "ratelimit-remaining" };
            let wait = |v: &str| server_wait(&h(&[(remaining, "0"), (name, v)]), now);
            // Epoch seconds beyond what the clock can hold: never.
            assert_eq!(wait("18446744073709551615"), Some(Duration::MAX), "{name}");
            let far = wait("9223372036854775807").expect("the clock's last second, or past it");
            assert!(far > Duration::from_secs(9_000_000_000_000_000_000), "{name}: {far:?}");
            assert_eq!(wait(&"9".repeat(5_000)), Some(Duration::MAX), "{name}");
            assert_eq!(wait("1000000000"), Some(Duration::from_secs(1_000_000_000)), "{name}: a delta");
            assert_eq!(wait("1000000001"), Some(Duration::ZERO), "{name}: an epoch long past");
            for v in ["-9223372036854775808", "-1", "", "soon", "1e9"] {
                assert_eq!(wait(v), None, "{name}: {v:?}");
            }
        }
        // With quota left, even a hostile reset is no reason to wait.
        assert_eq!(
            server_wait(&h(&[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "18446744073709551615")]), now),
            None
        );
    }

    #[test]
    fn hostile_http_dates_are_none_or_an_instant() {
        assert!(parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT").is_some());
        assert!(parse_http_date("Sat, 01 Jan 0000 00:00:00 GMT").is_some_and(|t| t < UNIX_EPOCH));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        for v in [
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun, 06 Nov -9223372036854775808 08:49:37 GMT",
            "Sun, 06 Nov -1 08:49:37 GMT",
            "Sun, 18446744073709551615 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 18446744073709551615:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:4294967296 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nox 1994 08:49:37 GMT",
            "",
            "GMT",
        ] {
            assert_eq!(parse_http_date(v), None, "{v:?}");
        }
        let long = format!("Sun, 06 Nov {} 08:49:37 GMT", "1".repeat(100_000));
        assert_eq!(parse_http_date(&long), None);
        assert_eq!(parse_http_date(&" x".repeat(100_000)), None);
    }

    #[test]
    fn backoff_saturates() {
        for attempt in [0, 7, 64, u32::MAX] {
            assert!(backoff(attempt) <= BACKOFF_BASE * 64, "{attempt}");
        }
    }
}
