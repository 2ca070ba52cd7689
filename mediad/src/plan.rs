//! Which snapshots a medium should hold: its retention policy applied to the primary's snapshots
//! together with those already on the medium, group by group (host, paths, job), as `bakfs
//! forget` does; and, whatever that policy says, the newest snapshot of each pinned job
//! (`pin = true` in the configuration), copied before anything else.

use std::collections::{BTreeSet, HashSet};

use bakfs_core::catalog::{MediumSnapshot, SnapshotRecord};
use bakfs_core::forget::{self, Candidate, Group, KeepPolicy};
use bakfs_core::format::id::SnapshotId;
use bakfs_core::timefmt::TimeZone;

/// What to do on a medium.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Snapshots to copy (in the primary, wanted, not yet verified on the medium), newest first.
    pub add: Vec<SnapshotRecord>,
    /// Snapshots on the medium that the policy no longer wants.
    pub remove: Vec<SnapshotId>,
    /// Every wanted snapshot id.
    pub wanted: HashSet<SnapshotId>,
    /// The newest snapshot of each pinned job: wanted whatever the policy, first in `add` when
    /// the medium lacks it.
    pub pinned: Vec<Pinned>,
}

/// The newest snapshot of a pinned job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub job: String,
    pub id: SnapshotId,
}

impl Plan {
    /// The pinned job whose newest snapshot `id` is, if any.
    pub fn pinned_job(&self, id: &SnapshotId) -> Option<&str> {
        self.pinned
            .iter()
            .find(|p| p.id == *id)
            .map(|p| p.job.as_str())
    }
}

/// The newest snapshot of each job of `jobs` among the primary's snapshots and the medium's,
/// not dated after `now` (as `bakfs status` picks it: a snapshot from a clock set wrong is not
/// the newest), by job name. A job without a snapshot has none.
pub fn newest_pinned(
    jobs: &BTreeSet<String>,
    primary: &[SnapshotRecord],
    on_medium: &[MediumSnapshot],
    now: i64,
) -> Vec<Pinned> {
    let mut out = Vec::new();
    if jobs.is_empty() {
        return out;
    }
    let all = primary
        .iter()
        .map(|s| (s.job.as_deref(), s.time_ns, s.id))
        .chain(
            on_medium
                .iter()
                .map(|s| (s.job.as_deref(), s.time_ns, s.snapshot_id)),
        );
    let mut newest: std::collections::BTreeMap<&str, (i64, SnapshotId)> = Default::default();
    for (job, t, id) in all {
        let Some(job) = job.filter(|j| jobs.contains(*j)) else {
            continue;
        };
        if t > now {
            continue;
        }
        let e = newest.entry(job).or_insert((t, id));
        if (t, id) > *e {
            *e = (t, id);
        }
    }
    for (job, (_, id)) in newest {
        out.push(Pinned {
            job: job.to_string(),
            id,
        });
    }
    out
}

/// Computes the plan, with calendar buckets in `tz`. An empty policy keeps everything. The
/// newest snapshot of each job of `pinned` (not dated after `now`) is wanted whatever the policy
/// and copied first; older snapshots of those jobs follow the policy.
pub fn plan(
    policy: &KeepPolicy,
    primary: &[SnapshotRecord],
    on_medium: &[MediumSnapshot],
    pinned: &BTreeSet<String>,
    now: i64,
    tz: &TimeZone,
) -> Plan {
    // Every candidate with its group; a snapshot in both lists counts once.
    let group = |host: &String, paths: &Vec<String>, job: &Option<String>| Group {
        host: host.clone(),
        paths: paths.clone(),
        job: job.clone(),
    };
    // `forget` names snapshots by their hex.
    let primary_hex: Vec<String> = primary.iter().map(|s| s.id.to_hex()).collect();
    let medium_hex: Vec<String> = on_medium.iter().map(|s| s.snapshot_id.to_hex()).collect();
    let candidates = primary
        .iter()
        .zip(&primary_hex)
        .map(|(s, id)| {
            let c = Candidate {
                id,
                time_ns: s.time_ns,
            };
            (group(&s.host, &s.paths, &s.job), c)
        })
        .chain(on_medium.iter().zip(&medium_hex).map(|(s, id)| {
            let c = Candidate {
                id,
                time_ns: s.time_ns,
            };
            (group(&s.host, &s.paths, &s.job), c)
        }));
    let mut wanted: HashSet<SnapshotId> = match forget::apply_by_group(policy, candidates, tz) {
        Ok(groups) => groups
            .into_iter()
            .flat_map(|(_, ds)| ds)
            .filter(|d| d.keep)
            .filter_map(|d| SnapshotId::from_hex(&d.id).ok())
            .collect(),
        Err(_) => primary
            .iter()
            .map(|s| s.id)
            .chain(on_medium.iter().map(|s| s.snapshot_id))
            .collect(),
    };
    let pinned = newest_pinned(pinned, primary, on_medium, now);
    let first: HashSet<SnapshotId> = pinned.iter().map(|p| p.id).collect();
    wanted.extend(first.iter().copied());
    let held: HashSet<&SnapshotId> = on_medium.iter().map(|s| &s.snapshot_id).collect();
    let mut add: Vec<SnapshotRecord> = primary
        .iter()
        .filter(|s| wanted.contains(&s.id) && !held.contains(&s.id))
        .cloned()
        .collect();
    // The pinned set first (space goes to it first), then newest first.
    add.sort_by(|a, b| {
        first
            .contains(&b.id)
            .cmp(&first.contains(&a.id))
            .then_with(|| b.time_ns.cmp(&a.time_ns))
            .then_with(|| a.id.cmp(&b.id))
    });
    add.dedup_by(|a, b| a.id == b.id);
    let remove = on_medium
        .iter()
        .filter(|s| !wanted.contains(&s.snapshot_id))
        .map(|s| s.snapshot_id)
        .collect();
    Plan {
        add,
        remove,
        wanted,
        pinned,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sid(name: &str) -> SnapshotId {
        SnapshotId::hash_of(name.as_bytes())
    }

    fn snap(id: &str, t: i64, host: &str) -> SnapshotRecord {
        job_snap(id, t, host, None)
    }

    fn job_snap(id: &str, t: i64, host: &str, job: Option<&str>) -> SnapshotRecord {
        SnapshotRecord {
            repo_id: bakfs_core::format::id::RepoId::hash_of(b"r"),
            id: sid(id),
            time: String::new(),
            time_ns: t,
            host: host.into(),
            paths: vec!["/etc".into()],
            tags: vec![],
            tree: bakfs_core::format::id::BlobId::hash_of(b"t"),
            parent: None,
            job: job.map(String::from),
            files: 0,
            bytes: 0,
        }
    }

    fn held(id: &str, t: i64) -> MediumSnapshot {
        job_held(id, t, None)
    }

    fn job_held(id: &str, t: i64, job: Option<&str>) -> MediumSnapshot {
        MediumSnapshot {
            snapshot_id: sid(id),
            time_ns: t,
            host: "a".into(),
            paths: vec!["/etc".into()],
            job: job.map(String::from),
            verified_ns: 0,
        }
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn ids(p: &Plan) -> Vec<SnapshotId> {
        p.add.iter().map(|s| s.id).collect()
    }

    #[test]
    fn keeps_the_newest_per_group_and_drops_the_rest() {
        let policy = KeepPolicy {
            last: Some(2),
            ..Default::default()
        };
        let primary = [
            snap("a1", 1, "a"),
            snap("a2", 2, "a"),
            snap("a3", 3, "a"),
            snap("b1", 1, "b"),
        ];
        // a0 was forgotten in the primary but is still on the medium; a2 is on both.
        let medium = [held("a0", 0), held("a2", 2)];
        let p = plan(&policy, &primary, &medium, &none(), 10, &TimeZone::UTC);
        let ids: Vec<SnapshotId> = p.add.iter().map(|s| s.id).collect();
        assert_eq!(ids, [sid("a3"), sid("b1")], "newest first, a2 already held");
        assert_eq!(p.remove, [sid("a0")]);
        assert!(p.wanted.contains(&sid("a2")) && !p.wanted.contains(&sid("a1")));
    }

    #[test]
    fn an_empty_policy_keeps_everything() {
        let p = plan(
            &KeepPolicy::default(),
            &[snap("a1", 1, "a")],
            &[held("a0", 0)],
            &none(),
            10,
            &TimeZone::UTC,
        );
        assert_eq!(p.add.len(), 1);
        assert!(p.remove.is_empty());
    }

    /// keep-last 1 keeps the newest of a group, which a clock set wrong can make a snapshot
    /// from the future: the pinned one is the newest not dated after now, kept all the same.
    #[test]
    fn the_newest_pinned_snapshot_is_wanted_whatever_the_policy_and_copied_first() {
        let policy = KeepPolicy {
            last: Some(1),
            ..Default::default()
        };
        let keys = Some("keys");
        let big = Some("big");
        let now = 100;
        let primary = [
            job_snap("k1", 10, "a", keys),
            job_snap("k2", 20, "a", keys),
            job_snap("k3", 200, "a", keys),
            job_snap("b1", 30, "a", big),
            job_snap("b2", 90, "a", big),
        ];
        let medium = [job_held("k1", 10, keys), job_held("b1", 30, big)];
        let pinned: BTreeSet<String> = ["keys".to_string()].into();
        let p = plan(&policy, &primary, &medium, &pinned, now, &TimeZone::UTC);
        assert_eq!(
            p.pinned,
            [Pinned {
                job: "keys".into(),
                id: sid("k2")
            }]
        );
        assert_eq!(p.pinned_job(&sid("k2")), Some("keys"));
        assert_eq!(
            ids(&p),
            [sid("k2"), sid("k3"), sid("b2")],
            "the pinned one first, though older; then newest first"
        );
        // Older pinned snapshots follow the policy.
        assert_eq!(p.remove, [sid("k1"), sid("b1")]);
        // Without the pin, k2 is not wanted at all.
        let p = plan(&policy, &primary, &medium, &none(), now, &TimeZone::UTC);
        assert_eq!(ids(&p), [sid("k3"), sid("b2")]);
        assert!(p.pinned.is_empty());
        // Once held, it is kept and not copied again; a newer one replaces it.
        let medium = [job_held("k2", 20, keys)];
        let p = plan(&policy, &primary, &medium, &pinned, now, &TimeZone::UTC);
        assert!(p.remove.is_empty() && p.wanted.contains(&sid("k2")));
        assert_eq!(ids(&p), [sid("k3"), sid("b2")]);
        let p = plan(&policy, &primary, &medium, &pinned, 300, &TimeZone::UTC);
        assert_eq!(p.pinned_job(&sid("k3")), Some("keys"));
        assert_eq!(
            (ids(&p), p.remove),
            (vec![sid("k3"), sid("b2")], vec![sid("k2")])
        );
    }

    #[test]
    fn the_newest_pinned_snapshot_may_be_one_only_the_medium_holds() {
        // Forgotten in the primary since: it stays, the pinned one of its job.
        let keys = Some("keys");
        let pinned: BTreeSet<String> = ["keys".to_string()].into();
        let primary = [job_snap("k1", 10, "a", keys)];
        let medium = [job_held("k2", 20, keys)];
        let p = plan(
            &KeepPolicy {
                last: Some(1),
                ..Default::default()
            },
            &primary,
            &medium,
            &pinned,
            100,
            &TimeZone::UTC,
        );
        assert_eq!(p.pinned_job(&sid("k2")), Some("keys"));
        assert!(p.add.is_empty() && p.remove.is_empty(), "{p:?}");
        // A job without snapshots pins nothing.
        let other: BTreeSet<String> = ["none".to_string()].into();
        assert!(newest_pinned(&other, &primary, &medium, 100).is_empty());
    }
}
