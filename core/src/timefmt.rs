//! Dependency-free UTC calendar helpers: civil date <-> Unix nanoseconds,
//! RFC 3339 formatting and parsing, ISO 8601 week numbers, and restic-style
//! retention durations (`7d`, `1y6m`, `12h`).
//!
//! All conversions are proleptic Gregorian in UTC and use Howard Hinnant's
//! `days_from_civil` / `civil_from_days` algorithms
//! (<https://howardhinnant.github.io/date_algorithms.html>).
//! Timestamps are `i64` nanoseconds since 1970-01-01T00:00:00Z, which covers
//! 1677-09-21 to 2262-04-11.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
const HOUR: u64 = 3_600;
const DAY: u64 = 24 * HOUR;

/// Errors from parsing times and durations.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error("invalid time {0:?} (expected RFC 3339, e.g. 2026-11-22T03:04:05Z)")]
    BadTime(String),
    #[error("invalid duration {0:?} (expected e.g. 7d, 1y6m, 12h)")]
    BadDuration(String),
}

/// A broken-down UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

/// Days since 1970-01-01 of the given proleptic Gregorian date (Hinnant).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`] (Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Breaks a Unix timestamp (nanoseconds) into UTC calendar fields.
pub fn civil_from_unix_ns(ns: i64) -> Civil {
    let secs = ns.div_euclid(NS_PER_SEC);
    let nanos = ns.rem_euclid(NS_PER_SEC) as u32;
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: sod / 60 % 60,
        second: sod % 60,
        nanos,
    }
}

/// `None` if the result does not fit in an `i64`.
fn checked_unix_ns(c: &Civil) -> Option<i64> {
    if c.year.abs() > 1_000_000 {
        return None;
    }
    let days = i128::from(days_from_civil(c.year, c.month, c.day));
    let secs = days * 86_400
        + i128::from(c.hour) * 3600
        + i128::from(c.minute) * 60
        + i128::from(c.second);
    i64::try_from(secs * 1_000_000_000 + i128::from(c.nanos)).ok()
}

/// Converts UTC calendar fields to a Unix timestamp in nanoseconds.
///
/// Fields are expected to be in their normal ranges (out-of-range values are
/// folded arithmetically and never panic). Results outside the `i64` range
/// saturate to `i64::MIN` / `i64::MAX`.
pub fn unix_ns_from_civil(c: &Civil) -> i64 {
    checked_unix_ns(c).unwrap_or(if c.year < 1970 { i64::MIN } else { i64::MAX })
}

/// `2026-11-22T03:04:05Z` (seconds precision, fraction truncated).
pub fn format_rfc3339(ns: i64) -> String {
    let c = civil_from_unix_ns(ns);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// `2026-11-22T03:04:05.123456789Z`; the fraction (always 9 digits) is
/// omitted when it is zero.
pub fn format_rfc3339_nanos(ns: i64) -> String {
    let c = civil_from_unix_ns(ns);
    let mut s = format_rfc3339(ns);
    if c.nanos != 0 {
        s.pop();
        s.push_str(&format!(".{:09}Z", c.nanos));
    }
    s
}

/// The value of a non-empty run of ASCII digits (at most 9 of them).
fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |v, &c| v * 10 + u32::from(c - b'0')))
}

fn parse_inner(s: &str) -> Option<i64> {
    let (date, rest) = s.as_bytes().split_at_checked(10)?;
    if date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..])?);
    let year = i64::from(year);
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut c = Civil {
        year,
        month,
        day,
        hour: 0,
        minute: 0,
        second: 0,
        nanos: 0,
    };
    if rest.is_empty() {
        return checked_unix_ns(&c);
    }
    let (time, mut zone) = rest.split_at_checked(9)?;
    if !matches!(time[0], b'T' | b't' | b' ') || time[3] != b':' || time[6] != b':' {
        return None;
    }
    (c.hour, c.minute, c.second) = (num(&time[1..3])?, num(&time[4..6])?, num(&time[7..])?);
    if c.hour > 23 || c.minute > 59 || c.second > 59 {
        return None;
    }
    if let Some(frac) = zone.strip_prefix(b".") {
        let len = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        let digits = &frac[..len.min(9)];
        c.nanos = num(digits)? * 10u32.pow(9 - digits.len() as u32);
        zone = &frac[len..];
    }
    let offset_secs = match *zone {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hh, mm) = (num(&[h1, h2])?, num(&[m1, m2])?);
            if hh > 23 || mm > 59 {
                return None;
            }
            let off = i64::from(hh * 3600 + mm * 60);
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    checked_unix_ns(&c)?.checked_sub(offset_secs * NS_PER_SEC)
}

/// Parses an RFC 3339 timestamp (`2026-11-22T03:04:05Z`,
/// `2026-11-22T05:04:05.5+02:00`, ...) or a plain date `2026-11-22`
/// (midnight UTC) into Unix nanoseconds. Fractions beyond 9 digits are
/// truncated; leap seconds (`:60`) are rejected. Surrounding whitespace is
/// ignored.
pub fn parse_rfc3339(s: &str) -> Result<i64, TimeError> {
    parse_inner(s.trim()).ok_or_else(|| TimeError::BadTime(s.to_string()))
}

/// ISO 8601 week-numbering year and week (1..=53) of the UTC date of `ns`.
pub fn iso_week(ns: i64) -> (i64, u32) {
    let days = ns.div_euclid(NS_PER_SEC * SECS_PER_DAY);
    let weekday = (days + 3).rem_euclid(7) + 1; // Monday = 1 .. Sunday = 7; day 0 was a Thursday
    let thursday = days - weekday + 4; // the ISO year is the year of this week's Thursday
    let (year, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
    (year, week as u32)
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
    let bad = || TimeError::BadDuration(s.to_string());
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for ch in t.chars() {
        if let Some(d) = ch.to_digit(10) {
            let n = num
                .unwrap_or(0)
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d)));
            num = Some(n.ok_or_else(bad)?);
            continue;
        }
        let unit = match ch {
            'y' => 365 * DAY,
            'm' => 30 * DAY,
            'w' => 7 * DAY,
            'd' => DAY,
            'h' => HOUR,
            _ => return Err(bad()),
        };
        let n = num.take().ok_or_else(bad)?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if num.is_some() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn known_dates_round_trip() {
        let ns = p("2026-11-22T03:04:05.123456789Z");
        let c = Civil {
            year: 2026,
            month: 11,
            day: 22,
            hour: 3,
            minute: 4,
            second: 5,
            nanos: 0,
        };
        assert_eq!(
            civil_from_unix_ns(ns),
            Civil {
                nanos: 123_456_789,
                ..c
            }
        );
        assert_eq!(unix_ns_from_civil(&c), 1_795_316_645 * NS_PER_SEC);
        for (text, secs) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:00:00Z", 951_825_600),
            ("2026-11-22T03:04:05Z", 1_795_316_645),
            ("1969-12-31T23:59:59Z", -1),
            ("1900-01-01T00:00:00Z", -2_208_988_800),
            ("2100-03-01T00:00:00Z", 4_107_542_400),
        ] {
            let ns = secs * NS_PER_SEC;
            assert_eq!(unix_ns_from_civil(&civil_from_unix_ns(ns)), ns, "{text}");
            assert_eq!(format_rfc3339(ns), text);
            assert_eq!(p(text), ns, "{text}");
        }
    }

    #[test]
    fn leap_years_and_day_arithmetic() {
        // 2100 is not a leap year: Feb 28 is followed by Mar 1.
        assert!(parse_rfc3339("2100-02-29").is_err());
        assert_eq!(
            format_rfc3339(p("2100-02-28") + 86_400 * NS_PER_SEC),
            "2100-03-01T00:00:00Z"
        );
        assert!(parse_rfc3339("2023-02-29").is_err());
        assert_eq!(p("2024-02-29") - p("2024-02-28"), 86_400 * NS_PER_SEC);
        // Every day from 1677 to 2262 converts both ways and follows its predecessor.
        let mut prev = civil_from_days(-106_751);
        for days in -106_750..106_750 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            let (py, pm, pd) = prev;
            let next = match (pd < days_in_month(py, pm), pm < 12) {
                (true, _) => (py, pm, pd + 1),
                (false, true) => (py, pm + 1, 1),
                (false, false) => (py + 1, 1, 1),
            };
            assert_eq!(next, (y, m, d));
            prev = (y, m, d);
        }
    }

    #[test]
    fn negative_and_extreme_timestamps() {
        assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(p("1969-12-31T23:59:59.999999999Z"), -1);
        for ns in [i64::MIN, i64::MAX, -86_400 * NS_PER_SEC - 7] {
            assert_eq!(unix_ns_from_civil(&civil_from_unix_ns(ns)), ns);
            assert_eq!(p(&format_rfc3339_nanos(ns)), ns);
        }
        assert_eq!(
            format_rfc3339_nanos(i64::MIN),
            "1677-09-21T00:12:43.145224192Z"
        );
        let c = civil_from_unix_ns(0);
        assert_eq!(unix_ns_from_civil(&Civil { year: 3000, ..c }), i64::MAX);
        assert_eq!(unix_ns_from_civil(&Civil { year: 1000, ..c }), i64::MIN);
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
        assert_eq!(p("2026-11-22T03:04:05.123456789123Z"), base + 123_456_789);
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
        let bad = "garbage 2026-11-22T03:04:05 2026-13-01 2026-00-10 2026-11-31 2026-11-22T24:00:00Z \
                   2026-11-22T03:60:00Z 2026-11-22T03:04:60Z 2026-11-22T03:04:05.Z 2026-11-22T03:04:05+0200 \
                   2026-11-22T03:04:05+24:00 2026-11-22T03:04:05Zjunk 2026-11-22T 26-11-22 2026-1-22 \
                   2026-11-22T3:04:05Z ２026-11-22 2026-11-22x 2026/11/22";
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
    fn iso_weeks() {
        let cases = [
            ("2021-01-03T23:59:59Z", (2020, 53)),
            ("2021-01-04", (2021, 1)),
            ("2026-11-23", (2026, 48)),
            ("2026-11-22T03:04:05Z", (2026, 47)),
            ("2024-12-30", (2025, 1)),
            ("2027-01-01", (2026, 53)),
            ("1970-01-01", (1970, 1)),
            ("1969-12-29", (1970, 1)),
            ("1969-12-28", (1969, 52)),
        ];
        for (date, want) in cases {
            assert_eq!(iso_week(p(date)), want, "{date}");
        }
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
    fn now_is_plausible() {
        assert!((p("2020-01-01")..p("2200-01-01")).contains(&now_ns()));
    }
}
