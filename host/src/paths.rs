//! Where the configuration file and the state directory are, as the environment says.

use std::path::{Path, PathBuf};

use bakfs_core::settings::{self, Config, SettingsError};

/// The system-wide configuration file.
pub const SYSTEM_CONFIG: &str = "/etc/bakfs/bakfs.toml";

/// The configuration file to read: `explicit` (`--config`, `BAKFS_CONFIG`), else
/// `$XDG_CONFIG_HOME/bakfs/config.toml` (`~/.config` when unset) if it exists, else
/// [`SYSTEM_CONFIG`] if it exists, else none.
pub fn config_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    xdg.map(|x| x.join("bakfs/config.toml"))
        .into_iter()
        .chain([PathBuf::from(SYSTEM_CONFIG)])
        .find(|p| p.is_file())
}

/// Reads the configuration ([`config_file`]); without a file, the defaults. Returns the file
/// read, if any.
///
/// # Errors
/// As [`settings::read`].
pub fn load_config(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), SettingsError> {
    match config_file(explicit) {
        Some(p) => Ok((settings::read(&p)?, Some(p))),
        None => Ok((Config::default(), None)),
    }
}

/// The state directory (catalog, logs): `explicit` (`--state-dir`, `BAKFS_STATE_DIR`), else the
/// config's `state_dir`, else `$XDG_STATE_HOME/bakfs`, else `/var/lib/bakfs` for root, else
/// `~/.local/state/bakfs`.
pub fn state_dir(explicit: Option<&Path>, cfg: &Config) -> PathBuf {
    if let Some(d) = explicit.or(cfg.state_dir.as_deref()) {
        return d.to_path_buf();
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("bakfs");
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/bakfs");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(".local/state/bakfs")
}

/// The password in the file at `p`: its first line (a trailing newline is no part of it).
///
/// # Errors
/// The file cannot be read, or its first line is empty.
pub fn read_password_file(p: &Path) -> std::io::Result<zeroize::Zeroizing<Vec<u8>>> {
    let raw = zeroize::Zeroizing::new(std::fs::read(p).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("reading password file {}: {e}", p.display()),
        )
    })?);
    let line = raw.split(|&b| b == b'\n').next().unwrap_or(&[]).to_vec();
    if line.is_empty() {
        return Err(std::io::Error::other(format!(
            "password file {} is empty",
            p.display()
        )));
    }
    Ok(zeroize::Zeroizing::new(line))
}
