//! Naming a drive as an operator does: a device path (`/dev/nst0`) for a real drive through
//! `st`, or `virtual:DIR` for a [`VirtualDrive`] over the library in `DIR`.

use std::fmt;
use std::path::PathBuf;

use crate::{CartridgeName, DriveConfig, StDrive, TapeDrive, TapeError, VirtualDrive};

/// A drive, as the configuration (`[mediad] tape_drives`) and `bakfs tape --drive` name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DriveSpec {
    /// A real drive's non-rewinding device.
    St(PathBuf),
    /// A virtual drive over a library directory.
    Virtual(PathBuf),
}

/// An open drive of either kind.
pub enum Drive {
    /// Through `st`.
    St(StDrive),
    /// Virtual (boxed: it carries its library's state).
    Virtual(Box<VirtualDrive>),
}

impl DriveSpec {
    /// Reads `virtual:DIR` or a device path.
    ///
    /// # Errors
    /// An empty name, a rewinding device (`/dev/st0`: closing it rewinds the tape).
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(dir) = s.strip_prefix("virtual:") {
            if dir.is_empty() {
                return Err(
                    "virtual: needs the library's directory (virtual:/var/lib/bakfs/tapes)".into(),
                );
            }
            return Ok(DriveSpec::Virtual(dir.into()));
        }
        if s.is_empty() {
            return Err("the tape drive's name is empty".into());
        }
        let name = std::path::Path::new(s)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("st") && name[2..].starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "{s} is a rewinding device: closing it rewinds the tape; use the non-rewinding one (/dev/n{name})"
            ));
        }
        Ok(DriveSpec::St(s.into()))
    }

    /// Opens the drive, whether a cartridge is in it or not.
    ///
    /// # Errors
    /// [`TapeError::Busy`] when another process has it; others as the drive's `open`.
    pub fn open(&self) -> Result<Drive, TapeError> {
        Ok(match self {
            DriveSpec::St(p) => Drive::St(StDrive::open(p)?),
            DriveSpec::Virtual(d) => {
                Drive::Virtual(Box::new(VirtualDrive::open(d, DriveConfig::default())?))
            }
        })
    }
}

impl fmt::Display for DriveSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveSpec::St(p) => write!(f, "{}", p.display()),
            DriveSpec::Virtual(d) => write!(f, "virtual:{}", d.display()),
        }
    }
}

impl Drive {
    /// The drive as the trait.
    pub fn tape(&mut self) -> &mut dyn TapeDrive {
        match self {
            Drive::St(d) => d,
            Drive::Virtual(d) => d.as_mut(),
        }
    }

    /// Loads a cartridge: the one named from a virtual library (unloading the one in the
    /// drive first); on a real drive the one in its slot (`MTLOAD`), `name` being the
    /// operator's business.
    ///
    /// # Errors
    /// The drive's; a virtual library without that cartridge.
    pub fn load(&mut self, name: Option<&str>) -> Result<(), TapeError> {
        match self {
            Drive::St(d) => d.load(),
            Drive::Virtual(d) => {
                let name = CartridgeName::new(name.ok_or_else(|| {
                    TapeError::InvalidArgument(
                        "name the cartridge to load from the virtual library".into(),
                    )
                })?)?;
                if d.loaded_cartridge() == Some(&name) {
                    return Ok(());
                }
                if d.loaded_cartridge().is_some() {
                    d.unload()?;
                }
                d.load(&name)
            }
        }
    }

    /// The cartridges of a virtual library (a real drive has no list to give).
    ///
    /// # Errors
    /// The library's.
    pub fn cartridges(&self) -> Result<Vec<crate::CartridgeInfo>, TapeError> {
        match self {
            Drive::St(_) => Ok(Vec::new()),
            Drive::Virtual(d) => d.cartridges(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_are_named_by_device_or_virtual_library() {
        assert_eq!(
            DriveSpec::parse("/dev/nst0"),
            Ok(DriveSpec::St("/dev/nst0".into()))
        );
        assert_eq!(
            DriveSpec::parse("virtual:/var/lib/bakfs/tapes"),
            Ok(DriveSpec::Virtual("/var/lib/bakfs/tapes".into()))
        );
        assert!(DriveSpec::parse("/dev/st0")
            .unwrap_err()
            .contains("/dev/nst0"));
        assert!(DriveSpec::parse("virtual:").is_err());
        assert!(DriveSpec::parse("").is_err());
        assert_eq!(
            DriveSpec::parse("virtual:/x").unwrap().to_string(),
            "virtual:/x"
        );
    }
}
