//! `Encrypted<T>`: a CryptoJS ciphertext whose plaintext is a `T`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use has_crypto::{SecretString, cryptojs};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::PayloadError;
use crate::types::Passphrase;

/// A payload that travels encrypted: how it becomes plaintext and back.
pub trait Payload: Sized {
    /// Name used in schemas and error messages (e.g. `sign_req_data`).
    const NAME: &'static str;
    /// The plaintext to encrypt.
    fn to_plaintext(&self) -> SecretString;
    /// Parses (and validates) a decrypted plaintext.
    fn from_plaintext(text: &str) -> Result<Self, PayloadError>;
}

/// A CryptoJS passphrase ciphertext (`U2FsdGVkX1…`) of a `T`. Only
/// [`Encrypted::decrypt`] turns it into a `T`.
pub struct Encrypted<T> {
    ciphertext: String,
    _payload: PhantomData<fn() -> T>,
}

impl<T> Clone for Encrypted<T> {
    fn clone(&self) -> Self {
        Encrypted {
            ciphertext: self.ciphertext.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> PartialEq for Encrypted<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ciphertext == other.ciphertext
    }
}
impl<T> Eq for Encrypted<T> {}

impl<T> fmt::Debug for Encrypted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encrypted(<{} chars>)", self.ciphertext.len())
    }
}

impl<T> Encrypted<T> {
    /// Wraps a ciphertext string as received.
    pub fn from_ciphertext(ciphertext: impl Into<String>) -> Self {
        Encrypted {
            ciphertext: ciphertext.into(),
            _payload: PhantomData,
        }
    }

    /// The ciphertext text.
    pub fn as_str(&self) -> &str {
        &self.ciphertext
    }
}

impl<T: Payload> Encrypted<T> {
    /// Encrypts `value` with a fresh random salt.
    pub fn encrypt(value: &T, key: &impl Passphrase) -> Self {
        Encrypted::from_ciphertext(cryptojs::encrypt(
            value.to_plaintext().expose_secret(),
            key.passphrase(),
        ))
    }

    /// Encrypts with an explicit salt (deterministic; for vectors and tests).
    pub fn encrypt_with_salt(value: &T, key: &impl Passphrase, salt: &[u8; 8]) -> Self {
        Encrypted::from_ciphertext(cryptojs::encrypt_with_salt(
            value.to_plaintext().expose_secret(),
            key.passphrase(),
            salt,
        ))
    }

    /// Decrypts strictly and parses the payload. A wrong key (or a corrupted ciphertext) is
    /// [`PayloadError::Decrypt`]; a right key with a plaintext of the wrong shape is
    /// [`PayloadError::Invalid`], so a PKSA can tell "not my session" from "my session, bad
    /// request".
    pub fn decrypt(&self, key: &impl Passphrase) -> Result<T, PayloadError> {
        let plain = cryptojs::decrypt(&self.ciphertext, key.passphrase())
            .map_err(|_| PayloadError::Decrypt)?;
        T::from_plaintext(plain.expose_secret())
    }
}

/// A payload ciphertext decoded once, to try against many session keys (see
/// [`cryptojs::Parsed`]).
#[derive(Debug, Clone)]
pub struct Prepared<'a, T> {
    parsed: cryptojs::Parsed<'a>,
    _payload: PhantomData<fn() -> T>,
}

impl<T: Payload> Encrypted<T> {
    /// Decodes the ciphertext once; Err([`PayloadError::Decrypt`]) when it is not a
    /// well-formed CryptoJS ciphertext (no key can decrypt it).
    pub fn prepare(&self) -> Result<Prepared<'_, T>, PayloadError> {
        cryptojs::parse(&self.ciphertext)
            .map(|parsed| Prepared {
                parsed,
                _payload: PhantomData,
            })
            .map_err(|_| PayloadError::Decrypt)
    }
}

impl<T: Payload> Prepared<'_, T> {
    /// As [`Encrypted::decrypt`], without decoding the ciphertext again.
    pub fn decrypt(&self, key: &impl Passphrase) -> Result<T, PayloadError> {
        let plain = self
            .parsed
            .decrypt(key.passphrase())
            .map_err(|_| PayloadError::Decrypt)?;
        T::from_plaintext(plain.expose_secret())
    }
}

impl<T: Payload> Prepared<'_, T> {
    /// Trial decryption over `keys` in order: the first key that decrypts the ciphertext,
    /// with the payload it gives (Ok, or [`PayloadError::Invalid`] when the key is right
    /// but the payload is not). None when no key decrypts it. Keys are tested in batches
    /// (see [`cryptojs::Parsed::plausible`]): a ciphertext nobody can decrypt costs a
    /// fraction of a microsecond per key, whatever its size.
    pub fn find<K: Passphrase>(&self, keys: &[K]) -> Option<(usize, Result<T, PayloadError>)> {
        // Small batches first: the usual match is the most recently used session.
        let mut start = 0;
        let mut batch = 8;
        while start < keys.len() {
            let end = keys.len().min(start + batch);
            let slice = keys.get(start..end)?;
            let texts: Vec<&str> = slice.iter().map(Passphrase::passphrase).collect();
            for i in self.parsed.plausible(&texts) {
                let key = slice.get(i)?;
                match self.decrypt(key) {
                    Err(PayloadError::Decrypt) => continue,
                    other => return Some((start + i, other)),
                }
            }
            start = end;
            batch = (batch * 4).min(1024);
        }
        None
    }
}

impl<T> Serialize for Encrypted<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.ciphertext)
    }
}

impl<'de, T> Deserialize<'de> for Encrypted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Encrypted::from_ciphertext)
    }
}

impl<T: Payload> JsonSchema for Encrypted<T> {
    fn schema_name() -> Cow<'static, str> {
        "Encrypted".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^U2FsdGVkX1",
            "description": format!("CryptoJS passphrase ciphertext of {}", T::NAME)
        })
    }
}

/// Implements [`Payload`] for a JSON payload type: serialized with serde, and on decryption
/// validated against its generated schema before it is deserialized.
macro_rules! json_payload {
    ($ty:ty, $name:literal) => {
        impl $crate::encrypted::Payload for $ty {
            const NAME: &'static str = $name;
            fn to_plaintext(&self) -> has_crypto::SecretString {
                has_crypto::SecretString::new(serde_json::to_string(self).unwrap_or_default())
            }
            fn from_plaintext(text: &str) -> Result<Self, $crate::error::PayloadError> {
                $crate::validate::parse_payload::<Self>($name, text)
            }
        }
    };
}
pub(crate) use json_payload;
