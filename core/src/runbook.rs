//! The recovery runbook: a Markdown page, for the person who restores on a bad day, saying which
//! copies exist and the exact commands to bring each job back from each of them. It holds no
//! secret (no password, no key): `bakfs runbook` prints it from the configuration and the
//! catalog, and bakfs-mediad writes it onto every medium it updates (`<fs>/bakfs/RUNBOOK.md`).

use std::fmt::Write as _;

use crate::catalog::{
    Catalog, CatalogResult, DrillQuery, MediumRecord, MediumSnapshot, SnapshotRecord,
};
use crate::format::id::{MediumId, RepoId};
use crate::medium;
use crate::timefmt::{self, TimeZone};

/// A configured job, as the runbook shows it.
#[derive(Debug, Clone)]
pub struct JobSummary {
    pub name: String,
    /// What it backs up (paths, or what its command writes).
    pub sources: Vec<String>,
    pub rpo: Option<String>,
    /// `pin = true`: its newest snapshot is on every medium.
    pub pin: bool,
}

impl JobSummary {
    /// The jobs of a configuration.
    pub fn of_config(cfg: &crate::settings::Config) -> Vec<JobSummary> {
        cfg.jobs
            .iter()
            .map(|(name, j)| JobSummary {
                name: name.clone(),
                sources: match &j.command {
                    Some(c) => vec![format!("what `{c}` writes, as /{}", j.stdin_name(name))],
                    None => j.paths.iter().map(|p| p.display().to_string()).collect(),
                },
                rpo: j.rpo.clone(),
                pin: j.pin,
            })
            .collect()
    }
}

/// A restore rate a drill measured from one copy.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreRate {
    /// The medium drilled; `None`: the primary.
    pub medium: Option<MediumId>,
    pub bytes_per_second: f64,
    /// Seconds making the copy ready took (mounting, opening).
    pub ready_seconds: f64,
    /// When the drill ended.
    pub measured_ns: i64,
}

/// What the catalog holds for a runbook of `repo_id`: the primary's snapshots, the media with
/// what each holds, and the restore rates drills measured.
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub snapshots: Vec<SnapshotRecord>,
    pub media: Vec<(MediumRecord, Vec<MediumSnapshot>)>,
    pub rates: Vec<RestoreRate>,
}

impl Records {
    /// Reads them from `cat`.
    ///
    /// # Errors
    /// Catalog errors.
    pub fn gather(cat: &Catalog, repo_id: &RepoId) -> CatalogResult<Records> {
        let snapshots = cat.snapshots(repo_id)?;
        let mut media = Vec::new();
        for m in cat.media()? {
            if m.repo_id == *repo_id {
                let held = cat.medium_snapshots(&m.id)?;
                media.push((m, held));
            }
        }
        let mut rates = Vec::new();
        let sources = std::iter::once(None).chain(media.iter().map(|(m, _)| Some(m.id)));
        for source in sources {
            let q = DrillQuery {
                source: Some(source.as_ref()),
                measured: true,
                ..DrillQuery::default()
            };
            if let Some(d) = cat.newest_drill(repo_id, &q)? {
                if let Some(rate) = d.bytes_per_second() {
                    rates.push(RestoreRate {
                        medium: source,
                        bytes_per_second: rate,
                        ready_seconds: d.ready_seconds,
                        measured_ns: d.ended_ns.unwrap_or(d.started_ns),
                    });
                }
            }
        }
        Ok(Records {
            snapshots,
            media,
            rates,
        })
    }
}

/// What the runbook is made of.
pub struct Input<'a> {
    /// When it is written (Unix ns) and in which time zone it speaks.
    pub now_ns: i64,
    pub tz: &'a TimeZone,
    pub host: &'a str,
    /// The primary repository's location and id.
    pub repository: &'a str,
    pub repo_id: RepoId,
    /// Where the configuration reads the password from (a path, never its content).
    pub password_file: Option<&'a str>,
    pub jobs: &'a [JobSummary],
    /// The primary's snapshots, oldest first.
    pub snapshots: &'a [SnapshotRecord],
    /// Enrolled media of this repository with the snapshots each holds verified.
    pub media: &'a [(MediumRecord, Vec<MediumSnapshot>)],
    /// Restore rates measured by drills, per copy.
    pub rates: &'a [RestoreRate],
}

impl Input<'_> {
    /// The estimated time to restore `bytes` from `medium` (`None`: the primary), said in
    /// words with the drill that measured it, if one did.
    fn estimate(&self, medium: Option<&MediumId>, bytes: u64) -> Option<String> {
        let r = self.rates.iter().find(|r| r.medium.as_ref() == medium)?;
        let secs = r.ready_seconds + bytes as f64 / r.bytes_per_second;
        Some(format!(
            "about {} (measured by the drill of {})",
            human_seconds(secs),
            when(r.measured_ns, self.tz)
        ))
    }
}

/// `42 s`, `7 min`, `2.5 h`.
fn human_seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{:.0} s", s.max(1.0))
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

fn when(ns: i64, tz: &TimeZone) -> String {
    timefmt::format_local(ns, tz)
}

/// Where a medium is mounted in the commands (a path without spaces or odd characters).
fn mount_point(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("/mnt/{safe}")
}

/// How a medium's copy is reached from a shell: the lines that make it readable, where the
/// restore reads (`--repo …`, or a tape's `--drive …`), and the lines that put it away.
struct Access {
    before: String,
    source: String,
    /// Read through `bakfs tape restore`, which lists nothing beforehand.
    tape: bool,
    after: String,
}

impl Access {
    fn of(m: &MediumRecord) -> Access {
        let repo = |before: String, repo: &str, after: String| Access {
            before,
            source: format!("--repo {repo}"),
            tape: false,
            after,
        };
        if let Some(loc) = &m.bucket {
            let keys = "export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   # the bucket's keys (not in this runbook)\n";
            return repo(keys.into(), &loc.to_string(), String::new());
        }
        if m.tape.is_some() {
            return Access {
                before: format!(
                    "# load cartridge {} in the drive (/dev/nst0 here)\n",
                    m.label
                ),
                source: "--drive /dev/nst0".into(),
                tape: true,
                after: "mt -f /dev/nst0 offline\n".into(),
            };
        }
        if let Some(share) = &m.share {
            let path = share.path.display();
            let dir = format!("{path}/{}", medium::DIR);
            return match &share.mount {
                Some(mnt) => {
                    let opts = match mnt.options.as_str() {
                        "" => "ro".to_string(),
                        o => format!("ro,{o}"),
                    };
                    let mount = format!(
                        "mkdir -p {path}\nmount -t {} -o {opts} {} {path}\n",
                        m.fs_type, mnt.source
                    );
                    repo(mount, &dir, format!("umount {path}\n"))
                }
                None => {
                    let mount = format!(
                        "# mount the share ({}) on {path}, as the system does\n",
                        m.fs_type
                    );
                    repo(mount, &dir, String::new())
                }
            };
        }
        let mp = mount_point(&m.label);
        let mount = format!("mkdir -p {mp}\nmount -o ro UUID={} {mp}\n", m.fs_uuid);
        repo(
            mount,
            &format!("{mp}/{}", medium::DIR),
            format!("umount {mp}\n"),
        )
    }

    /// The restore command for `snapshot` into /srv/restore.
    fn restore(&self, snapshot: &str) -> String {
        let cmd = if self.tape {
            "bakfs tape restore"
        } else {
            "bakfs restore"
        };
        format!("{cmd} {snapshot} {} --target /srv/restore", self.source)
    }

    /// The command that lists its snapshots, with its newline; none for a tape.
    fn list(&self) -> String {
        if self.tape {
            String::new()
        } else {
            format!("bakfs snapshots {}\n", self.source)
        }
    }
}

/// The runbook, as Markdown.
pub fn render(i: &Input<'_>) -> String {
    let mut o = String::new();
    let short = &i.repo_id.to_hex()[..8];
    let _ = writeln!(o, "# Recovery runbook: {}, repository {short}\n", i.host);
    let _ = writeln!(
        o,
        "Written by `bakfs runbook` on {}. It holds no secret; keep a copy away from this \
         machine (on paper, with each medium), and write a new one after the media change.\n",
        when(i.now_ns, i.tz)
    );
    o.push_str("## What a restore needs\n\n");
    let _ = writeln!(
        o,
        "- **A copy**: the primary repository `{}` (id `{}`), or any one medium below: each \
         is a whole repository of the snapshots it holds.",
        i.repository,
        i.repo_id.to_hex()
    );
    let pw = match i.password_file {
        Some(p) => format!(" (this machine reads it from `{p}`: keep another copy elsewhere)"),
        None => String::new(),
    };
    let _ = writeln!(
        o,
        "- **A password** of the repository{pw}. The key wrappings it opens are in `keys/` of \
         the repository and of every medium; any one password opens any copy. Without any \
         password: the paper copy of the master key (`bakfs key export --paper`), typed back \
         with `bakfs key import --paper` to set a new password."
    );
    o.push_str(
        "- **bakfs** on the machine that restores (see the project's README); nothing else: \
         no catalog, no configuration.\n\n",
    );

    o.push_str("## Jobs\n\n");
    if i.jobs.is_empty() {
        o.push_str(
            "No job is configured; snapshots made by hand are listed under the copies below.\n\n",
        );
    }
    for job in i.jobs {
        let newest = i
            .snapshots
            .iter()
            .rev()
            .find(|s| s.job.as_deref() == Some(&job.name));
        let _ = writeln!(o, "### {}\n", job.name);
        let _ = writeln!(o, "- Backs up: {}", job.sources.join(", "));
        if let Some(r) = &job.rpo {
            let _ = writeln!(o, "- Recovery point objective: {r}");
        }
        if job.pin {
            o.push_str("- Pinned: bakfs-mediad copies its newest snapshot onto every medium, before anything else.\n");
        }
        let Some(s) = newest else {
            o.push_str("- **No snapshot yet.**\n\n");
            continue;
        };
        let id = &s.id.to_hex()[..8];
        let _ = writeln!(o, "- Newest snapshot: `{id}` of {}", when(s.time_ns, i.tz));
        let holders: Vec<&MediumRecord> = i
            .media
            .iter()
            .filter(|(_, held)| held.iter().any(|h| h.snapshot_id == s.id))
            .map(|(m, _)| m)
            .collect();
        let copies: Vec<String> = std::iter::once("the primary".to_string())
            .chain(
                holders
                    .iter()
                    .map(|m| format!("{} ({}, {})", m.label, m.kind, m.location)),
            )
            .collect();
        let _ = writeln!(o, "- Verified copies of it: {}", copies.join(", "));
        let estimates: Vec<String> = std::iter::once((None, "the primary"))
            .chain(holders.iter().map(|m| (Some(&m.id), m.label.as_str())))
            .filter_map(|(id, name)| Some(format!("from {name} {}", i.estimate(id, s.bytes)?)))
            .collect();
        if estimates.is_empty() {
            o.push_str("- Restore time: not measured yet (`bakfs drill` measures it)\n\n");
        } else {
            let _ = writeln!(o, "- Restore time: {}\n", estimates.join("; "));
        }
        let _ = writeln!(
            o,
            "From the primary:\n\n```sh\nbakfs restore {id} --repo {} --target /srv/restore\n```\n",
            i.repository
        );
        for m in holders {
            let _ = writeln!(
                o,
                "From {} alone (see its section below for reaching it):\n\n```sh\n{}\n```\n",
                m.label,
                Access::of(m).restore(id)
            );
        }
    }

    o.push_str("## Media\n\n");
    if i.media.is_empty() {
        o.push_str("No medium is enrolled: the primary is the only copy.\n\n");
    }
    for (m, held) in i.media {
        let _ = writeln!(o, "### {}\n", m.label);
        let what = match (&m.bucket, &m.share, &m.tape) {
            (Some(loc), _, _) => format!("bucket `{loc}`"),
            (_, Some(s), _) => format!("share on `{}` ({})", s.path.display(), m.fs_type),
            (_, _, Some(_)) => "a tape cartridge".to_string(),
            _ => format!("filesystem {} with UUID `{}`", m.fs_type, m.fs_uuid),
        };
        let _ = writeln!(
            o,
            "- {} in pool {}, kept {}; {what}",
            m.kind, m.pool, m.location
        );
        let seen = |t: Option<i64>| t.map_or("never".to_string(), |t| when(t, i.tz));
        let _ = writeln!(
            o,
            "- Last written {}; every file on it last read back right at {}",
            seen(m.last_written_ns),
            seen(m.last_verified_ns)
        );
        match held.iter().max_by_key(|s| s.time_ns) {
            Some(n) => {
                let _ = writeln!(
                    o,
                    "- Holds {} snapshots; the newest `{}` of {}\n",
                    held.len(),
                    &n.snapshot_id.to_hex()[..8],
                    when(n.time_ns, i.tz)
                );
            }
            None => o.push_str("- Holds no snapshot yet\n\n"),
        }
        if let Some(r) = i.rates.iter().find(|r| r.medium == Some(m.id)) {
            let _ = writeln!(
                o,
                "Measured restore rate: {:.1} MiB/s, ready in {:.1} s (the drill of {}).\n",
                r.bytes_per_second / f64::from(1u32 << 20),
                r.ready_seconds,
                when(r.measured_ns, i.tz)
            );
        }
        let a = Access::of(m);
        let _ = writeln!(
            o,
            "```sh\n{}{}{}   # or an id\n{}```\n",
            a.before,
            a.list(),
            a.restore("latest"),
            a.after
        );
    }
    o.push_str(
        "## After a restore\n\n\
         Check what came back (`bakfs restore … --verify` reads every restored file again), then \
         make a new backup and let the media rotate as usual.\n",
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MediumKind, MediumLocation, MediumState};
    use crate::format::id::{BlobId, MediumId, SnapshotId};

    fn snap(repo: RepoId, job: &str, t: i64, fill: u8) -> SnapshotRecord {
        SnapshotRecord {
            repo_id: repo,
            id: SnapshotId([fill; 32]),
            time: String::new(),
            time_ns: t,
            host: "node".into(),
            paths: vec!["/etc".into()],
            tags: vec![],
            tree: BlobId([0; 32]),
            parent: None,
            job: Some(job.into()),
            files: 1,
            bytes: 1,
        }
    }

    /// What a medium holding only `s` (of job `keys`) records of it.
    fn holding(s: &SnapshotRecord) -> Vec<MediumSnapshot> {
        vec![MediumSnapshot {
            snapshot_id: s.id,
            time_ns: s.time_ns,
            host: "node".into(),
            paths: vec!["/etc".into()],
            job: Some("keys".into()),
            verified_ns: 2_000_000_000,
        }]
    }

    #[test]
    fn names_every_copy_and_the_commands_and_no_secret() {
        let repo = RepoId::random();
        let old = snap(repo, "keys", 1_000_000_000, 0x11);
        let new = snap(repo, "keys", 2_000_000_000, 0x22);
        let medium = MediumRecord {
            fs_type: "ext4".into(),
            last_written_ns: Some(2_000_000_000),
            last_verified_ns: Some(2_000_000_000),
            state: MediumState::SafeToRemove,
            ..MediumRecord::enrolled(
                MediumId::random(),
                "OFFSITE 1",
                repo,
                "1234-abcd",
                MediumKind::Usb,
                MediumLocation::Offsite,
                0,
            )
        };
        let held = holding(&new);
        let jobs = [
            JobSummary {
                name: "keys".into(),
                sources: vec!["/var/lib/node/staking".into()],
                rpo: Some("1d".into()),
                pin: true,
            },
            JobSummary {
                name: "db".into(),
                sources: vec!["pg_dump".into()],
                rpo: None,
                pin: false,
            },
        ];
        let rates = [RestoreRate {
            medium: Some(medium.id),
            bytes_per_second: f64::from(1u32 << 20),
            ready_seconds: 2.0,
            measured_ns: 2_500_000_000,
        }];
        let media = [(medium, held)];
        let snaps = [old, new];
        let text = render(&Input {
            now_ns: 3_000_000_000,
            tz: &TimeZone::UTC,
            host: "node",
            repository: "/var/lib/bakfs/repo",
            repo_id: repo,
            password_file: Some("/etc/bakfs/password"),
            jobs: &jobs,
            snapshots: &snaps,
            media: &media,
            rates: &rates,
        });
        for want in [
            "Newest snapshot: `22222222`",
            "Verified copies of it: the primary, OFFSITE 1 (usb, offsite)",
            "bakfs restore 22222222 --repo /var/lib/bakfs/repo --target /srv/restore",
            "bakfs restore 22222222 --repo /mnt/offsite-1/bakfs --target /srv/restore",
            "mount -o ro UUID=1234-abcd /mnt/offsite-1",
            "### db\n\n- Backs up: pg_dump\n- **No snapshot yet.**",
            "- Recovery point objective: 1d\n- Pinned: bakfs-mediad copies its newest snapshot onto every medium",
            "reads it from `/etc/bakfs/password`",
            "- Restore time: from OFFSITE 1 about 2 s (measured by the drill of 1970-01-01",
            "Measured restore rate: 1.0 MiB/s, ready in 2.0 s",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(
            !text.contains("11111111"),
            "an old snapshot is not the newest"
        );
    }

    #[test]
    fn each_kind_of_medium_is_reached_its_own_way() {
        let repo = RepoId::random();
        let new = snap(repo, "keys", 2_000_000_000, 0x22);
        let rec = |label: &str, kind| MediumRecord {
            fs_type: "ext4".into(),
            ..MediumRecord::enrolled(
                MediumId::random(),
                label,
                repo,
                "uuid",
                kind,
                MediumLocation::Offsite,
                0,
            )
        };
        let bucket = MediumRecord {
            bucket: Some("s3:https://s3.example.net/offsite/host-a".parse().unwrap()),
            fs_type: "s3".into(),
            ..rec("CLOUD-1", MediumKind::ObjectStorage)
        };
        let share = MediumRecord {
            share: Some(crate::catalog::Share {
                path: "/mnt/nas".into(),
                mount: Some(crate::catalog::ShareMount {
                    source: "nas:/export/backup".into(),
                    options: "vers=4.2".into(),
                }),
            }),
            fs_type: "nfs4".into(),
            ..rec("NAS-1", MediumKind::Share)
        };
        let media = [(bucket, holding(&new)), (share, holding(&new))];
        let text = render(&Input {
            now_ns: 3_000_000_000,
            tz: &TimeZone::UTC,
            host: "node",
            repository: "/var/lib/bakfs/repo",
            repo_id: repo,
            password_file: None,
            jobs: &[JobSummary {
                name: "keys".into(),
                sources: vec!["/etc".into()],
                rpo: None,
                pin: false,
            }],
            snapshots: &[new],
            media: &media,
            rates: &[],
        });
        for want in [
            "bakfs restore 22222222 --repo s3:https://s3.example.net/offsite/host-a --target /srv/restore",
            "object storage in pool default, kept offsite; bucket `s3:https://s3.example.net/offsite/host-a`",
            "export AWS_ACCESS_KEY_ID=",
            "bakfs restore 22222222 --repo /mnt/nas/bakfs --target /srv/restore",
            "mount -t nfs4 -o ro,vers=4.2 nas:/export/backup /mnt/nas",
            "umount /mnt/nas",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        assert!(
            !text.contains("UUID="),
            "no medium here has a filesystem UUID:\n{text}"
        );
    }
}
