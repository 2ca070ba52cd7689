//! Times: Unix-nanosecond timestamps written as RFC 3339 in UTC (manifests, JSON, tables),
//! the wall-clock fields of a time zone for retention buckets ([`crate::forget`]), and
//! restic-style retention durations (`7d`, `1y6m`, `12h`) and the timeouts of a job's commands
//! (`30s`, `10min`, `2h`).
//!
//! The calendar is `jiff`'s. Timestamps are `i64` nanoseconds since 1970-01-01T00:00:00Z, which
//! covers 1677-09-21 to 2262-04-11. Which time zone is the operator's is the binaries' business
//! (`jiff::tz::TimeZone::system()`): this module never reads the environment.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::civil::DateTime;
pub use jiff::tz::TimeZone;
use jiff::Timestamp;

const HOUR: u64 = 3_600;
const DAY: u64 = 24 * HOUR;

/// Errors from parsing times and durations.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("invalid time {0:?} (expected RFC 3339, e.g. 2026-11-22T03:04:05Z)")]
    BadTime(String),
    #[error("invalid duration {0:?} (expected e.g. 7d, 1y6m, 12h)")]
    BadDuration(String),
    #[error("invalid timeout {0:?} (expected e.g. 30s, 10min, 2h; m is months, minutes are min)")]
    BadTimeout(String),
}

fn timestamp(ns: i64) -> Timestamp {
    // Every i64 of nanoseconds is within jiff's range (years -9999..=9999).
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The wall-clock date and time of `ns` in `tz`.
pub fn local(ns: i64, tz: &TimeZone) -> DateTime {
    tz.to_datetime(timestamp(ns))
}

/// `2026-11-22T03:04:05Z` (seconds precision, fraction truncated).
pub fn format_rfc3339(ns: i64) -> String {
    timestamp(ns).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2026-11-22T03:04:05.123456789Z`; the fraction (always 9 digits) is
/// omitted when it is zero.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    let t = timestamp(ns);
    if t.subsec_nanosecond() == 0 {
        format_rfc3339(ns)
    } else {
        t.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
    }
}

/// `2026-11-22 04:04:05 +01:00`: the wall-clock time of `ns` in `tz`, with its offset.
pub fn format_local(ns: i64, tz: &TimeZone) -> String {
    timestamp(ns)
        .to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// Parses an RFC 3339 timestamp (`2026-11-22T03:04:05Z`,
/// `2026-11-22T05:04:05.5+02:00`, ...) or a plain date `2026-11-22`
/// (midnight UTC) into Unix nanoseconds. Surrounding whitespace is ignored.
///
/// # Errors
/// [`TimeError::BadTime`] for anything else, and for times outside 1677–2262.
pub fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    let bad = || TimeError::BadTime(s.to_string());
    let t = s.trim();
    let ts = if t.len() == 10 {
        let d: jiff::civil::Date = t.parse().map_err(|_| bad())?;
        TimeZone::UTC
            .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|_| bad())?
    } else {
        // RFC 3339 wants the offset written out: a bare local time is refused.
        let has_offset = t
            .get(19..)
            .is_some_and(|z| z.ends_with(['Z', 'z']) || z.contains(['+', '-']));
        if !has_offset || t.contains('[') {
            return Err(bad());
        }
        t.parse::<Timestamp>().map_err(|_| bad())?
    };
    i64::try_from(ts.as_nanosecond()).map_err(|_| bad())
}

/// Current wall-clock time in Unix nanoseconds (saturating).
pub fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Parses a restic `--keep-within` style duration: one or more `<number><unit>`
/// pairs with units `y` (365 days), `m` (**months**, 30 days — not minutes),
/// `w` (7 days), `d` (days) and `h` (hours), e.g. `30d`, `2w`, `1y6m`,
/// `1y2m3d4h`. Empty input, a missing unit or an unknown unit is an error.
pub fn parse_duration(s: &str) -> Result<Duration, TimeError> {
    parse_units(
        s,
        &[
            ("y", 365 * DAY),
            ("m", 30 * DAY),
            ("w", 7 * DAY),
            ("d", DAY),
            ("h", HOUR),
        ],
    )
    .ok_or_else(|| TimeError::BadDuration(s.to_string()))
}

/// Parses the timeout of a command: one or more `<number><unit>` pairs with units `d`, `h`,
/// `min` and `s`, e.g. `30s`, `10min`, `1h30min`. Not zero. Months and years are refused (a
/// `5m` meant as minutes would be five months, as in [`parse_duration`]).
pub fn parse_timeout(s: &str) -> Result<Duration, TimeError> {
    parse_units(s, &[("d", DAY), ("h", HOUR), ("min", 60), ("s", 1)])
        .filter(|d| !d.is_zero())
        .ok_or_else(|| TimeError::BadTimeout(s.to_string()))
}

/// `<number><unit>` pairs summed, with `units` as (suffix, seconds); `None` if malformed.
fn parse_units(s: &str, units: &[(&str, u64)]) -> Option<Duration> {
    let mut t = s.trim();
    if t.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    while !t.is_empty() {
        let digits = t.len() - t.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let n: u64 = t[..digits].parse().ok()?;
        t = &t[digits..];
        let (suffix, unit) = units.iter().find(|(u, _)| {
            t.starts_with(u) && !t[u.len()..].starts_with(|c: char| c.is_ascii_alphabetic())
        })?;
        t = &t[suffix.len()..];
        total = n.checked_mul(*unit).and_then(|v| total.checked_add(v))?;
    }
    Some(Duration::from_secs(total))
}

/// Formats a duration with the units `y` (365 d), `d` and `h`, e.g. `30d`,
/// `1y180d`, `12h`; zero is `0d`. Months are never emitted (`m` reads like
/// minutes). Whole-hour durations round-trip through [`parse_duration`]; a
/// sub-hour remainder is shown as whole seconds (`…s`), which does not.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, suffix) in [(365 * DAY, 'y'), (DAY, 'd'), (HOUR, 'h'), (1, 's')] {
        if secs >= unit {
            out.push_str(&format!("{}{suffix}", secs / unit));
            secs %= unit;
        }
    }
    if out.is_empty() {
        out.push_str("0d");
    }
    out
}

/// A duration as a person says it, rounded down to one unit: `40 seconds`, `1 minute`,
/// `5 hours`, `19 days` (minutes from 90 s, hours from 90 min, days from 48 h).
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = if s < 90 {
        (s, "second")
    } else if s < 90 * 60 {
        (s / 60, "minute")
    } else if s < 48 * HOUR {
        (s / HOUR, "hour")
    } else {
        (s / DAY, "day")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NS_PER_SEC: i64 = 1_000_000_000;

    fn p(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn known_dates_round_trip() {
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:00:00Z", 951_825_600),
            ("2026-11-22T03:04:05Z", 1_795_316_645),
            ("1969-12-31T23:59:59Z", -1),
            ("1900-01-01T00:00:00Z", -2_208_988_800),
            ("2100-03-01T00:00:00Z", 4_107_542_400),
        ] {
            let ns = secs * NS_PER_SEC;
            assert_eq!(format_rfc3339(ns), text);
            assert_eq!(p(text), ns, "{text}");
        }
        assert!(parse_rfc3339("2100-02-29").is_err(), "2100 is no leap year");
        assert_eq!(p("2024-02-29") - p("2024-02-28"), 86_400 * NS_PER_SEC);
    }

    #[test]
    fn negative_and_extreme_timestamps() {
        assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(p("1969-12-31T23:59:59.999999999Z"), -1);
        for ns in [i64::MIN, i64::MAX, -86_400 * NS_PER_SEC - 7] {
            assert_eq!(p(&format_rfc3339_nanos(ns)), ns);
        }
        assert_eq!(
            format_rfc3339_nanos(i64::MIN),
            "1677-09-21T00:12:43.145224192Z"
        );
        assert!(parse_rfc3339("2300-01-01").is_err());
    }

    #[test]
    fn parse_variants() {
        let base = p("2026-11-22T03:04:05Z");
        for same in [
            "2026-11-22t03:04:05z",
            " 2026-11-22 03:04:05Z\n",
            "2026-11-22T05:04:05+02:00",
            "2026-11-21T21:34:05-05:30",
            "2026-11-22T03:04:05.000+00:00",
        ] {
            assert_eq!(p(same), base, "{same}");
        }
        assert_eq!(p("2026-11-22T03:04:05.5Z"), base + 500_000_000);
        assert_eq!(p("2026-11-22"), base - 11_045 * NS_PER_SEC);
        assert_eq!(format_rfc3339_nanos(base), "2026-11-22T03:04:05Z");
        assert_eq!(
            format_rfc3339_nanos(base + 123_456_789),
            "2026-11-22T03:04:05.123456789Z"
        );
        assert_eq!(
            format_rfc3339_nanos(base + 1_000),
            "2026-11-22T03:04:05.000001000Z"
        );
        let bad =
            "garbage 2026-11-22T03:04:05 2026-13-01 2026-00-10 2026-11-31 2026-11-22T24:00:00Z \
                   2026-11-22T03:60:00Z 2026-11-22T03:04:05.Z \
                   2026-11-22T03:04:05Zjunk 2026-11-22T 26-11-22 2026-1-22 \
                   ２026-11-22 2026-11-22x 2026/11/22 2026-11-22T03:04:05Z[Europe/Paris]";
        for bad in bad.split_whitespace().chain(["", "2026-11-22T03:04:05 Z"]) {
            match parse_rfc3339(bad) {
                Err(TimeError::BadTime(s)) => assert_eq!(s, bad),
                other => panic!("{bad:?} parsed as {other:?}"),
            }
        }
        let msg = parse_rfc3339("x").unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid time \"x\" (expected RFC 3339, e.g. 2026-11-22T03:04:05Z)"
        );
    }

    #[test]
    fn local_wall_clock_and_offsets() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        // 23:30 UTC on 31 December is already the new year in Berlin.
        let ns = p("2026-12-31T23:30:00Z");
        let l = local(ns, &tz);
        assert_eq!((l.year(), l.month(), l.day(), l.hour()), (2027, 1, 1, 0));
        assert_eq!(format_local(ns, &tz), "2027-01-01 00:30:00 +01:00");
        assert_eq!(
            format_local(p("2026-07-01T12:00:00Z"), &tz),
            "2026-07-01 14:00:00 +02:00"
        );
        assert_eq!(local(ns, &TimeZone::UTC).year(), 2026);
    }

    #[test]
    fn ages_read_as_people_say_them() {
        let secs = Duration::from_secs;
        assert_eq!(format_age(secs(0)), "0 seconds");
        assert_eq!(format_age(secs(1)), "1 second");
        assert_eq!(format_age(secs(89)), "89 seconds");
        assert_eq!(format_age(secs(90)), "1 minute");
        assert_eq!(format_age(secs(89 * 60)), "89 minutes");
        assert_eq!(format_age(secs(90 * 60)), "1 hour");
        assert_eq!(format_age(secs(47 * HOUR)), "47 hours");
        assert_eq!(format_age(secs(48 * HOUR)), "2 days");
        assert_eq!(format_age(secs(19 * DAY + 5 * HOUR)), "19 days");
    }

    #[test]
    fn durations() {
        let d = |s: &str| parse_duration(s).unwrap().as_secs();
        let secs = [
            30 * DAY,
            14 * DAY,
            12 * HOUR,
            0,
            365 * DAY,
            180 * DAY,
            545 * DAY,
        ];
        assert_eq!(["30d", "2w", "12h", "0d", "1y", "6m", "1y6m"].map(d), secs);
        assert_eq!(d(" 1y2m3d4h "), (365 + 60 + 3) * DAY + 4 * HOUR);
        let bad = "30 d 30s 1y6 -1d 1.5d 1D 99999999999999999999d 1x 30min";
        for bad in bad.split_whitespace().chain(["", " ", "3 d"]) {
            assert!(
                matches!(parse_duration(bad), Err(TimeError::BadDuration(_))),
                "{bad:?}"
            );
        }
        let msg = parse_duration("1x").unwrap_err().to_string();
        assert_eq!(msg, "invalid duration \"1x\" (expected e.g. 7d, 1y6m, 12h)");
        for (input, shown) in [
            ("30d", "30d"),
            ("1y6m", "1y180d"),
            ("2w", "14d"),
            ("1d12h", "1d12h"),
            ("0h", "0d"),
        ] {
            assert_eq!(format_duration(parse_duration(input).unwrap()), shown);
            assert_eq!(d(shown), d(input));
        }
        assert_eq!(format_duration(Duration::from_secs(3_601)), "1h1s");
    }

    #[test]
    fn timeouts_have_minutes_and_seconds_but_no_months() {
        let t = |s: &str| parse_timeout(s).unwrap().as_secs();
        assert_eq!(
            ["30s", "10min", "2h", "1d", " 1h30min5s "].map(t),
            [30, 600, 7_200, 86_400, 5_405]
        );
        for bad in [
            "", "0s", "0min0s", "5m", "1y", "2w", "10mins", "10 min", "1.5h", "s", "10", "-1s",
        ] {
            assert!(
                matches!(parse_timeout(bad), Err(TimeError::BadTimeout(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_timeout("5m").unwrap_err().to_string(),
            "invalid timeout \"5m\" (expected e.g. 30s, 10min, 2h; m is months, minutes are min)"
        );
    }

    #[test]
    fn now_is_plausible() {
        assert!((p("2020-01-01")..p("2200-01-01")).contains(&now_ns()));
    }
}
