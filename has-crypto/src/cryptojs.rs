//! CryptoJS passphrase AES (`CryptoJS.AES.encrypt(text, passphrase).toString()`), the
//! encryption of every HAS payload (has-protocol.md §4.1, hive-crypto.md §6).
//!
//! Hazmat: this is unauthenticated AES-256-CBC with an MD5-based KDF (OpenSSL
//! `EVP_BytesToKey`, one iteration). It exists only for compatibility with crypto-js; never
//! use it for anything new.
//!
//! Format: `base64("Salted__" ‖ salt8 ‖ AES-256-CBC(key, iv, PKCS#7(plaintext)))` where
//! `key ‖ iv = EVP_BytesToKey(MD5, passphrase, salt)`.
//!
//! Decryption is strict where CryptoJS is lax: the base64, the `Salted__` header, the block
//! length, the PKCS#7 padding and the UTF-8 are all checked, and any failure is the single
//! opaque [`Error::Decrypt`]. This never rejects anything crypto-js produced with the right
//! passphrase, and it makes trial decryption over several session keys reliable (CryptoJS
//! returns garbage for about 0.5 % of wrong keys).
//!
//! ```
//! use has_crypto::cryptojs;
//! let ct = cryptojs::encrypt_with_salt(r#"{"app":{"name":"myapp"}}"#,
//!     "03f63469-5a35-47cb-a6b4-e8c4d3144cf9", &[1, 2, 3, 4, 5, 6, 7, 8]);
//! assert_eq!(ct, "U2FsdGVkX18BAgMEBQYHCDvftjHluU7Q6gqbBOS5TwcQymcx+tfGNz5Zm1GTP+3T");
//! let pt = cryptojs::decrypt(&ct, "03f63469-5a35-47cb-a6b4-e8c4d3144cf9").unwrap();
//! assert_eq!(pt.expose_secret(), r#"{"app":{"name":"myapp"}}"#);
//! ```

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use md5::{Digest, Md5};
use rand::CryptoRng;
use zeroize::Zeroizing;

use crate::aes_cbc;
use crate::error::{Error, Result};
use crate::secret::SecretString;

/// The 8-byte header OpenSSL and CryptoJS put before the salt.
const HEADER: &[u8; 8] = b"Salted__";

/// Standard alphabet; canonical padding on output, padding optional on input (as CryptoJS).
const B64_IN: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64_OUT: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Key and IV derived from a passphrase and salt; zeroized on drop.
struct KeyIv {
    key: Zeroizing<[u8; 32]>,
    iv: Zeroizing<[u8; 16]>,
}

/// OpenSSL `EVP_BytesToKey` with MD5 and one iteration, producing 48 bytes.
fn evp_bytes_to_key(passphrase: &[u8], salt: &[u8; 8]) -> KeyIv {
    let mut out = Zeroizing::new([0u8; 48]);
    let mut prev: Option<Zeroizing<[u8; 16]>> = None;
    for chunk in out.chunks_exact_mut(16) {
        let mut h = Md5::new();
        if let Some(p) = &prev {
            h.update(p.as_slice());
        }
        h.update(passphrase);
        h.update(salt);
        let d: [u8; 16] = h.finalize().into();
        chunk.copy_from_slice(&d);
        prev = Some(Zeroizing::new(d));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    let mut iv = Zeroizing::new([0u8; 16]);
    let (k, i) = out.split_at(32);
    key.copy_from_slice(k);
    iv.copy_from_slice(i);
    KeyIv { key, iv }
}

/// The AES key alone (`EVP_BytesToKey`'s first 32 bytes: two MD5s instead of three).
fn evp_key(passphrase: &[u8], salt: &[u8; 8]) -> Zeroizing<[u8; 32]> {
    let d1: [u8; 16] = Md5::new()
        .chain_update(passphrase)
        .chain_update(salt)
        .finalize()
        .into();
    let d2: [u8; 16] = Md5::new()
        .chain_update(d1)
        .chain_update(passphrase)
        .chain_update(salt)
        .finalize()
        .into();
    let mut key = Zeroizing::new([0u8; 32]);
    let (a, b) = key.split_at_mut(16);
    a.copy_from_slice(&d1);
    b.copy_from_slice(&d2);
    key
}

/// A ciphertext decoded once, to try against many passphrases (trial decryption over an
/// account's sessions). [`Parsed::decrypt`] first checks, with the key alone and one AES
/// block, that the last block's padding is valid (a wrong passphrase fails there 255 times in
/// 256) before deriving the IV and decrypting the whole body: trying a passphrase costs the
/// same for a 300 KB ciphertext as for a short one.
#[derive(Debug, Clone)]
pub struct Parsed {
    salt: [u8; 8],
    body: Vec<u8>,
}

/// Decodes a ciphertext once (base64, header, salt, whole blocks). Any failure is
/// [`Error::Decrypt`].
pub fn parse(ciphertext: &str) -> Result<Parsed> {
    let raw = B64_IN.decode(ciphertext).map_err(|_| Error::Decrypt)?;
    if raw.get(..8) != Some(HEADER.as_slice()) {
        return Err(Error::Decrypt);
    }
    let salt: [u8; 8] = raw
        .get(8..16)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Decrypt)?;
    let body = raw.get(16..).ok_or(Error::Decrypt)?.to_vec();
    if body.is_empty() || !body.len().is_multiple_of(16) {
        return Err(Error::Decrypt);
    }
    Ok(Parsed { salt, body })
}

impl Parsed {
    /// Decrypts strictly with `passphrase` (as [`decrypt`]); wrong passphrases are mostly
    /// turned away after one AES block.
    pub fn decrypt(&self, passphrase: &str) -> Result<SecretString> {
        let n = self.body.len();
        if n >= 32 {
            let key = evp_key(passphrase.as_bytes(), &self.salt);
            let prev: [u8; 16] = self
                .body
                .get(n - 32..n - 16)
                .and_then(|b| b.try_into().ok())
                .ok_or(Error::Decrypt)?;
            let last = self.body.get(n - 16..).ok_or(Error::Decrypt)?;
            aes_cbc::decrypt(&key, &prev, last).map(Zeroizing::new)?;
        }
        let kiv = evp_bytes_to_key(passphrase.as_bytes(), &self.salt);
        let bytes = Zeroizing::new(aes_cbc::decrypt(&kiv.key, &kiv.iv, &self.body)?);
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| Error::Decrypt)?;
        Ok(SecretString::new(text))
    }
}

/// Encrypts `plaintext` with a fresh random salt from the system CSPRNG.
pub fn encrypt(plaintext: &str, passphrase: &str) -> String {
    encrypt_with_rng(plaintext, passphrase, &mut rand::rng())
}

/// Encrypts `plaintext` with a salt drawn from `rng`.
pub fn encrypt_with_rng<R: CryptoRng + ?Sized>(
    plaintext: &str,
    passphrase: &str,
    rng: &mut R,
) -> String {
    let mut salt = [0u8; 8];
    rng.fill_bytes(&mut salt);
    encrypt_with_salt(plaintext, passphrase, &salt)
}

/// Encrypts `plaintext` with an explicit salt (deterministic; for test vectors).
pub fn encrypt_with_salt(plaintext: &str, passphrase: &str, salt: &[u8; 8]) -> String {
    let kiv = evp_bytes_to_key(passphrase.as_bytes(), salt);
    let ct = aes_cbc::encrypt(&kiv.key, &kiv.iv, plaintext.as_bytes());
    let mut raw = Vec::with_capacity(16 + ct.len());
    raw.extend_from_slice(HEADER);
    raw.extend_from_slice(salt);
    raw.extend_from_slice(&ct);
    B64_OUT.encode(raw)
}

/// Decrypts a CryptoJS passphrase ciphertext strictly. Any failure is [`Error::Decrypt`].
pub fn decrypt(ciphertext: &str, passphrase: &str) -> Result<SecretString> {
    let bytes = decrypt_bytes(ciphertext, passphrase)?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| Error::Decrypt)?;
    Ok(SecretString::new(text))
}

#[cfg(test)]
mod parsed_tests {
    use super::*;

    #[test]
    fn parsed_decrypts_like_decrypt_and_refuses_what_it_refuses() {
        let key = "03f63469-5a35-47cb-a6b4-e8c4d3144cf9";
        for text in [
            "",
            "x",
            &"0123456789abcdef".repeat(3),
            &"long text ".repeat(1000),
        ] {
            let ct = encrypt(text, key);
            let p = parse(&ct).unwrap();
            assert_eq!(p.decrypt(key).unwrap().expose_secret(), text);
            assert_eq!(
                decrypt(&ct, key).unwrap().expose_secret(),
                p.decrypt(key).unwrap().expose_secret()
            );
            // A wrong passphrase is refused, never a garbage plaintext.
            for i in 0..300 {
                assert!(p.decrypt(&format!("wrong-{i}")).is_err());
            }
        }
        for bad in [
            "",
            "not base64!",
            "U2FsdGVkX18=",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}

/// The salt of a well-formed ciphertext (base64, header, at least one block), if any.
pub fn salt_of(ciphertext: &str) -> Option<[u8; 8]> {
    let raw = B64_IN.decode(ciphertext).ok()?;
    let salt = raw.get(8..16)?;
    if raw.get(..8)? != HEADER {
        return None;
    }
    salt.try_into().ok()
}

fn decrypt_bytes(ciphertext: &str, passphrase: &str) -> Result<Zeroizing<Vec<u8>>> {
    let raw = B64_IN.decode(ciphertext).map_err(|_| Error::Decrypt)?;
    let header = raw.get(..8).ok_or(Error::Decrypt)?;
    if header != HEADER {
        return Err(Error::Decrypt);
    }
    let salt: [u8; 8] = raw
        .get(8..16)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Decrypt)?;
    let body = raw.get(16..).ok_or(Error::Decrypt)?;
    let kiv = evp_bytes_to_key(passphrase.as_bytes(), &salt);
    aes_cbc::decrypt(&kiv.key, &kiv.iv, body).map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "03f63469-5a35-47cb-a6b4-e8c4d3144cf9";

    #[test]
    fn spec_vector_key_iv() {
        let kiv = evp_bytes_to_key(KEY.as_bytes(), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            hex::encode(*kiv.key),
            "bb0c32e1e0928275229045160002f849807c74823548fb21e5485e12ae78c4ab"
        );
        assert_eq!(hex::encode(*kiv.iv), "541d750b0654259d7d6e616f839f9f9b");
    }

    #[test]
    fn nack_vector_from_spec() {
        let ct = encrypt_with_salt("9b0e2dc3-f574-4766-abdd-c429dce11284", KEY, b"12345678");
        assert_eq!(
            ct,
            "U2FsdGVkX18xMjM0NTY3OA/DAxAE7MB6uXRedxeKlGybIwCC80GFkf3wxWdp90c8QwrsvTrL3r5fy4P+nbFE+Q=="
        );
    }

    #[test]
    fn rejects_malformed() {
        let good = encrypt_with_salt("hello", KEY, &[9; 8]);
        assert!(decrypt(&good, KEY).is_ok());
        // unpadded base64 is accepted, as by CryptoJS
        assert!(decrypt(good.trim_end_matches('='), KEY).is_ok());
        for bad in [
            "",
            "not base64!",
            "U2FsdGVkX1",
            &good[..good.len() - 4],
            &format!("{good}\n"),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(decrypt(bad, KEY).unwrap_err(), Error::Decrypt, "{bad:?}");
        }
        assert_eq!(decrypt(&good, "wrong").unwrap_err(), Error::Decrypt);
    }

    #[test]
    fn salt_of_reads_header() {
        let ct = encrypt_with_salt("x", KEY, b"abcdefgh");
        assert_eq!(salt_of(&ct), Some(*b"abcdefgh"));
        assert_eq!(salt_of("AAAA"), None);
    }
}
