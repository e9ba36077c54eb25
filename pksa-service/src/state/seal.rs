//! Session keys at rest: sealed with the keystore's state key (ChaCha20-Poly1305), and keyed
//! hashes that identify a key (or the state key itself) without revealing it.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use has_crypto::SecretBytes;
use has_protocol::AuthKey;
use sha2::{Digest, Sha256};

use super::{Result, StoreError};

/// Encrypts session keys at rest with the keystore's state key (ChaCha20-Poly1305).
#[derive(Clone)]
pub struct Sealer {
    key: SecretBytes,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// A sealer for a 32-byte state key.
    pub fn new(key: SecretBytes) -> Self {
        Sealer { key }
    }

    fn cipher(&self) -> Option<ChaCha20Poly1305> {
        let k: &[u8; 32] = self.key.expose_secret().try_into().ok()?;
        Some(ChaCha20Poly1305::new(&Key::from(*k)))
    }

    /// nonce(12) ‖ ciphertext.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let cipher = self.cipher().ok_or(StoreError::KeyDecrypt)?;
        let mut nonce = [0u8; 12];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut nonce);
        let ct = cipher
            .encrypt(&Nonce::from(nonce), plain)
            .map_err(|_| StoreError::KeyDecrypt)?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] produced.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        let cipher = self.cipher().ok_or(StoreError::KeyDecrypt)?;
        if sealed.len() < 12 {
            return Err(StoreError::KeyDecrypt);
        }
        let (n, ct) = sealed.split_at(12);
        let n: [u8; 12] = n.try_into().map_err(|_| StoreError::KeyDecrypt)?;
        cipher
            .decrypt(&Nonce::from(n), ct)
            .map_err(|_| StoreError::KeyDecrypt)
    }

    /// A keyed hash that identifies the state key without revealing it (kept in the store's
    /// meta table, so a store is never used with another keystore's key).
    pub(super) fn check_value(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pksa-state-key-check");
        h.update(self.key.expose_secret());
        hex::encode(h.finalize())
    }

    /// HMAC-SHA256 of `data` under the state key, for `domain` (hex): marks that only the
    /// keystore's holder can produce (the audit head).
    pub fn mac(&self, domain: &str, data: &str) -> String {
        use hmac::{KeyInit as _, Mac};
        let Ok(mut m) = hmac::Hmac::<Sha256>::new_from_slice(self.key.expose_secret()) else {
            return String::new();
        };
        m.update(domain.as_bytes());
        m.update(&[0]);
        m.update(data.as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// A keyed hash of an auth_key (its identity in the store).
    pub fn key_hash(&self, key: &AuthKey) -> String {
        let mut h = Sha256::new();
        h.update(b"pksa-session-key");
        h.update(self.key.expose_secret());
        h.update(key.expose_secret().as_bytes());
        hex::encode(h.finalize())
    }
}
