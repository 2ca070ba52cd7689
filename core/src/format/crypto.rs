//! Keys and authenticated encryption.
//!
//! A repository has one random 64-byte [`MasterKey`]. From it, blake3's key derivation makes
//! three independent subkeys: the AEAD key (XChaCha20-Poly1305), the chunk-id key (keyed blake3)
//! and the chunker seed (gear table). The master key is stored only wrapped: by a key derived from
//! a passphrase with argon2id, under XChaCha20-Poly1305. Several wrappings may coexist.
//!
//! Nonces are 192-bit random values drawn from the OS for each encryption, so they are unique
//! with overwhelming probability; there is no nonce counter to reuse. The caller's associated
//! data (a blob id and type, or a file kind) is bound to every ciphertext.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::format::id::BlobId;

/// Bytes of nonce prepended to each ciphertext.
pub const NONCE_LEN: usize = 24;
/// Bytes of authentication tag appended to each ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Failure to decrypt or authenticate.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext did not authenticate: wrong key, or damaged data.
    #[error("authentication failed (wrong key or damaged data)")]
    Auth,
    /// The passphrase did not unwrap any key.
    #[error("wrong password")]
    WrongPassword,
    /// A key file could not be parsed.
    #[error("key file is malformed: {0}")]
    Malformed(String),
}

/// The repository's master key. Zeroized on drop; never printed, copied or compared.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    bytes: [u8; 64],
}

/// Keys derived from the master key for one purpose each.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Keys {
    aead: [u8; 32],
    chunk_id: [u8; 32],
    chunker_seed: [u8; 32],
}

impl MasterKey {
    /// A new random master key from the OS random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 64];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes[..]);
        Self { bytes }
    }

    /// The key's bytes, for [`crate::format::paper`] only.
    pub(crate) fn expose_for_paper(&self) -> &[u8; 64] {
        &self.bytes
    }

    /// A key typed back from paper ([`crate::format::paper`] only).
    pub(crate) fn from_paper_bytes(bytes: &[u8; 64]) -> Self {
        Self { bytes: *bytes }
    }

    /// Derives the purpose keys.
    pub fn derive(&self) -> Keys {
        Keys {
            aead: blake3::derive_key("bakfs 2026 aead key v1", &self.bytes),
            chunk_id: blake3::derive_key("bakfs 2026 chunk id key v1", &self.bytes),
            chunker_seed: blake3::derive_key("bakfs 2026 chunker seed v1", &self.bytes),
        }
    }
}

impl Keys {
    /// The keyed blake3 id of a blob's plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(*blake3::keyed_hash(&self.chunk_id, plaintext).as_bytes())
    }

    /// The seed of the chunker's gear table.
    pub fn chunker_seed(&self) -> &[u8; 32] {
        &self.chunker_seed
    }

    /// Encrypts `plaintext` with a fresh random nonce, binding `ad`. Output: nonce ‖ ct ‖ tag.
    pub fn seal(&self, plaintext: &[u8], ad: &[u8]) -> Vec<u8> {
        seal_with(&self.aead, plaintext, ad)
    }

    /// Decrypts and authenticates a message made by [`Keys::seal`] with the same `ad`.
    ///
    /// # Errors
    /// [`CryptoError::Auth`] if the data is damaged, truncated or was sealed under another key.
    pub fn open(&self, sealed: &[u8], ad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.aead, sealed, ad)
    }

    /// As [`Keys::open`], decrypting in place: on success the plaintext is
    /// `sealed[NONCE_LEN..sealed.len() - TAG_LEN]`.
    ///
    /// # Errors
    /// [`CryptoError::Auth`] as [`Keys::open`]; `sealed` is then unspecified.
    pub fn open_in_place<'a>(
        &self,
        sealed: &'a mut [u8],
        ad: &[u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::Auth);
        }
        let cipher = XChaCha20Poly1305::new((&self.aead).into());
        let (nonce, rest) = sealed.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        cipher
            .decrypt_in_place_detached(XNonce::from_slice(nonce), ad, ct, (&*tag).into())
            .map_err(|_| CryptoError::Auth)?;
        Ok(ct)
    }
}

fn seal_with(key: &[u8; 32], plaintext: &[u8], ad: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = XNonce::from_slice(&nonce_bytes);
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&nonce_bytes);
    // Encryption with a valid key cannot fail for in-memory buffers of sane size.
    match cipher.encrypt(
        nonce,
        Payload {
            msg: plaintext,
            aad: ad,
        },
    ) {
        Ok(ct) => out.extend_from_slice(&ct),
        Err(_) => unreachable!("XChaCha20-Poly1305 encryption does not fail"),
    }
    out
}

fn open_with(key: &[u8; 32], sealed: &[u8], ad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < OVERHEAD {
        return Err(CryptoError::Auth);
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
        .map_err(|_| CryptoError::Auth)
}

/// argon2id parameters of a key wrapping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// Random salt, hex.
    pub salt: String,
}

impl KdfParams {
    /// Parameters for new wrappings: 64 MiB, 3 passes (OWASP's argon2id recommendation range).
    /// Tests that need cheap keys use [`KdfParams::weak_for_tests`].
    pub fn recommended() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
            salt: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    /// Cheap parameters: only for tests.
    pub fn weak_for_tests() -> Self {
        Self {
            m_kib: 256,
            t: 1,
            p: 1,
            salt: hex::encode(rand::random::<[u8; 16]>()),
        }
    }

    fn derive(&self, passphrase: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        // A planted key file must not make us allocate or spin without bound.
        if self.m_kib > 4 * 1024 * 1024 || self.t > 64 || self.p > 16 {
            return Err(CryptoError::Malformed(format!(
                "argon2 cost out of range (m={} KiB, t={}, p={})",
                self.m_kib, self.t, self.p
            )));
        }
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| CryptoError::Malformed(format!("argon2 parameters: {e}")))?;
        let salt = hex::decode(&self.salt).map_err(|_| CryptoError::Malformed("salt".into()))?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        a.hash_password_into(passphrase, &salt, &mut out[..])
            .map_err(|e| CryptoError::Malformed(format!("argon2: {e}")))?;
        Ok(out)
    }
}

/// The master key wrapped by a passphrase: the content of `keys/<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrappedKey {
    /// Format of this file.
    pub version: u32,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Host and user that added it, informational.
    pub comment: String,
    /// argon2id parameters.
    pub kdf: KdfParams,
    /// nonce ‖ XChaCha20-Poly1305(master key) ‖ tag, hex.
    pub wrapped: String,
}

const WRAP_AD: &[u8] = b"bakfs master key v1";

impl WrappedKey {
    /// Wraps `key` under `passphrase`.
    ///
    /// # Errors
    /// Only if `kdf` is invalid.
    pub fn wrap(
        key: &MasterKey,
        passphrase: &[u8],
        kdf: KdfParams,
        created: String,
        comment: String,
    ) -> Result<Self, CryptoError> {
        let kek = kdf.derive(passphrase)?;
        let wrapped = hex::encode(seal_with(&kek, &key.bytes, WRAP_AD));
        Ok(Self {
            version: 1,
            created,
            comment,
            kdf,
            wrapped,
        })
    }

    /// Unwraps the master key.
    ///
    /// # Errors
    /// [`CryptoError::WrongPassword`] if the passphrase is wrong (or the file damaged).
    pub fn unwrap_key(&self, passphrase: &[u8]) -> Result<MasterKey, CryptoError> {
        let kek = self.kdf.derive(passphrase)?;
        let sealed =
            hex::decode(&self.wrapped).map_err(|_| CryptoError::Malformed("wrapped key".into()))?;
        let plain = Zeroizing::new(
            open_with(&kek, &sealed, WRAP_AD).map_err(|_| CryptoError::WrongPassword)?,
        );
        if plain.len() != 64 {
            return Err(CryptoError::Malformed("master key length".into()));
        }
        let mut bytes = [0u8; 64];
        bytes.copy_from_slice(&plain);
        Ok(MasterKey { bytes })
    }
}

/// Associated data binding a blob's id and type to its ciphertext.
pub fn blob_ad(id: &BlobId, kind: u8) -> [u8; 33] {
    let mut ad = [0u8; 33];
    ad[..32].copy_from_slice(&id.0);
    ad[32] = kind;
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = MasterKey::generate().derive();
        let s = k.seal(b"hello", b"ad");
        assert_eq!(k.open(&s, b"ad").unwrap(), b"hello");
        assert!(k.open(&s, b"other ad").is_err());
        let mut t = s.clone();
        t[30] ^= 1;
        assert!(k.open(&t, b"ad").is_err());
        assert!(k.open(&s[..10], b"ad").is_err());
        let k2 = MasterKey::generate().derive();
        assert!(k2.open(&s, b"ad").is_err());
        // two seals of the same message differ (fresh nonce)
        assert_ne!(k.seal(b"hello", b"ad"), s);
    }

    #[test]
    fn wrap_unwrap() {
        let mk = MasterKey::generate();
        let w = WrappedKey::wrap(
            &mk,
            b"pw",
            KdfParams::weak_for_tests(),
            "t".into(),
            "c".into(),
        )
        .unwrap();
        let back = w.unwrap_key(b"pw").unwrap();
        assert_eq!(back.derive().blob_id(b"x"), mk.derive().blob_id(b"x"));
        assert!(matches!(
            w.unwrap_key(b"wrong"),
            Err(CryptoError::WrongPassword)
        ));
    }
}
