//! Tape pools: when a pool's jobs start a new media set (allocation), when a set's cartridges
//! may be written over (retention), and what to do with the cartridge loaded now. The shape
//! Proxmox Backup Server users know: `allocation` is `continue`, `always`, a calendar event
//! (`daily`, `weekly`, `monthly`: a new set at the first job of each local day, ISO week or
//! month) or a period such as `7d`; `set_retention` is `keep`, `overwrite` or a period such as `90d` (`[pools.NAME]` in
//! the configuration; docs/tape.md).
//!
//! A set's cartridges are reused only when the whole set has expired: never the pool's current
//! set (the one started last), and never a set kept (`keep`) or written to within its period.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::catalog::{MediumRecord, TapeStatus};
use crate::settings::Pool;
use crate::timefmt::{self, TimeZone};

/// When a pool's jobs start a new media set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Every job appends to the current set (a new one starts only with `bakfs tape label
    /// --new-set`).
    Continue,
    /// Every job starts a new set (on an empty or expired cartridge).
    Always,
    /// A job starts a new set once the current one was started in an earlier local day, ISO
    /// week or month.
    Calendar(CalendarEvent),
    /// A job starts a new set once the current one is older than this.
    Every(Duration),
}

/// The calendar events a pool can start its sets on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarEvent {
    Daily,
    Weekly,
    Monthly,
}

impl CalendarEvent {
    /// Which day, week or month `ns` falls in, in `tz`.
    fn key(self, ns: i64, tz: &TimeZone) -> (i16, i8, i8) {
        let t = timefmt::local(ns, tz);
        match self {
            CalendarEvent::Daily => (t.year(), t.month(), t.day()),
            CalendarEvent::Weekly => {
                let w = t.date().iso_week_date();
                (w.year(), w.week(), 0)
            }
            CalendarEvent::Monthly => (t.year(), t.month(), 0),
        }
    }
}

/// When a media set's cartridges may be written over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetRetention {
    /// Never: its cartridges are labelled again only by hand (`--overwrite`).
    Keep,
    /// As soon as it is not the pool's current set.
    Overwrite,
    /// Once nothing was written to it for this long (and it is not the current set).
    For(Duration),
}

/// A pool's tape policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPolicy {
    pub allocation: Allocation,
    pub retention: SetRetention,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        Self {
            allocation: Allocation::Continue,
            retention: SetRetention::Keep,
        }
    }
}

impl PoolPolicy {
    /// The policy of `[pools.NAME]` (the defaults without one: continue, keep).
    ///
    /// # Errors
    /// A value that is none of the words nor a duration.
    pub fn of(pool: Option<&Pool>) -> Result<Self, String> {
        let mut p = Self::default();
        let Some(pool) = pool else { return Ok(p) };
        if let Some(a) = &pool.allocation {
            p.allocation = match a.as_str() {
                "continue" => Allocation::Continue,
                "always" => Allocation::Always,
                "daily" => Allocation::Calendar(CalendarEvent::Daily),
                "weekly" => Allocation::Calendar(CalendarEvent::Weekly),
                "monthly" => Allocation::Calendar(CalendarEvent::Monthly),
                d => Allocation::Every(timefmt::parse_duration(d).map_err(|e| {
                    format!("allocation {a:?}: continue, always, daily, weekly, monthly or a period such as 7d ({e})")
                })?),
            };
        }
        if let Some(r) = &pool.set_retention {
            p.retention = match r.as_str() {
                "keep" => SetRetention::Keep,
                "overwrite" => SetRetention::Overwrite,
                d => SetRetention::For(timefmt::parse_duration(d).map_err(|e| {
                    format!("set_retention {r:?}: keep, overwrite or a period such as 90d ({e})")
                })?),
            };
        }
        Ok(p)
    }
}

/// A media set as its cartridges' records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSet {
    pub id: String,
    /// When its first cartridge was labelled.
    pub started_ns: i64,
    /// When a job last wrote to it (`None`: never).
    pub last_written_ns: Option<i64>,
    /// Its cartridges' labels, by place in the set.
    pub cartridges: Vec<String>,
    /// The place of its last cartridge.
    pub last_seq: u32,
    /// Its last cartridge is full: the set goes on only on another one.
    pub wants_tape: bool,
}

/// The pool's sets, oldest first, from its cartridges' records (other media are ignored).
#[must_use]
pub fn sets(pool_media: &[MediumRecord]) -> Vec<MediaSet> {
    let mut by: BTreeMap<&str, Vec<&MediumRecord>> = BTreeMap::new();
    for m in pool_media {
        if let Some(t) = &m.tape {
            by.entry(t.set.as_str()).or_default().push(m);
        }
    }
    let mut v: Vec<MediaSet> = by
        .into_iter()
        .map(|(id, mut ms)| {
            ms.sort_by_key(|m| m.tape.as_ref().map_or(0, |t| t.seq));
            let last = ms.last().and_then(|m| m.tape.as_ref());
            MediaSet {
                id: id.to_string(),
                started_ns: ms.iter().map(|m| m.enrolled_ns).min().unwrap_or(0),
                last_written_ns: ms.iter().filter_map(|m| m.last_written_ns).max(),
                cartridges: ms.iter().map(|m| m.label.clone()).collect(),
                last_seq: last.map_or(0, |t| t.seq),
                wants_tape: last.is_some_and(|t| t.status == TapeStatus::Full),
            }
        })
        .collect();
    v.sort_by(|a, b| {
        a.started_ns
            .cmp(&b.started_ns)
            .then_with(|| a.id.cmp(&b.id))
    });
    v
}

/// Whether set `s` may be written over at `now`, `current` being the pool's current set.
#[must_use]
pub fn expired(policy: &PoolPolicy, s: &MediaSet, current: &str, now: i64) -> bool {
    if s.id == current {
        return false;
    }
    match policy.retention {
        SetRetention::Keep => false,
        SetRetention::Overwrite => true,
        SetRetention::For(d) => {
            let since = s.last_written_ns.unwrap_or(s.started_ns);
            u128::try_from(now.saturating_sub(since)).unwrap_or(0) > d.as_nanos()
        }
    }
}

/// What a job does with the cartridge loaded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Append to it, in its set.
    Append,
    /// Label it again (what it holds is given up) as cartridge `seq` of set `set`, or of a new
    /// set when `set` is `None` (then `seq` is 0).
    Relabel { set: Option<String>, seq: u32 },
    /// Write nothing, for this reason.
    Leave(String),
}

/// What to do with cartridge `m` of a pool whose cartridges are `pool_media` (`m` among them),
/// at `now` (calendar events in `tz`). `holds` says whether the catalog records anything on
/// `m`.
#[must_use]
pub fn decide(
    policy: &PoolPolicy,
    m: &MediumRecord,
    holds: bool,
    pool_media: &[MediumRecord],
    now: i64,
    tz: &TimeZone,
) -> Decision {
    let Some(t) = &m.tape else {
        return Decision::Leave(format!("{} is not a tape", m.label));
    };
    if matches!(t.status, TapeStatus::Retired | TapeStatus::Damaged) {
        return Decision::Leave(format!("{} is {}", m.label, t.status));
    }
    let sets = sets(pool_media);
    let Some(cur) = sets.last() else {
        return Decision::Leave(format!("{} belongs to no media set", m.label));
    };
    let cur_written = cur.last_written_ns.is_some();
    let new_set_due = !cur.wants_tape
        && cur_written
        && match policy.allocation {
            Allocation::Continue => false,
            Allocation::Always => true,
            Allocation::Calendar(c) => c.key(cur.started_ns, tz) != c.key(now, tz),
            Allocation::Every(d) => {
                u128::try_from(now.saturating_sub(cur.started_ns)).unwrap_or(0) > d.as_nanos()
            }
        };
    if t.set == cur.id && t.status == TapeStatus::Writable && !new_set_due {
        return Decision::Append;
    }
    let own = sets.iter().find(|s| s.id == t.set);
    let reusable = !holds || own.is_some_and(|s| expired(policy, s, &cur.id, now));
    if reusable {
        return if cur.wants_tape && t.set != cur.id {
            Decision::Relabel {
                set: Some(cur.id.clone()),
                seq: cur.last_seq + 1,
            }
        } else if new_set_due || t.set == cur.id {
            Decision::Relabel { set: None, seq: 0 }
        } else {
            Decision::Relabel {
                set: Some(cur.id.clone()),
                seq: cur.last_seq + 1,
            }
        };
    }
    let why = if t.set == cur.id && t.status == TapeStatus::Full {
        format!("{} is full", m.label)
    } else if new_set_due && t.set == cur.id {
        format!(
            "a new media set is due (allocation): load an empty or expired tape of pool {}",
            m.pool
        )
    } else {
        format!(
            "{}'s media set is not the pool's current one and has not expired ({})",
            m.label,
            match policy.retention {
                SetRetention::Keep => "set_retention keep".to_string(),
                SetRetention::Overwrite => "overwrite".to_string(),
                SetRetention::For(d) =>
                    format!("kept {} after its last write", timefmt::format_duration(d)),
            }
        )
    };
    Decision::Leave(why)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
