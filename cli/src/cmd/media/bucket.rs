//! `bakfs media enroll-bucket`: a bucket (or a prefix in one) in S3-compatible object storage
//! as a medium. Its identity is an object beside the copies, `<prefix>/medium.json`.

use anyhow::{bail, Result};
use bakfs_core::catalog::{MediumKind, MediumRecord};
use bakfs_core::format::id::MediumId;
use bakfs_core::medium;
use bakfs_core::repo::backend::{Backend, Location, S3Backend, S3Location};
use bakfs_core::timefmt;

use super::{catalog_for_new, enrolment, identity, medium_json};
use crate::args::EnrollBucketArgs;
use crate::context::Ctx;

/// Whether one of two locations in the same bucket is inside the other.
fn overlaps(a: &S3Location, b: &S3Location) -> bool {
    let inside = |p: &str, q: &str| p.is_empty() || q == p || q.starts_with(&format!("{p}/"));
    a.endpoint == b.endpoint
        && a.bucket == b.bucket
        && (inside(&a.prefix, &b.prefix) || inside(&b.prefix, &a.prefix))
}

pub(super) fn enroll(ctx: &Ctx, a: EnrollBucketArgs) -> Result<u8> {
    let loc: S3Location = a.url.parse().map_err(anyhow::Error::msg)?;
    if let Location::S3(primary) = ctx.location()? {
        if overlaps(&primary, &loc) {
            bail!("{loc} overlaps the primary repository {primary}: a medium is another place (another bucket, or a prefix beside the repository's)");
        }
    }
    let (repo_id, rotate_every, policy) = enrolment(ctx, a.rotate_every.as_deref(), &a.keep)?;
    let mut cat = catalog_for_new(ctx, &a.label, |m| {
        m.bucket
            .as_ref()
            .is_some_and(|b| overlaps(b, &loc))
            .then(|| format!("{loc} is already enrolled as {} (or overlaps it)", m.label))
    })?;
    let io = |e| bakfs_core::Error::io(&loc, e);
    let backend = S3Backend::connect(&loc)?;
    match backend.read_note(medium::IDENTITY) {
        Ok(raw) => {
            let what = match medium::parse_identity(&raw, medium::IDENTITY.as_ref()) {
                Ok(o) => format!(
                    "already enrolled as {} (medium {}, repository {}); `bakfs media forget` it and empty the prefix first",
                    o.label, o.medium_id, o.repo_id
                ),
                Err(e) => format!("a {} is already there ({e})", medium::IDENTITY),
            };
            bail!("{loc}: {what}");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e).into()),
    }
    // Creates the bucket when it is missing; refuses a prefix that holds anything.
    backend.create().map_err(io)?;
    let now = timefmt::now_ns();
    let medium_id = MediumId::random();
    let ident = identity(medium_id, &a.label, repo_id, now);
    // Create-only: of two enrolments racing into one prefix, one makes the medium.
    match backend.write_note_new(medium::IDENTITY, &serde_json::to_vec_pretty(&ident)?) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{e}: another enrolment wrote its identity there first")
        }
        Err(e) => return Err(io(e).into()),
    }
    let rec = MediumRecord {
        fs_type: "s3".into(),
        pool: a.pool.clone(),
        retention: policy,
        last_seen_ns: Some(now),
        rotate_every,
        bucket: Some(loc.clone()),
        ..MediumRecord::enrolled(
            medium_id,
            &a.label,
            repo_id,
            &MediumRecord::bucket_fs_uuid(&medium_id),
            MediumKind::ObjectStorage,
            a.location,
            now,
        )
    };
    if let Err(e) = cat.enroll_medium(&rec) {
        let _ = backend.remove_note(medium::IDENTITY);
        return Err(e.into());
    }
    if ctx.global.json {
        ctx.print_json(&medium_json(&cat, &rec)?)?;
    } else {
        println!(
            "enrolled {} (object storage {loc}, {}): bakfs-mediad copies every new snapshot there, with the access keys of its environment",
            rec.label, rec.location
        );
    }
    Ok(crate::exit::OK)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locations_in_one_bucket_overlap_when_one_holds_the_other() {
        let l = |s: &str| s.parse::<S3Location>().unwrap();
        let repo = l("s3:http://h:9000/bkt/repo");
        assert!(overlaps(&repo, &l("s3:http://h:9000/bkt/repo")));
        assert!(overlaps(&repo, &l("s3:http://h:9000/bkt/repo/copy")));
        assert!(overlaps(&repo, &l("s3:http://h:9000/bkt")));
        assert!(!overlaps(&repo, &l("s3:http://h:9000/bkt/repo-copy")));
        assert!(!overlaps(&repo, &l("s3:http://h:9000/other/repo")));
        assert!(!overlaps(&repo, &l("s3:http://h:9001/bkt/repo")));
    }
}
