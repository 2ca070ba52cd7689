//! [`CartridgeName`]: the name of a cartridge, as on its barcode label.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::TapeError;

/// A cartridge's name (its barcode label). A virtual cartridge is the directory `<name>.tape`, so
/// the name is kept to what is safe in a file name: 1 to 64 ASCII letters, digits, `.`, `_`
/// and `-`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CartridgeName(String);

impl CartridgeName {
    /// Checks and wraps a name.
    ///
    /// # Errors
    /// [`TapeError::InvalidCartridgeName`] for a name that cannot be one.
    pub fn new(name: impl Into<String>) -> Result<Self, TapeError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(name))
        } else {
            Err(TapeError::InvalidCartridgeName(name))
        }
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CartridgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CartridgeName {
    type Err = TapeError;
    fn from_str(s: &str) -> Result<Self, TapeError> {
        Self::new(s)
    }
}

impl TryFrom<String> for CartridgeName {
    type Error = TapeError;
    fn try_from(s: String) -> Result<Self, TapeError> {
        Self::new(s)
    }
}

impl From<CartridgeName> for String {
    fn from(n: CartridgeName) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_safe_as_file_names_only() {
        for good in ["A00001L9", "scratch-0", "x", "tape_1.old"] {
            assert_eq!(CartridgeName::new(good).unwrap().as_str(), good);
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é", &"x".repeat(65)] {
            assert!(CartridgeName::new(bad).is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&CartridgeName::new("A1").unwrap()).unwrap();
        assert_eq!(json, "\"A1\"");
        assert!(serde_json::from_str::<CartridgeName>("\"../x\"").is_err());
    }
}
