//! Which snapshots a medium should hold: its retention policy applied to the primary's snapshots
//! together with those already on the medium, group by group (host, paths, job), as `bakfs
//! forget` does.

use std::collections::HashSet;

use bakfs_core::catalog::{MediumSnapshot, SnapshotRecord};
use bakfs_core::forget::{self, Candidate, Group, KeepPolicy};
use bakfs_core::timefmt::TimeZone;

/// What to do on a medium.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Snapshots to copy (in the primary, wanted, not yet verified on the medium), newest first.
    pub add: Vec<SnapshotRecord>,
    /// Snapshots on the medium that the policy no longer wants.
    pub remove: Vec<String>,
    /// Every wanted snapshot id.
    pub wanted: HashSet<String>,
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
    let candidates = primary
        .iter()
        .map(|s| {
            let c = Candidate {
                id: &s.id,
                time_ns: s.time_ns,
            };
            (group(&s.host, &s.paths, &s.job), c)
        })
        .chain(on_medium.iter().map(|s| {
            let c = Candidate {
                id: &s.snapshot_id,
                time_ns: s.time_ns,
            };
            (group(&s.host, &s.paths, &s.job), c)
        }));
    let wanted: HashSet<String> = match forget::apply_by_group(policy, candidates, tz) {
        Ok(groups) => groups
            .into_iter()
            .flat_map(|(_, ds)| ds)
            .filter(|d| d.keep)
            .map(|d| d.id)
            .collect(),
        Err(_) => primary
            .iter()
            .map(|s| s.id.clone())
            .chain(on_medium.iter().map(|s| s.snapshot_id.clone()))
            .collect(),
    };
    let held: HashSet<&str> = on_medium.iter().map(|s| s.snapshot_id.as_str()).collect();
    let mut add: Vec<SnapshotRecord> = primary
        .iter()
        .filter(|s| wanted.contains(&s.id) && !held.contains(s.id.as_str()))
        .cloned()
        .collect();
    add.sort_by(|a, b| b.time_ns.cmp(&a.time_ns).then_with(|| a.id.cmp(&b.id)));
    add.dedup_by(|a, b| a.id == b.id);
    let remove = on_medium
        .iter()
        .filter(|s| !wanted.contains(&s.snapshot_id))
        .map(|s| s.snapshot_id.clone())
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

    fn snap(id: &str, t: i64, host: &str) -> SnapshotRecord {
        SnapshotRecord {
            repo_id: "r".into(),
            id: id.into(),
            time: String::new(),
            time_ns: t,
            host: host.into(),
            paths: vec!["/etc".into()],
            tags: vec![],
            tree: String::new(),
            parent: None,
            job: None,
            files: 0,
            bytes: 0,
        }
    }

    fn held(id: &str, t: i64) -> MediumSnapshot {
        MediumSnapshot {
            snapshot_id: id.into(),
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
        let ids: Vec<&str> = p.add.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a3", "b1"], "newest first, a2 already held");
        assert_eq!(p.remove, ["a0"]);
        assert!(p.wanted.contains("a2") && !p.wanted.contains("a1"));
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
