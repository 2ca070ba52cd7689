//! A repository in an S3-compatible bucket (design.md §4.4): AWS S3, Ceph RGW, Garage, MinIO,
//! s3s-fs.
//!
//! Objects keep the local layout under the location's prefix (`config`, `keys/<id>`,
//! `data/<xx>/<id>`, …), so a bucket copied to a disk (or back) is a repository as it is. The
//! client is `object_store` on a tokio runtime this backend owns: the rest of bakfs calls it
//! synchronously. It signs requests, retries 5xx and throttling (429, 503 SlowDown) with
//! exponential backoff and jitter, pages listings, and caps the requests in flight.
//!
//! Durability: S3 makes an object visible only once its PUT (or multipart completion) succeeded,
//! so the contract of [`Backend::write`] holds. A failed multipart upload is aborted.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::limit::LimitStore;
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::{check_name, Backend, FileKind, ROOT_FILES};

mod bucket;
use bucket::Occupancy;

/// Requests in flight at most, over all threads.
const MAX_REQUESTS: usize = 16;
/// Pack uploads in flight at most (see [`Backend::write_concurrency`]): each holds a pack
/// (16 MiB), sent from the packer's own buffer ([`Backend::write_buf`]).
const UPLOADS: usize = 2;
/// Objects larger than this go up in parts (packs are 4–8 MiB, so this is rare).
const MULTIPART_ABOVE: usize = 32 << 20;
/// Part size of a multipart upload.
const PART_SIZE: usize = 16 << 20;

/// Where a repository is in object storage: `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http(s)://HOST[:PORT]`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Where the repository is in the bucket: `a/b`, or empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// Reads what follows `s3:`.
    ///
    /// # Errors
    /// A message naming what is wrong (scheme, host, bucket name, prefix).
    pub fn parse(rest: &str) -> Result<S3Location, String> {
        let usage = "write s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]";
        let (scheme, after) = rest
            .split_once("://")
            .ok_or_else(|| format!("s3:{rest}: no endpoint; {usage}"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "s3:{rest}: the endpoint must be http or https; {usage}"
            ));
        }
        let (host, path) = after.split_once('/').unwrap_or((after, ""));
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(format!("s3:{rest}: no usable host; {usage}"));
        }
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let bucket = parts
            .next()
            .ok_or_else(|| format!("s3:{rest}: no bucket; {usage}"))?
            .to_string();
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            return Err(format!(
                "s3:{rest}: {bucket:?} is not a bucket name (3-63 lowercase letters, digits, '-', '.')"
            ));
        }
        let prefix: Vec<&str> = parts.collect();
        for p in &prefix {
            let ok = *p != "."
                && *p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+=@".contains(&b));
            if !ok {
                return Err(format!(
                    "s3:{rest}: {p:?} is not allowed in a prefix (letters, digits, -_.+=@)"
                ));
            }
        }
        Ok(S3Location {
            endpoint: format!("{scheme}://{host}"),
            bucket,
            prefix: prefix.join("/"),
        })
    }

    /// The object key of a repository file.
    fn key(&self, kind: FileKind, name: &str) -> ObjPath {
        let rel = kind.rel_path(name);
        let rel = rel.to_string_lossy();
        if self.prefix.is_empty() {
            ObjPath::from(rel.as_ref())
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// The key prefix of a kind's directory (the repository's root for [`FileKind::Config`]).
    fn dir(&self, kind: FileKind) -> Option<ObjPath> {
        let parts: Vec<&str> = [self.prefix.as_str(), kind.dir()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| ObjPath::from(parts.join("/")))
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3:{}/{}", self.endpoint, self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for S3Location {
    type Err = String;

    /// `s3:http(s)://HOST[:PORT]/BUCKET[/PREFIX]`, as [`fmt::Display`] writes it.
    fn from_str(s: &str) -> Result<S3Location, String> {
        let rest = s
            .strip_prefix("s3:")
            .ok_or_else(|| format!("{s}: not an s3: location"))?;
        S3Location::parse(rest)
    }
}

impl serde::Serialize for S3Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What the configuration file says of S3 (`[s3]`), for the connections this process makes.
static CONFIGURED: std::sync::OnceLock<crate::settings::S3> = std::sync::OnceLock::new();

/// Takes the configuration's `[s3]` for every connection made after (the first call wins: a
/// process reads one configuration).
pub fn configure(s3: &crate::settings::S3) {
    let _ = CONFIGURED.set(s3.clone());
}

fn configured() -> Option<&'static crate::settings::S3> {
    CONFIGURED.get()
}

/// An environment variable, if set and not empty.
fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Access keys, from the environment, the configuration or a shared credentials file.
#[derive(Clone)]
pub struct S3Credentials {
    key_id: String,
    secret: String,
    token: Option<String>,
    /// Where they came from, for the message when the server refuses them.
    from: String,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Credentials({} from {})", self.key_id, self.from)
    }
}

impl S3Credentials {
    /// Keys given as they are (a caller that has them from elsewhere).
    pub fn new(key_id: impl Into<String>, secret: impl Into<String>) -> S3Credentials {
        S3Credentials {
            key_id: key_id.into(),
            secret: secret.into(),
            token: None,
            from: "the keys given".into(),
        }
    }

    /// The first of: `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`);
    /// the configuration's `[s3] access_key_id` and `secret_access_key_file` ([`configure`]);
    /// the profile `AWS_PROFILE` (or `default`) of `AWS_SHARED_CREDENTIALS_FILE` (or
    /// `~/.aws/credentials`).
    ///
    /// # Errors
    /// No credentials anywhere, an unreadable file, a profile without both keys.
    pub fn find() -> Result<S3Credentials, String> {
        if let (Some(key_id), Some(secret)) =
            (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        {
            return Ok(S3Credentials {
                key_id,
                secret,
                token: var("AWS_SESSION_TOKEN"),
                from: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            });
        }
        if let Some((key_id, file)) = configured().and_then(|c| {
            c.access_key_id
                .clone()
                .zip(c.secret_access_key_file.clone())
        }) {
            return Self::from_secret_file(key_id, &file);
        }
        let file = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let none = "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                    [s3] access_key_id and secret_access_key_file in the configuration, or a \
                    profile in ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE)";
        let Some(file) = file else {
            return Err(none.into());
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(none.into()),
            Err(e) => return Err(format!("{}: {e}", file.display())),
        };
        let mut creds = Self::from_profile(&text, &profile).ok_or_else(|| {
            format!(
                "{}: no profile [{profile}] with aws_access_key_id and aws_secret_access_key",
                file.display()
            )
        })?;
        creds.from = format!("the profile [{profile}] of {}", file.display());
        Ok(creds)
    }

    /// `key_id` with the secret on the first line of `file` (the configuration's keys).
    fn from_secret_file(key_id: String, file: &std::path::Path) -> Result<S3Credentials, String> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(file)
                .map_err(|e| format!("[s3] secret_access_key_file {}: {e}", file.display()))?,
        );
        let secret = text.lines().next().unwrap_or("").trim().to_string();
        if secret.is_empty() {
            return Err(format!(
                "[s3] secret_access_key_file {}: the first line is empty",
                file.display()
            ));
        }
        Ok(S3Credentials {
            key_id,
            secret,
            token: None,
            from: format!(
                "[s3] access_key_id and secret_access_key_file {} in the configuration",
                file.display()
            ),
        })
    }

    /// The keys of `[profile]` in an AWS shared credentials file.
    fn from_profile(text: &str, profile: &str) -> Option<S3Credentials> {
        let (mut key_id, mut secret, mut token) = (None, None, None);
        let mut inside = false;
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                inside = name.trim() == profile;
                continue;
            }
            let Some((k, v)) = line.split_once('=').filter(|_| inside) else {
                continue;
            };
            let v = Some(v.trim().to_string());
            match k.trim() {
                "aws_access_key_id" => key_id = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
        Some(S3Credentials {
            key_id: key_id?,
            secret: secret?,
            token,
            from: format!("the profile [{profile}]"),
        })
    }
}

/// Requests made, by verb, for measurements (`-v` logs them when the backend is dropped).
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// GET (whole objects and ranges).
    pub get: AtomicU64,
    /// PUT (objects, parts).
    pub put: AtomicU64,
    /// LIST pages asked for (one per listing call; object_store pages on).
    pub list: AtomicU64,
    /// HEAD.
    pub head: AtomicU64,
    /// DELETE.
    pub delete: AtomicU64,
}

/// A repository in an S3-compatible bucket.
pub struct S3Backend {
    loc: S3Location,
    store: LimitStore<AmazonS3>,
    creds: S3Credentials,
    region: String,
    virtual_host: bool,
    counts: RequestCounts,
    /// Whether the server refuses a create-only PUT of an existing name, once asked.
    conditional: std::sync::OnceLock<bool>,
    /// Last: dropped after the store, whose connections live on it.
    rt: tokio::runtime::Runtime,
}

impl S3Backend {
    /// A client for `loc` with `creds`. The region is `AWS_REGION` (or `AWS_DEFAULT_REGION`,
    /// else the configuration's `[s3] region`, else `us-east-1`); requests are path-style unless
    /// `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` is `true` (or, without it, the configuration's
    /// `virtual_hosted_style`).
    ///
    /// # Errors
    /// A client that cannot be built (bad endpoint, no TLS roots).
    pub fn new(loc: S3Location, creds: S3Credentials) -> io::Result<S3Backend> {
        // reqwest's rustls is built without a default crypto provider: ring, which ureq's
        // rustls already uses (deprecated in rustls for its lack of post-quantum key exchange;
        // aws-lc has it, but builds C with cmake). A second install is refused and harmless.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| configured().and_then(|c| c.region.clone()))
            .unwrap_or_else(|| "us-east-1".into());
        let virtual_host = match var("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") {
            Some(v) => v == "true",
            None => configured().is_some_and(|c| c.virtual_hosted_style),
        };
        let mut b = AmazonS3Builder::new()
            .with_endpoint(&loc.endpoint)
            .with_bucket_name(&loc.bucket)
            .with_region(&region)
            .with_access_key_id(&creds.key_id)
            .with_secret_access_key(&creds.secret)
            // Client options first: allow_http is one of them.
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300)),
            )
            .with_allow_http(loc.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(virtual_host)
            .with_retry(RetryConfig::default());
        if let Some(t) = &creds.token {
            b = b.with_token(t);
        }
        let store = b
            .build()
            .map_err(|e| io::Error::other(format!("{loc}: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bakfs-s3")
            .enable_all()
            .build()?;
        Ok(S3Backend {
            loc,
            store: LimitStore::new(store, MAX_REQUESTS),
            creds,
            region,
            virtual_host,
            counts: RequestCounts::default(),
            conditional: std::sync::OnceLock::new(),
            rt,
        })
    }

    /// A client for `loc` with the credentials of the environment, the configuration or a
    /// credentials file ([`S3Credentials::find`]): what every command and bakfs-mediad use.
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] without credentials; an I/O error naming the location when
    /// the client cannot be built.
    pub fn connect(loc: &S3Location) -> crate::Result<S3Backend> {
        let creds = S3Credentials::find().map_err(crate::Error::Invalid)?;
        S3Backend::new(loc.clone(), creds).map_err(|e| crate::Error::io(loc.to_string(), e))
    }

    /// Whether the server honours create-only writes (`If-None-Match: *`), asked once per
    /// process: a scratch object in `locks/` is written create-only twice, then removed. A
    /// server that refuses the second write honours them; one that takes it, or refuses the
    /// header, does not (and an error asking counts as not).
    pub fn honours_create_only(&self) -> bool {
        *self
            .conditional
            .get_or_init(|| match self.probe_create_only() {
                Ok(yes) => {
                    tracing::info!(
                        "{}: the server {} create-only writes (If-None-Match: *)",
                        self.loc,
                        if yes { "honours" } else { "does not honour" }
                    );
                    yes
                }
                Err(e) => {
                    tracing::warn!("{}: asking for create-only writes failed: {e}", self.loc);
                    false
                }
            })
    }

    /// Writes `key`, which must not exist yet: one create-only PUT where the server honours
    /// them, else a HEAD and then a PUT (two writers racing between them may both succeed).
    ///
    /// # Errors
    /// `AlreadyExists`; the server's errors.
    fn put_new(&self, key: &ObjPath, data: &[u8]) -> io::Result<()> {
        let there = || {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: {key} is already there", self.loc),
            )
        };
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
        let opts = if self.honours_create_only() {
            PutOptions::from(PutMode::Create)
        } else {
            self.count(&self.counts.head);
            match self.rt.block_on(self.store.head(key)) {
                Ok(_) => return Err(there()),
                Err(object_store::Error::NotFound { .. }) => PutOptions::default(),
                Err(e) => return Err(self.err("looking for", key, e)),
            }
        };
        self.count(&self.counts.put);
        match self.rt.block_on(self.store.put_opts(key, payload, opts)) {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(there()),
            Err(e) => Err(self.err("writing", key, e)),
        }
    }

    fn probe_create_only(&self) -> io::Result<bool> {
        let name = format!("{:032x}", rand::random::<u128>());
        let key = self.loc.key(FileKind::Lock, &name);
        let put = || {
            self.count(&self.counts.put);
            let payload = PutPayload::from_static(b"bakfs: asking for create-only writes\n");
            let opts = PutOptions::from(PutMode::Create);
            self.rt
                .block_on(self.store.put_opts(&key, payload, opts))
                .map(|_| ())
        };
        use object_store::Error as E;
        match put() {
            Ok(()) => {}
            // A server without conditional PUTs wrote nothing.
            Err(E::NotImplemented { .. }) => return Ok(false),
            Err(e) => return Err(self.err("writing", &key, e)),
        }
        let second = put();
        self.count(&self.counts.delete);
        let _ = self.rt.block_on(self.store.delete(&key));
        match second {
            Err(E::AlreadyExists { .. } | E::Precondition { .. }) => Ok(true),
            Ok(()) => Ok(false),
            Err(e) => Err(self.err("writing", &key, e)),
        }
    }

    /// The error of a prefix that holds objects already.
    fn used(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{}: a repository or other objects are already there",
                self.loc
            ),
        )
    }

    /// The location.
    pub fn s3_location(&self) -> &S3Location {
        &self.loc
    }

    /// The requests made so far.
    pub fn counts(&self) -> &RequestCounts {
        &self.counts
    }

    fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// An object_store error as an I/O error that says what was asked and what the server
    /// answered; refused credentials are `PermissionDenied`.
    fn err(&self, what: &str, key: &ObjPath, e: object_store::Error) -> io::Error {
        use object_store::Error as E;
        let kind = match &e {
            E::NotFound { .. } => io::ErrorKind::NotFound,
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
                io::ErrorKind::PermissionDenied
            }
            E::AlreadyExists { .. } | E::Precondition { .. } => io::ErrorKind::AlreadyExists,
            _ => io::ErrorKind::Other,
        };
        let hint = if kind == io::ErrorKind::PermissionDenied {
            format!(
                " (the server refused access key {:?}: check {}, and the bucket's policy)",
                self.creds.key_id, self.creds.from
            )
        } else {
            String::new()
        };
        io::Error::new(kind, format!("{what} {key}: {e}{hint}"))
    }

    /// The files of `kind` at the location with their sizes, sorted by name: one listing (S3
    /// pages it by 1,000), not a HEAD per object. Only what is where the kind's files live
    /// (`data/<xx>/<id>`, `index/<id>`, the root's known names) is listed.
    ///
    /// # Errors
    /// The server's errors.
    pub fn list_sized(&self, kind: FileKind) -> io::Result<Vec<(String, u64)>> {
        let dir = self.loc.dir(kind);
        self.count(&self.counts.list);
        let listed = self.rt.block_on(async {
            if kind == FileKind::Config {
                return Ok(self.store.list_with_delimiter(dir.as_ref()).await?.objects);
            }
            let mut out = Vec::new();
            let mut s = self.store.list(dir.as_ref());
            while let Some(m) = s.next().await {
                out.push(m?);
            }
            Ok::<_, object_store::Error>(out)
        });
        let listed = listed.map_err(|e| self.err("listing", &dir.unwrap_or_default(), e))?;
        let mut names: Vec<(String, u64)> = listed
            .into_iter()
            .filter_map(|m| {
                let n = m.location.filename()?.to_string();
                let ours = if kind == FileKind::Config {
                    ROOT_FILES.contains(&n.as_str())
                } else {
                    check_name(kind, &n).is_ok() && self.loc.key(kind, &n) == m.location
                };
                ours.then_some((n, m.size))
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Uploads in parts, aborting the upload on failure so no parts stay billed.
    async fn put_multipart(&self, key: &ObjPath, data: &[u8]) -> object_store::Result<()> {
        let upload = self.store.put_multipart(key).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for part in data.chunks(PART_SIZE) {
            if let Err(e) = w.wait_for_capacity(UPLOADS).await {
                let _ = w.abort().await;
                return Err(e);
            }
            w.write(part);
        }
        match w.finish().await {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn check_range(&self, key: &ObjPath, range: &Range<u64>) -> io::Error {
        self.count(&self.counts.head);
        match self.rt.block_on(self.store.head(key)) {
            Ok(m) if m.size < range.end => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{key}: {} bytes, asked for {range:?}", m.size),
            ),
            Ok(_) => io::Error::other(format!("{key}: reading {range:?} failed")),
            Err(e) => self.err("reading", key, e),
        }
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.loc.to_string()
    }

    fn remote(&self) -> bool {
        true
    }

    /// Creates the bucket if it is missing; refuses a prefix that holds anything.
    fn create(&self) -> io::Result<()> {
        match self.bucket_state()? {
            Occupancy::Empty => Ok(()),
            Occupancy::NoBucket => {
                tracing::info!(
                    "creating bucket {} at {}",
                    self.loc.bucket,
                    self.loc.endpoint
                );
                match self.create_bucket() {
                    // Made meanwhile by another process (two hosts' first init or enrolment:
                    // 409, or a server that trips over its own race): what matters is that the
                    // bucket is there now and the prefix empty.
                    Err(e) => match self.bucket_state() {
                        Ok(Occupancy::Empty) => Ok(()),
                        Ok(Occupancy::Used) => Err(self.used()),
                        Ok(Occupancy::NoBucket) | Err(_) => Err(e),
                    },
                    Ok(()) => Ok(()),
                }
            }
            Occupancy::Used => Err(self.used()),
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        check_name(kind, name)?;
        let key = self.loc.key(kind, name);
        self.count(&self.counts.get);
        let got = self
            .rt
            .block_on(async { self.store.get(&key).await?.bytes().await });
        match got {
            Ok(b) => Ok(b.to_vec()),
            Err(object_store::Error::NotFound { .. })
                if kind == FileKind::Config
                    && matches!(self.bucket_state(), Ok(Occupancy::NoBucket)) =>
            {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("the bucket {:?} does not exist", self.loc.bucket),
                ))
            }
            Err(e) => Err(self.err("reading", &key, e)),
        }
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        check_name(kind, name)?;
        let key = self.loc.key(kind, name);
        let range = offset..offset + len as u64;
        self.count(&self.counts.get);
        match self.rt.block_on(self.store.get_range(&key, range.clone())) {
            Ok(b) if b.len() == len => Ok(b.to_vec()),
            Ok(_) => Err(self.check_range(&key, &range)),
            Err(e @ object_store::Error::NotFound { .. }) => Err(self.err("reading", &key, e)),
            Err(_) => Err(self.check_range(&key, &range)),
        }
    }

    fn write(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        check_name(kind, name)?;
        let key = self.loc.key(kind, name);
        self.count(&self.counts.put);
        let done = if data.len() > MULTIPART_ABOVE {
            self.rt.block_on(self.put_multipart(&key, data))
        } else {
            let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
            self.rt.block_on(self.store.put(&key, payload)).map(|_| ())
        };
        done.map_err(|e| self.err("writing", &key, e))
    }

    /// One create-only PUT where the server honours them ([`S3Backend::honours_create_only`]);
    /// else a HEAD, then a PUT.
    fn write_new(&self, kind: FileKind, name: &str, data: &[u8]) -> io::Result<()> {
        check_name(kind, name)?;
        self.put_new(&self.loc.key(kind, name), data)
    }

    fn conditional_writes(&self) -> Option<bool> {
        Some(self.honours_create_only())
    }

    /// Without a copy: the buffer is the payload, and comes back once the client let go of it.
    fn write_buf(&self, kind: FileKind, name: &str, data: Vec<u8>) -> io::Result<Vec<u8>> {
        if data.len() > MULTIPART_ABOVE {
            return self.write(kind, name, &data).map(|()| data);
        }
        check_name(kind, name)?;
        let key = self.loc.key(kind, name);
        self.count(&self.counts.put);
        let bytes = bytes::Bytes::from(data);
        self.rt
            .block_on(self.store.put(&key, PutPayload::from(bytes.clone())))
            .map_err(|e| self.err("writing", &key, e))?;
        Ok(match bytes.try_into_mut() {
            Ok(b) => Vec::from(b),
            // Still shared (a retry's clone not yet dropped): a new buffer next time.
            Err(_) => Vec::new(),
        })
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<String>> {
        Ok(self.list_sized(kind)?.into_iter().map(|(n, _)| n).collect())
    }

    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64> {
        check_name(kind, name)?;
        let key = self.loc.key(kind, name);
        self.count(&self.counts.head);
        self.rt
            .block_on(self.store.head(&key))
            .map(|m| m.size)
            .map_err(|e| self.err("reading", &key, e))
    }

    fn modified(&self, kind: FileKind, name: &str) -> io::Result<SystemTime> {
        check_name(kind, name)?;
        let key = self.loc.key(kind, name);
        self.count(&self.counts.head);
        self.rt
            .block_on(self.store.head(&key))
            .map(|m| SystemTime::from(m.last_modified))
            .map_err(|e| self.err("reading", &key, e))
    }

    fn remove(&self, kind: FileKind, name: &str) -> io::Result<()> {
        check_name(kind, name)?;
        let key = self.loc.key(kind, name);
        self.count(&self.counts.delete);
        match self.rt.block_on(self.store.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("removing", &key, e)),
        }
    }

    fn write_concurrency(&self) -> usize {
        UPLOADS
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        let c = &self.counts;
        tracing::info!(
            get = c.get.load(Ordering::Relaxed),
            put = c.put.load(Ordering::Relaxed),
            list = c.list.load(Ordering::Relaxed),
            head = c.head.load(Ordering::Relaxed),
            delete = c.delete.load(Ordering::Relaxed),
            "requests to {}",
            self.loc
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_print() {
        let l = S3Location::parse("http://127.0.0.1:9000/bucket-1/hosts/a").unwrap();
        assert_eq!(l.endpoint, "http://127.0.0.1:9000");
        assert_eq!(l.bucket, "bucket-1");
        assert_eq!(l.prefix, "hosts/a");
        assert_eq!(l.to_string(), "s3:http://127.0.0.1:9000/bucket-1/hosts/a");
        let id = "ab".repeat(32);
        assert_eq!(
            l.key(FileKind::Pack, &id).as_ref(),
            format!("hosts/a/data/ab/{id}")
        );
        assert_eq!(l.key(FileKind::Config, "config").as_ref(), "hosts/a/config");
        let root = S3Location::parse("https://s3.example.com/b12").unwrap();
        assert_eq!(root.prefix, "");
        assert_eq!(root.key(FileKind::Index, "ff").as_ref(), "index/ff");
        assert_eq!(root.dir(FileKind::Config), None);
        for bad in [
            "127.0.0.1/b",
            "ftp://h/bucket",
            "http:///bucket",
            "http://h",
            "http://h/B",
            "http://h/ab",
            "http://h/bucket/../x",
            "http://h/bucket/a b",
            "http://u@h/bucket",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_come_from_a_profile() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n[ops]\n\
                    aws_access_key_id=C\n aws_secret_access_key = D \naws_session_token=T\n";
        let d = S3Credentials::from_profile(text, "default").unwrap();
        assert_eq!((d.key_id.as_str(), d.secret.as_str()), ("A", "B"));
        assert!(d.token.is_none());
        let o = S3Credentials::from_profile(text, "ops").unwrap();
        assert_eq!((o.key_id.as_str(), o.secret.as_str()), ("C", "D"));
        assert_eq!(o.token.as_deref(), Some("T"));
        assert!(S3Credentials::from_profile(text, "none").is_none());
        assert!(S3Credentials::from_profile("[x]\naws_access_key_id=A\n", "x").is_none());
    }
}
