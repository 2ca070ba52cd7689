//! What every command needs: configuration, repository location, password, catalog.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use bakfs_core::catalog::Catalog;
use bakfs_core::repo::backend::Location;
use bakfs_core::repo::Repository;

use crate::args::Global;
use bakfs_core::settings::Config;

/// A password held in memory, wiped on drop.
pub type Secret = zeroize::Zeroizing<Vec<u8>>;

pub struct Ctx {
    pub global: Global,
    pub config: Config,
}

impl Ctx {
    pub fn new(global: Global) -> Result<Self> {
        let (config, _) = bakfs_host::paths::load_config(global.config.as_deref())?;
        bakfs_core::repo::backend::configure_s3(&config.s3);
        Ok(Self { global, config })
    }

    pub fn repo_path(&self) -> Result<PathBuf> {
        self.global
            .repo
            .clone()
            .or_else(|| self.config.repository.clone())
            .ok_or_else(|| anyhow!("no repository given: use --repo PATH, BAKFS_REPO or `repository` in the config file"))
    }

    /// The repository's location ([`Ctx::repo_path`] read by the backend factory).
    pub fn location(&self) -> Result<Location> {
        Location::parse(&self.repo_path()?).map_err(|e| anyhow!(e))
    }

    fn read_password_file(p: &Path) -> Result<Secret> {
        Ok(bakfs_host::paths::read_password_file(p)?)
    }

    /// The password: --password-file, BAKFS_PASSWORD_FILE, BAKFS_PASSWORD, the config's
    /// password_file, else a prompt on the terminal.
    pub fn password(&self) -> Result<Secret> {
        if let Some(p) = &self.global.password_file {
            return Self::read_password_file(p);
        }
        if let Some(pw) = std::env::var_os("BAKFS_PASSWORD") {
            use std::os::unix::ffi::OsStrExt;
            return Ok(Secret::new(pw.as_bytes().to_vec()));
        }
        if let Some(p) = &self.config.password_file {
            return Self::read_password_file(p);
        }
        if std::io::stdin().is_terminal() {
            let pw = rpassword::prompt_password("repository password: ")?;
            return Ok(Secret::new(pw.into_bytes()));
        }
        bail!("no password: use --password-file, BAKFS_PASSWORD_FILE, BAKFS_PASSWORD or a terminal")
    }

    /// The password for a new repository: from the usual sources, else asked twice.
    pub fn password_for_init(&self) -> Result<Secret> {
        let given = self.global.password_file.is_some()
            || std::env::var_os("BAKFS_PASSWORD").is_some()
            || self.config.password_file.is_some();
        if given {
            let pw = self.password()?;
            if pw.is_empty() {
                bail!("refusing an empty password");
            }
            return Ok(pw);
        }
        Self::new_password(None)
    }

    /// A new password, asked twice on a terminal or read from a file.
    pub fn new_password(file: Option<&Path>) -> Result<Secret> {
        if let Some(f) = file {
            return Self::read_password_file(f);
        }
        if !std::io::stdin().is_terminal() {
            bail!("give the new password with --new-password-file (no terminal to ask on)");
        }
        let a = rpassword::prompt_password("new password: ")?;
        let b = rpassword::prompt_password("new password again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        if a.is_empty() {
            bail!("empty password");
        }
        Ok(Secret::new(a.into_bytes()))
    }

    pub fn open_repo(&self) -> Result<Repository> {
        let backend = self.location()?.backend()?;
        let pw = self.password()?;
        Ok(Repository::open(backend, &pw)?)
    }

    /// The repository, its index not read yet: for a command that takes its shared lock next
    /// (which reads it).
    pub fn open_repo_to_lock(&self) -> Result<Repository> {
        let backend = self.location()?.backend()?;
        let pw = self.password()?;
        Ok(Repository::open_unindexed(backend, &pw)?)
    }

    /// A shared lock for a command that only reads, so that prune cannot delete data under it.
    /// A repository that cannot be written (a read-only medium) is read without a lock.
    /// The index is read again once the lock is held.
    pub fn reader_lock(
        &self,
        repo: &Repository,
        purpose: &str,
    ) -> Result<Option<bakfs_core::repo::lock::LockGuard>> {
        // The index is read again under the lock (a prune may have finished meanwhile).
        match repo.lock_shared(purpose) {
            Ok(g) => Ok(Some(g)),
            Err(e @ bakfs_core::Error::Locked(_)) => Err(e.into()),
            Err(e) => {
                tracing::info!("reading without a lock: {e}");
                Ok(None)
            }
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        bakfs_host::paths::state_dir(self.global.state_dir.as_deref(), &self.config)
    }

    pub fn catalog(&self) -> Result<Catalog> {
        let p = self.state_dir().join("catalog.db");
        Ok(Catalog::open(&p)?)
    }

    /// Whether to draw progress on stderr.
    pub fn show_progress(&self) -> bool {
        !self.global.quiet && !self.global.json && std::io::stderr().is_terminal()
    }

    pub fn print_json<T: serde::Serialize>(&self, v: &T) -> Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }
}

pub fn comment() -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_default();
    format!("{user}@{}", bakfs_core::repo::lock::hostname())
}

/// The catalog's record of a snapshot.
pub fn snapshot_record(
    repo_id: bakfs_core::format::id::RepoId,
    id: bakfs_core::format::id::SnapshotId,
    s: &bakfs_core::format::Snapshot,
) -> bakfs_core::catalog::SnapshotRecord {
    bakfs_core::catalog::SnapshotRecord {
        repo_id,
        id,
        time: bakfs_core::timefmt::format_rfc3339(s.time_ns),
        time_ns: s.time_ns,
        host: s.host.clone(),
        paths: s.paths.clone(),
        tags: s.tags.clone(),
        tree: s.tree,
        parent: s.parent,
        job: s.job.clone(),
        files: s.summary.files,
        bytes: s.summary.bytes,
    }
}
