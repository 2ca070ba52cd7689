//! Newtypes for every kind of id in a repository.
//!
//! All ids are 32 bytes, shown as 64 lowercase hex digits. A [`BlobId`] is the keyed blake3 of a
//! blob's plaintext (data chunk or tree); a [`PackId`] is the unkeyed blake3 of the pack file's
//! bytes, so anyone can verify a copy without the key; [`SnapshotId`] and [`IndexId`] are the
//! unkeyed blake3 of the encrypted file; [`RepoId`] and [`KeyId`] are random.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Error returned when parsing a hex id fails.
#[derive(Debug, thiserror::Error)]
#[error("invalid id {0:?}: expected 64 hex digits")]
pub struct ParseIdError(pub String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The id as 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, for display.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            /// Parses 64 hex digits.
            ///
            /// # Errors
            /// [`ParseIdError`] if `s` is not 64 hex digits.
            pub fn from_hex(s: &str) -> Result<Self, ParseIdError> {
                let mut b = [0u8; 32];
                hex::decode_to_slice(s, &mut b).map_err(|_| ParseIdError(s.to_string()))?;
                Ok(Self(b))
            }
            /// A random id.
            pub fn random() -> Self {
                Self(rand::random())
            }
            /// The unkeyed blake3 hash of `data`.
            pub fn hash_of(data: &[u8]) -> Self {
                Self(*blake3::hash(data).as_bytes())
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
    };
}

id_type!(
    /// Keyed blake3 of a blob's plaintext: a file chunk or a tree.
    BlobId
);
id_type!(
    /// Blake3 of a pack file's bytes.
    PackId
);
id_type!(
    /// Blake3 of a snapshot manifest file's bytes.
    SnapshotId
);
id_type!(
    /// Blake3 of an index file's bytes.
    IndexId
);
id_type!(
    /// Random id of a repository, fixed at `init`.
    RepoId
);
id_type!(
    /// Random id of one wrapping of the master key.
    KeyId
);
id_type!(
    /// Random id of an enrolled medium, fixed at `bakfs media enroll`.
    MediumId
);
id_type!(
    /// A file's content: the unkeyed blake3 of its content ids ([`ContentId::of`]), so two
    /// files with the same bytes in one repository have the same one (the catalog's file table).
    ContentId
);

impl ContentId {
    /// The content id of a file whose data blobs are `content`, in order.
    pub fn of(content: &[BlobId]) -> Self {
        let mut h = blake3::Hasher::new();
        for b in content {
            h.update(&b.0);
        }
        Self(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = PackId::hash_of(b"abc");
        assert_eq!(PackId::from_hex(&id.to_hex()).unwrap(), id);
        assert_eq!(id.to_hex().len(), 64);
        assert!(PackId::from_hex("zz").is_err());
        assert!(PackId::from_hex(&"0".repeat(63)).is_err());
    }
}
