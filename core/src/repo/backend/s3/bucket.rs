//! The bucket itself: whether it is there and what is at the location, its creation, and the
//! objects a bucket enrolled as a medium holds beside the repository (its identity, ledger and
//! runbook: [`crate::medium`]).

use std::io;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::S3Backend;

/// What is at the location.
pub(super) enum Occupancy {
    NoBucket,
    Empty,
    Used,
}

/// Largest note read (an identity is at most 64 KiB; a ledger grows with the runs kept).
const NOTE_MAX: u64 = 16 << 20;

impl S3Backend {
    /// Whether the bucket exists (a listing of one page at the location's prefix).
    pub(super) fn bucket_state(&self) -> io::Result<Occupancy> {
        self.count(&self.counts.list);
        let prefix = self.dir_or_root();
        let mut s = self.store.list(prefix.as_ref());
        let first = self.rt.block_on(s.next());
        match first {
            None => Ok(Occupancy::Empty),
            Some(Ok(_)) => Ok(Occupancy::Used),
            // A listing's 404 comes back as a generic error; S3's code for it is stable.
            Some(Err(e)) if e.to_string().contains("NoSuchBucket") => Ok(Occupancy::NoBucket),
            Some(Err(object_store::Error::NotFound { .. })) => Ok(Occupancy::NoBucket),
            Some(Err(e)) => Err(self.err("listing", &prefix.unwrap_or_default(), e)),
        }
    }

    fn dir_or_root(&self) -> Option<ObjPath> {
        (!self.loc.prefix.is_empty()).then(|| ObjPath::from(self.loc.prefix.as_str()))
    }

    /// Creates the bucket (a signed `PUT /BUCKET`; object_store has no call for it).
    pub(super) fn create_bucket(&self) -> io::Result<()> {
        let url = if self.virtual_host {
            let (scheme, host) = self.loc.endpoint.split_once("://").unwrap_or(("https", ""));
            format!("{scheme}://{}.{host}/", self.loc.bucket)
        } else {
            format!("{}/{}", self.loc.endpoint, self.loc.bucket)
        };
        let body = if self.region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        };
        let mut req = http::Request::put(&url)
            .body(object_store::client::HttpRequestBody::from(body.clone()))
            .map_err(io::Error::other)?;
        let cred = AwsCredential {
            key_id: self.creds.key_id.clone(),
            secret_key: self.creds.secret.clone(),
            token: self.creds.token.clone(),
        };
        AwsAuthorizer::new(&cred, "s3", &self.region)
            .try_authorize(&mut req, None)
            .map_err(|e| io::Error::other(format!("signing the bucket's creation: {e}")))?;
        let (parts, _) = req.into_parts();
        let req = http::Request::from_parts(parts, body);
        self.count(&self.counts.put);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let mut resp = agent
            .run(req)
            .map_err(|e| io::Error::other(format!("creating bucket {url}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let kind = match status.as_u16() {
            401 | 403 => io::ErrorKind::PermissionDenied,
            409 => io::ErrorKind::AlreadyExists,
            _ => io::ErrorKind::Other,
        };
        Err(io::Error::new(
            kind,
            format!("creating bucket {url}: HTTP {status}: {}", text.trim()),
        ))
    }

    /// The key of a note: a plain name at the location's root, never one of the repository's.
    fn note_key(&self, name: &str) -> io::Result<ObjPath> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !plain || name == "config" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not a note's name"),
            ));
        }
        let rel = match self.loc.prefix.as_str() {
            "" => name.to_string(),
            p => format!("{p}/{name}"),
        };
        Ok(ObjPath::from(rel))
    }

    /// Reads the note `name` (`medium.json`, `ledger.json`, `RUNBOOK.md`) beside the
    /// repository.
    ///
    /// # Errors
    /// `NotFound` when there is none; a note larger than 16 MiB; the server's errors.
    pub fn read_note(&self, name: &str) -> io::Result<Vec<u8>> {
        let key = self.note_key(name)?;
        self.count(&self.counts.get);
        let got = self.rt.block_on(async {
            let r = self.store.get(&key).await?;
            if r.meta.size > NOTE_MAX {
                return Ok(None);
            }
            r.bytes().await.map(Some)
        });
        match got {
            Ok(Some(b)) => Ok(b.to_vec()),
            Ok(None) => Err(io::Error::other(format!(
                "{key}: larger than {NOTE_MAX} bytes: not a bakfs note"
            ))),
            Err(e) => Err(self.err("reading", &key, e)),
        }
    }

    /// Writes the note `name` beside the repository (one PUT: whole or not at all).
    ///
    /// # Errors
    /// The server's errors.
    pub fn write_note(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let key = self.note_key(name)?;
        self.count(&self.counts.put);
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(bytes));
        self.rt
            .block_on(self.store.put(&key, payload))
            .map(|_| ())
            .map_err(|e| self.err("writing", &key, e))
    }

    /// As [`S3Backend::write_note`], for a note that must not exist yet (a medium's identity):
    /// create-only where the server honours it.
    ///
    /// # Errors
    /// `AlreadyExists`; the server's errors.
    pub fn write_note_new(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let key = self.note_key(name)?;
        self.put_new(&key, bytes)
    }

    /// Removes the note `name`; one that is not there is no error.
    ///
    /// # Errors
    /// The server's errors.
    pub fn remove_note(&self, name: &str) -> io::Result<()> {
        let key = self.note_key(name)?;
        self.count(&self.counts.delete);
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("removing", &key, e)),
        }
    }
}
