//! Snapshot retention policy, modelled on restic's `forget --keep-*` options
//! and, like restic's, evaluated on the operator's local calendar (the time
//! zone the caller passes: `TimeZone::system()` in the binaries).
//!
//! [`apply`] sorts the snapshots newest first (ties broken by id, ascending)
//! and marks a snapshot as kept if **any** rule keeps it:
//!
//! * `last N` keeps the N newest snapshots.
//! * `hourly N`, `daily N`, `weekly N`, `monthly N`, `yearly N`: each puts
//!   snapshots into buckets (local hour, date, ISO 8601 week, month, year)
//!   and, walking newest first, keeps the newest snapshot of each bucket until
//!   N buckets have been kept. Buckets without snapshots do not count, so
//!   `daily 7` keeps one snapshot for each of the 7 most recent days *that have
//!   snapshots*.
//! * `within D` keeps every snapshot taken at or after `newest - D`, where
//!   `newest` is the time of the newest snapshot — like restic, this is **not**
//!   measured from the current time, so an old repository never loses its
//!   recent history just because no backup ran lately. Units: `y` = 365 days,
//!   `m` = 30 days, `w`, `d`, `h` (see [`crate::timefmt::parse_duration`]).
//!
//! A count of 0 and a zero duration disable their rule; a policy with no
//! active rule is rejected with [`ForgetError::EmptyPolicy`] instead of
//! removing every snapshot.
//!
//! A policy applies within a [`Group`] (same host, paths and job):
//! [`apply_by_group`] is what `bakfs forget` and mediad's media retention use.
//!
//! ```
//! use bakfs_core::forget::{apply, Candidate, KeepPolicy};
//! use bakfs_core::timefmt::parse_rfc3339;
//! use jiff::tz::TimeZone;
//!
//! let t = |s| parse_rfc3339(s).unwrap();
//! let snaps = [
//!     Candidate { id: "a", time_ns: t("2026-11-20T08:00:00Z") },
//!     Candidate { id: "b", time_ns: t("2026-11-22T08:00:00Z") },
//!     Candidate { id: "c", time_ns: t("2026-11-22T20:00:00Z") },
//!     Candidate { id: "d", time_ns: t("2026-11-21T08:00:00Z") },
//! ];
//! let policy = KeepPolicy { last: Some(1), daily: Some(2), ..Default::default() };
//! let decisions = apply(&policy, &snaps, &TimeZone::UTC).unwrap();
//! let summary: Vec<_> = decisions.iter().map(|d| (d.id.as_str(), d.keep, d.reasons.join(","))).collect();
//! assert_eq!(summary, [
//!     ("c", true, "last,daily".to_string()), // newest, and newest of 2026-11-22
//!     ("b", false, String::new()),           // same day as c
//!     ("d", true, "daily".to_string()),      // newest of 2026-11-21
//!     ("a", false, String::new()),           // only 2 days are kept
//! ]);
//! ```
//!
//! In a TOML config the policy reads as
//! `keep_last = 1`, `keep_daily = 7`, `keep_within = "30d"`, ….

use std::time::Duration;

use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, HashSet};

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::timefmt;

/// Which snapshots to keep. Absent (or zero) fields are inactive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    #[serde(rename = "keep_last", default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    #[serde(
        rename = "keep_hourly",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hourly: Option<u32>,
    #[serde(
        rename = "keep_daily",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub daily: Option<u32>,
    #[serde(
        rename = "keep_weekly",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub weekly: Option<u32>,
    #[serde(
        rename = "keep_monthly",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub monthly: Option<u32>,
    #[serde(
        rename = "keep_yearly",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub yearly: Option<u32>,
    /// Stored as a duration string such as `"30d"` or `"1y6m"`.
    #[serde(
        rename = "keep_within",
        default,
        with = "duration_str",
        skip_serializing_if = "Option::is_none"
    )]
    pub within: Option<Duration>,
}

impl KeepPolicy {
    /// True if no rule would keep anything (all counts absent or 0, and no
    /// non-zero `within`).
    pub fn is_empty(&self) -> bool {
        [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ]
        .iter()
        .all(|n| n.unwrap_or(0) == 0)
            && self.within.is_none_or(|d| d.is_zero())
    }
}

/// Serde helper storing `Option<Duration>` as a [`timefmt::parse_duration`]
/// string.
mod duration_str {
    use std::time::Duration;

    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    use crate::timefmt;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(d) if d.subsec_nanos() != 0 || d.as_secs() % 3600 != 0 => Err(S::Error::custom(
                format!("keep_within {d:?} is not a whole number of hours"),
            )),
            Some(d) => s.serialize_some(&timefmt::format_duration(*d)),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| timefmt::parse_duration(&s).map_err(D::Error::custom))
            .transpose()
    }
}

/// A snapshot to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub time_ns: i64,
}

/// The verdict for one snapshot; `reasons` lists the rules that keep it
/// (`"last"`, `"hourly"`, `"daily"`, `"weekly"`, `"monthly"`, `"yearly"`,
/// `"within 30d"`), empty when it is to be removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub id: String,
    pub time_ns: i64,
    pub keep: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("no --keep-* option given: refusing to forget every snapshot")]
    EmptyPolicy,
}

/// Snapshots that retention considers together: the same host, paths and job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Group {
    pub host: String,
    pub paths: Vec<String>,
    pub job: Option<String>,
}

/// Bucket identity: (year, month or ISO week, day, hour), unused parts 0.
type Key = (i16, i8, i8, i8);

/// Maps a snapshot's local date and time to its bucket.
type BucketFn = fn(&DateTime) -> Key;

/// Evaluates `policy` over `snaps`, with calendar buckets in `tz`, and returns one decision per
/// snapshot, newest first (see the module docs for the rules).
///
/// # Errors
/// [`ForgetError::EmptyPolicy`] for a policy that keeps nothing.
pub fn apply(
    policy: &KeepPolicy,
    snaps: &[Candidate<'_>],
    tz: &TimeZone,
) -> Result<Vec<Decision>, ForgetError> {
    if policy.is_empty() {
        return Err(ForgetError::EmptyPolicy);
    }
    let mut sorted: Vec<&Candidate<'_>> = snaps.iter().collect();
    sorted.sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then_with(|| a.id.cmp(b.id)));

    let within = match (policy.within, sorted.first()) {
        (Some(d), Some(newest)) if !d.is_zero() => {
            let span = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            let reason = format!("within {}", timefmt::format_duration(d));
            Some((newest.time_ns.saturating_sub(span), reason))
        }
        _ => None,
    };
    // (reason, buckets still to keep, bucket function, key of the last kept bucket)
    let rules: [(&str, Option<u32>, BucketFn); 5] = [
        ("hourly", policy.hourly, |t| {
            (t.year(), t.month(), t.day(), t.hour())
        }),
        ("daily", policy.daily, |t| (t.year(), t.month(), t.day(), 0)),
        ("weekly", policy.weekly, |t| {
            let w = t.date().iso_week_date();
            (w.year(), w.week(), 0, 0)
        }),
        ("monthly", policy.monthly, |t| (t.year(), t.month(), 0, 0)),
        ("yearly", policy.yearly, |t| (t.year(), 0, 0, 0)),
    ];
    let mut buckets: Vec<(&str, u32, BucketFn, Option<Key>)> = rules
        .into_iter()
        .filter_map(|(reason, n, key)| n.filter(|&n| n > 0).map(|n| (reason, n, key, None)))
        .collect();
    let last = policy.last.unwrap_or(0) as usize;

    let decisions = sorted
        .iter()
        .enumerate()
        .map(|(i, snap)| {
            let mut reasons = Vec::new();
            let local = timefmt::local(snap.time_ns, tz);
            if i < last {
                reasons.push("last".to_string());
            }
            for (reason, left, key_of, prev) in buckets.iter_mut() {
                if *left == 0 {
                    continue;
                }
                // Newest-first order makes every bucket a contiguous run, so
                // comparing with the previously kept bucket finds new ones.
                let key = key_of(&local);
                if *prev != Some(key) {
                    *prev = Some(key);
                    *left -= 1;
                    reasons.push(reason.to_string());
                }
            }
            if let Some((cutoff, reason)) = &within {
                if snap.time_ns >= *cutoff {
                    reasons.push(reason.clone());
                }
            }
            Decision {
                id: snap.id.to_string(),
                time_ns: snap.time_ns,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect();
    Ok(decisions)
}

/// Applies `policy` within each [`Group`] of `snaps` (a snapshot listed twice, by id, counts
/// once). Groups come in order, each with its decisions newest first.
///
/// # Errors
/// [`ForgetError::EmptyPolicy`] for a policy that keeps nothing.
pub fn apply_by_group<'a>(
    policy: &KeepPolicy,
    snaps: impl IntoIterator<Item = (Group, Candidate<'a>)>,
    tz: &TimeZone,
) -> Result<Vec<(Group, Vec<Decision>)>, ForgetError> {
    let mut groups: BTreeMap<Group, Vec<Candidate<'a>>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (g, c) in snaps {
        if seen.insert(c.id) {
            groups.entry(g).or_default().push(c);
        }
    }
    groups
        .into_iter()
        .map(|(g, cands)| Ok((g, apply(policy, &cands, tz)?)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::timefmt::{format_rfc3339, parse_rfc3339};

    const H: i64 = 3_600_000_000_000;

    /// `n` snapshots `step` apart, ending at `end` (ids "s000", "s001", ... oldest first).
    fn series(end: &str, n: i64, step: i64) -> Vec<(String, i64)> {
        let end = parse_rfc3339(end).unwrap();
        (0..n)
            .map(|i| (format!("s{i:03}"), end - (n - 1 - i) * step))
            .collect()
    }

    /// Applies the policy given as JSON config and checks the invariants.
    fn run(policy: &str, snaps: &[(String, i64)], now: i64) -> Vec<Decision> {
        let policy: KeepPolicy = serde_json::from_str(policy).unwrap();
        let cands: Vec<Candidate<'_>> = snaps
            .iter()
            .map(|(id, t)| Candidate { id, time_ns: *t })
            .collect();
        let _ = now;
        let out = apply(&policy, &cands, &TimeZone::UTC).unwrap();
        assert_eq!(out.len(), snaps.len());
        assert!(
            out.windows(2).all(|w| w[0].time_ns >= w[1].time_ns),
            "newest first"
        );
        assert!(out.iter().all(|d| d.keep != d.reasons.is_empty()));
        out
    }

    /// "<time> <reasons>" of each kept snapshot, newest first.
    fn kept(policy: &str, snaps: &[(String, i64)]) -> Vec<String> {
        let out = run(policy, snaps, 0).into_iter().filter(|d| d.keep);
        out.map(|d| format!("{} {}", format_rfc3339(d.time_ns), d.reasons.join(",")))
            .collect()
    }

    #[test]
    fn keep_last() {
        let snaps = series("2026-11-22T09:00:00Z", 10, H);
        let out = run(r#"{"keep_last":3}"#, &snaps, 0);
        let ids: Vec<_> = out
            .iter()
            .filter(|d| d.keep)
            .map(|d| (d.id.as_str(), d.reasons.join(",")))
            .collect();
        assert_eq!(
            ids,
            [
                ("s009", "last".into()),
                ("s008", "last".into()),
                ("s007", "last".into())
            ]
        );
        assert!(run(r#"{"keep_last":50}"#, &snaps, 0).iter().all(|d| d.keep));
    }

    #[test]
    fn keep_daily_over_hourly_snapshots() {
        let snaps = series("2026-11-30T23:00:00Z", 30 * 24, H);
        let want: Vec<_> = (24..=30)
            .rev()
            .map(|d| format!("2026-11-{d}T23:00:00Z daily"))
            .collect();
        assert_eq!(kept(r#"{"keep_daily":7}"#, &snaps), want);
    }

    #[test]
    fn keep_hourly_monthly_yearly() {
        let snaps = series("2026-11-22T10:30:00Z", 12, H / 2);
        let want = [
            "2026-11-22T10:30:00Z hourly",
            "2026-11-22T09:30:00Z hourly",
            "2026-11-22T08:30:00Z hourly",
        ];
        assert_eq!(kept(r#"{"keep_hourly":3}"#, &snaps), want);
        // Every 10 days from 2024-06-12 to 2026-11-19.
        let snaps = series("2026-11-19T00:00:00Z", 90, 240 * H);
        assert_eq!(format_rfc3339(snaps[0].1), "2024-06-12T00:00:00Z");
        let want = [
            "2026-11-19T00:00:00Z monthly,yearly",
            "2026-10-30T00:00:00Z monthly",
            "2026-09-30T00:00:00Z monthly",
            "2025-12-24T00:00:00Z yearly",
        ];
        assert_eq!(kept(r#"{"keep_monthly":3,"keep_yearly":2}"#, &snaps), want);
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // Daily at noon, 2026-10-26 (Mon, week 44) .. 2026-11-25 (Wed, week 48).
        let snaps = series("2026-11-25T12:00:00Z", 31, 24 * H);
        let want = [
            "2026-11-25T12:00:00Z weekly",
            "2026-11-22T12:00:00Z weekly",
            "2026-11-15T12:00:00Z weekly",
        ];
        assert_eq!(kept(r#"{"keep_weekly":3}"#, &snaps), want);
        // Across a year boundary: 2021-01-03 (Sunday) is in ISO week 2020-W53.
        let snaps = series("2021-01-05T12:00:00Z", 4, 24 * H);
        let want = ["2021-01-05T12:00:00Z weekly", "2021-01-03T12:00:00Z weekly"];
        assert_eq!(kept(r#"{"keep_weekly":5}"#, &snaps), want);
    }

    #[test]
    fn keep_within_measures_from_newest_snapshot() {
        let snaps = series("2026-11-22T12:00:00Z", 5 * 24, H);
        // `now` years later must not matter.
        let out = run(
            r#"{"keep_within":"2d"}"#,
            &snaps,
            parse_rfc3339("2030-01-01").unwrap(),
        );
        let kept: Vec<&Decision> = out.iter().filter(|d| d.keep).collect();
        assert_eq!(kept.len(), 49); // the newest plus 48 hours back, inclusive
        assert_eq!(format_rfc3339(kept[48].time_ns), "2026-11-20T12:00:00Z");
        assert!(kept.iter().all(|d| d.reasons == ["within 2d"]));
    }

    #[test]
    fn combined_rules_union_and_reasons() {
        let snaps = series("2026-11-22T23:00:00Z", 10 * 24, H);
        let policy = r#"{"keep_last":2,"keep_daily":3,"keep_weekly":2,"keep_within":"3h"}"#;
        let want = [
            "2026-11-22T23:00:00Z last,daily,weekly,within 3h",
            "2026-11-22T22:00:00Z last,within 3h",
            "2026-11-22T21:00:00Z within 3h",
            "2026-11-22T20:00:00Z within 3h",
            "2026-11-21T23:00:00Z daily",
            "2026-11-20T23:00:00Z daily",
            "2026-11-15T23:00:00Z weekly", // Sunday, end of ISO week 46
        ];
        assert_eq!(kept(policy, &snaps), want);
    }

    #[test]
    fn snapshots_in_the_same_second() {
        let t = parse_rfc3339("2026-11-22T03:04:05Z").unwrap();
        let snaps: Vec<(String, i64)> = [
            ("c", t),
            ("a", t),
            ("b", t),
            ("d", t + 5),
            ("old", t - 24 * H),
        ]
        .map(|(id, t)| (id.into(), t))
        .into();
        let out = run(r#"{"keep_last":2}"#, &snaps, 0);
        let ids: Vec<_> = out.iter().map(|d| (d.id.as_str(), d.keep)).collect();
        // Ties are broken by id, so the result is deterministic.
        assert_eq!(
            ids,
            [
                ("d", true),
                ("a", true),
                ("b", false),
                ("c", false),
                ("old", false)
            ]
        );
        let out = run(r#"{"keep_daily":5}"#, &snaps, 0);
        let ids: Vec<_> = out
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(ids, ["d", "old"]);
    }

    #[test]
    fn empty_policy_and_empty_input() {
        let cands = [Candidate {
            id: "x",
            time_ns: 0,
        }];
        let zero = KeepPolicy {
            last: Some(0),
            daily: Some(0),
            within: Some(Duration::ZERO),
            ..Default::default()
        };
        for policy in [KeepPolicy::default(), zero] {
            assert!(policy.is_empty());
            let err = apply(&policy, &cands, &TimeZone::UTC).unwrap_err();
            assert!(matches!(err, ForgetError::EmptyPolicy));
            assert_eq!(
                err.to_string(),
                "no --keep-* option given: refusing to forget every snapshot"
            );
        }
        let policy = KeepPolicy {
            yearly: Some(1),
            ..Default::default()
        };
        assert!(!policy.is_empty());
        assert!(apply(&policy, &[], &TimeZone::UTC).unwrap().is_empty());
    }

    #[test]
    fn serde_field_names() {
        let within = Some(timefmt::parse_duration("1y6m").unwrap());
        let policy = KeepPolicy {
            last: Some(3),
            daily: Some(7),
            within,
            ..Default::default()
        };
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            json,
            r#"{"keep_last":3,"keep_daily":7,"keep_within":"1y180d"}"#
        );
        assert_eq!(serde_json::from_str::<KeepPolicy>(&json).unwrap(), policy);
        let all = r#"{"keep_last":1,"keep_hourly":2,"keep_daily":3,"keep_weekly":4,
            "keep_monthly":5,"keep_yearly":6,"keep_within":"30d"}"#;
        let p: KeepPolicy = serde_json::from_str(all).unwrap();
        let counts = [p.last, p.hourly, p.daily, p.weekly, p.monthly, p.yearly];
        assert_eq!(counts, [1, 2, 3, 4, 5, 6].map(Some));
        assert_eq!(p.within, Some(Duration::from_secs(30 * 86_400)));
        for empty in ["{}", r#"{"keep_within":null}"#] {
            assert_eq!(
                serde_json::from_str::<KeepPolicy>(empty).unwrap(),
                KeepPolicy::default()
            );
        }
        for bad in [
            r#"{"keep_within":"30x"}"#,
            r#"{"keep_dayly":7}"#,
            r#"{"keep_last":-1}"#,
        ] {
            assert!(serde_json::from_str::<KeepPolicy>(bad).is_err(), "{bad}");
        }
        let odd = KeepPolicy {
            within: Some(Duration::from_secs(90)),
            ..Default::default()
        };
        assert!(serde_json::to_string(&odd).is_err());
    }

    #[test]
    fn buckets_follow_the_local_calendar() {
        // 23:30 and 00:30 UTC are one day in Berlin (00:30 and 01:30 local), two days in UTC.
        let snaps = [
            ("late", parse_rfc3339("2026-11-21T23:30:00Z").unwrap()),
            ("early", parse_rfc3339("2026-11-22T00:30:00Z").unwrap()),
            ("before", parse_rfc3339("2026-11-21T12:00:00Z").unwrap()),
        ];
        let cands: Vec<Candidate<'_>> = snaps
            .iter()
            .map(|(id, t)| Candidate { id, time_ns: *t })
            .collect();
        let policy = KeepPolicy {
            daily: Some(2),
            ..Default::default()
        };
        let kept = |tz: &TimeZone| -> Vec<String> {
            apply(&policy, &cands, tz)
                .unwrap()
                .into_iter()
                .filter(|d| d.keep)
                .map(|d| d.id)
                .collect()
        };
        assert_eq!(kept(&TimeZone::UTC), ["early", "late"]);
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(kept(&berlin), ["early", "before"]);
    }

    #[test]
    fn groups_are_kept_apart_and_a_snapshot_counts_once() {
        let g = |host: &str| Group {
            host: host.into(),
            paths: vec!["/etc".into()],
            job: None,
        };
        let t = |s| parse_rfc3339(s).unwrap();
        let snaps = [
            (
                g("a"),
                Candidate {
                    id: "a1",
                    time_ns: t("2026-11-20T00:00:00Z"),
                },
            ),
            (
                g("a"),
                Candidate {
                    id: "a2",
                    time_ns: t("2026-11-21T00:00:00Z"),
                },
            ),
            (
                g("b"),
                Candidate {
                    id: "b1",
                    time_ns: t("2026-11-19T00:00:00Z"),
                },
            ),
            (
                g("a"),
                Candidate {
                    id: "a2",
                    time_ns: t("2026-11-21T00:00:00Z"),
                },
            ),
        ];
        let policy = KeepPolicy {
            last: Some(1),
            ..Default::default()
        };
        let out = apply_by_group(&policy, snaps, &TimeZone::UTC).unwrap();
        let summary: Vec<(String, Vec<(String, bool)>)> = out
            .into_iter()
            .map(|(g, ds)| (g.host, ds.into_iter().map(|d| (d.id, d.keep)).collect()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a".into(), vec![("a2".into(), true), ("a1".into(), false)]),
                ("b".into(), vec![("b1".into(), true)]),
            ]
        );
    }
}
