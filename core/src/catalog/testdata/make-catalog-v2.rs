// Not compiled. The test module appended to core/src/catalog/mod.rs at commit bf96d72 to write
// catalog-v2.db and catalog-v2.json (run with `BAKFS_FIXTURE_DIR=DIR cargo test -p bakfs-core
// --lib make_fixture -- --ignored`). catalog-v2.sql is that catalog-v2.db dumped by
//   c = sqlite3.connect('catalog-v2.db'); lines = list(c.iterdump())
//   + ['PRAGMA user_version=%d;' % c.execute('pragma user_version').fetchone()[0]]
// with a comment on top.

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod make_fixture {
    use super::*;
    use crate::format::id::{BlobId, MediumId, PackId, RepoId, SnapshotId};

    /// Writes a catalog with every value the code of this version stores, and the JSON of its
    /// records, into $BAKFS_FIXTURE_DIR.
    #[test]
    #[ignore]
    fn write_fixture() {
        let dir = std::path::PathBuf::from(std::env::var("BAKFS_FIXTURE_DIR").unwrap());
        let db = dir.join("catalog-v2.db");
        let _ = std::fs::remove_file(&db);
        let mut c = Catalog::open(&db).unwrap();
        let repo = RepoId::hash_of(b"repo").to_hex();
        let t0 = 1_780_000_000_000_000_000i64;
        c.touch_repository(&repo, "/srv/bakfs", t0).unwrap();
        let s1 = SnapshotId::hash_of(b"s1").to_hex();
        let s2 = SnapshotId::hash_of(b"s2").to_hex();
        let p1 = PackId::hash_of(b"p1").to_hex();
        let p2 = PackId::hash_of(b"p2").to_hex();
        let snap = |id: &str, t: i64, parent: Option<String>| SnapshotRecord {
            repo_id: repo.clone(),
            id: id.into(),
            time: crate::timefmt::format_rfc3339(t),
            time_ns: t,
            host: "host1".into(),
            paths: vec!["/etc".into(), "/home/a \"b\"".into()],
            tags: vec!["daily".into()],
            tree: BlobId::hash_of(id.as_bytes()).to_hex(),
            parent,
            job: Some("etc".into()),
            files: 12,
            bytes: 3456,
        };
        let rec1 = snap(&s1, t0 + 1, None);
        let rec2 = snap(&s2, t0 + 2, Some(s1.clone()));
        c.record_snapshot(&rec1, &[PackRecord { id: p1.clone(), size: 100 }]).unwrap();
        c.record_snapshot(
            &rec2,
            &[PackRecord { id: p1.clone(), size: 100 }, PackRecord { id: p2.clone(), size: 200 }],
        )
        .unwrap();
        for (i, outcome) in ["ok", "incomplete", "failed"].into_iter().enumerate() {
            let r = c.begin_run(&repo, Some("etc"), t0 + 10 + i as i64).unwrap();
            c.finish_run(
                r,
                &RunOutcome {
                    ended_ns: t0 + 20 + i as i64,
                    outcome: outcome.into(),
                    files: 1,
                    bytes_read: 2,
                    bytes_added: 3,
                    snapshot_id: (outcome != "failed").then(|| s2.clone()),
                    message: (outcome != "ok").then(|| format!("{outcome} because")),
                },
            )
            .unwrap();
        }
        c.begin_run(&repo, None, t0 + 30).unwrap(); // left running
        let states = [
            "enrolled",
            "copying",
            "safe to remove",
            "removed during copy",
            "failed",
            "medium full",
            "refused",
        ];
        // As `bakfs media enroll` stores them: the JSON of a parsed policy.
        let within = |s| Some(crate::timefmt::parse_duration(s).unwrap());
        let retentions = [
            crate::forget::KeepPolicy { last: Some(3), ..Default::default() },
            crate::forget::KeepPolicy { daily: Some(7), within: within("30d"), ..Default::default() },
            crate::forget::KeepPolicy {
                last: Some(1),
                hourly: Some(2),
                daily: Some(3),
                weekly: Some(4),
                monthly: Some(5),
                yearly: Some(6),
                within: within("1y6m"),
            },
        ]
        .map(|p| serde_json::to_string(&p).unwrap());
        let mut first = None;
        for (i, state) in states.into_iter().enumerate() {
            let id = MediumId::hash_of(state.as_bytes()).to_hex();
            first.get_or_insert(id.clone());
            let m = MediumRecord {
                id: id.clone(),
                label: format!("M{i}"),
                repo_id: repo.clone(),
                fs_uuid: format!("uuid-{i}"),
                fs_type: "ext4".into(),
                serial: (i % 2 == 0).then(|| format!("SER{i}")),
                kind: if i % 2 == 0 { "usb" } else { "disk" }.into(),
                pool: "offsite".into(),
                location: if i % 3 == 0 { "onsite" } else { "offsite" }.into(),
                capacity: 1 << 30,
                retention: retentions[i % retentions.len()].clone(),
                enrolled_ns: t0,
                last_seen_ns: Some(t0),
                last_written_ns: None,
                last_verified_ns: None,
                state: "enrolled".into(),
                message: None,
                bytes: 0,
            };
            c.enroll_medium(&m).unwrap();
            if state != "enrolled" {
                c.set_medium_state(&id, state, Some(&format!("why {state}")), t0 + 40)
                    .unwrap();
            }
        }
        c.set_medium_location("M1", "onsite").unwrap();
        let m = first.unwrap();
        let file = |kind: &str, name: &str, size| MediumFile {
            kind: kind.into(),
            name: name.into(),
            size,
            verified_ns: t0 + 50,
        };
        let key = crate::format::id::KeyId::hash_of(b"k").to_hex();
        let index = crate::format::id::IndexId::hash_of(b"i").to_hex();
        c.record_medium_verified(
            &m,
            &[
                file("config", "config", 10),
                file("key", &key, 20),
                file("index", &index, 30),
                file("pack", &p1, 100),
                file("pack", &p2, 200),
                file("snapshot", &s2, 40),
            ],
            &[(
                MediumSnapshot {
                    snapshot_id: s2.clone(),
                    time_ns: rec2.time_ns,
                    host: rec2.host.clone(),
                    paths: rec2.paths.clone(),
                    job: rec2.job.clone(),
                    verified_ns: t0 + 50,
                },
                vec![p1.clone(), p2.clone()],
            )],
            true,
            t0 + 50,
        )
        .unwrap();
        let outcomes = [
            "ok",
            "incomplete",
            "failed",
            "refused",
            "medium full",
            "cancelled",
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let r = c.begin_medium_run(&m, t0 + 60 + i as i64).unwrap();
            c.finish_medium_run(&MediumRun {
                id: r,
                medium_id: m.clone(),
                started_ns: t0 + 60 + i as i64,
                ended_ns: Some(t0 + 70 + i as i64),
                outcome: outcome.into(),
                snapshots_added: 1,
                snapshots_removed: 2,
                files_written: 3,
                bytes_written: 4,
                bytes_verified: 5,
                seconds: 1.5,
                message: (outcome != "ok").then(|| format!("{outcome} because")),
            })
            .unwrap();
        }
        c.begin_medium_run(&m, t0 + 80).unwrap();
        c.abandon_medium_runs(t0 + 90).unwrap(); // interrupted
        c.begin_medium_run(&m, t0 + 100).unwrap(); // left running
        // The records as this version's serde shows them.
        let json = serde_json::json!({
            "snapshots": c.snapshots(&repo).unwrap(),
            "snapshot_packs": c.snapshot_packs(&repo, &s2).unwrap(),
            "runs": c.runs(&repo, 100).unwrap(),
            "medium_snapshots": c.medium_snapshots(&m).unwrap(),
            "medium_files": c.medium_files(&m).unwrap(),
            "medium_runs": c.medium_runs(&m, 100).unwrap(),
        });
        std::fs::write(
            dir.join("catalog-v2.json"),
            serde_json::to_string_pretty(&json).unwrap() + "\n",
        )
        .unwrap();
        drop(c);
    }
}
