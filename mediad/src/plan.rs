//! Which snapshots a medium should hold: its retention policy applied to the primary's snapshots
//! together with those already on the medium, group by group (host, paths, job), as `bakfs
//! forget` does.

use std::collections::HashSet;

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
}

/// Computes the plan, with calendar buckets in `tz`. An empty policy keeps everything.
pub fn plan(
    policy: &KeepPolicy,
    primary: &[SnapshotRecord],
    on_medium: &[MediumSnapshot],
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
    let wanted: HashSet<SnapshotId> = match forget::apply_by_group(policy, candidates, tz) {
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
    let held: HashSet<&SnapshotId> = on_medium.iter().map(|s| &s.snapshot_id).collect();
    let mut add: Vec<SnapshotRecord> = primary
        .iter()
        .filter(|s| wanted.contains(&s.id) && !held.contains(&s.id))
        .cloned()
        .collect();
    add.sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then_with(|| a.id.cmp(&b.id)));
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
            job: None,
            files: 0,
            bytes: 0,
        }
    }

    fn held(id: &str, t: i64) -> MediumSnapshot {
        MediumSnapshot {
            snapshot_id: sid(id),
            time_ns: t,
            host: "a".into(),
            paths: vec!["/etc".into()],
            job: None,
            verified_ns: 0,
        }
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
        let p = plan(&policy, &primary, &medium, &TimeZone::UTC);
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
            &TimeZone::UTC,
        );
        assert_eq!(p.add.len(), 1);
        assert!(p.remove.is_empty());
    }
}
