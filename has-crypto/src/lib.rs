//! Byte-compatible HiveAuth (HAS) and Hive cryptography.
//!
//! Everything the HAS relay, the service PKSA and the app client put on the wire or sign goes
//! through this crate, and every byte matches what the public JS libraries produce
//! (crypto-js 4.2.0, @hiveio/hive-js 2.0.9, @hiveio/dhive 1.3.6); the test vectors under
//! `tests/vectors/` were generated from those packages by `cargo xtask vectors`.
//!
//! * [`cryptojs`]: CryptoJS passphrase AES, the encryption of every HAS payload
//!   (has-protocol.md §4.1, hive-crypto.md §6).
//! * [`keys`]: WIF private keys and `STM…` public keys (hive-crypto.md §1-2).
//! * [`sign`]: canonical compact signatures: hive-js `signBuffer` for challenges, dhive
//!   `sign` for transactions, verification and recovery (hive-crypto.md §3).
//! * [`memo`]: Hive encrypted memos and HAS Proof of Key (hive-crypto.md §5,
//!   has-protocol.md §4.5-4.6).
//!
//! The crate is pure and synchronous. Secrets are typed ([`PrivateKey`], [`SecretString`]),
//! zeroized on drop and redacted in `Debug`. Decryption failures are one opaque error.
//!
//! ```
//! use has_crypto::{cryptojs, memo, PrivateKey};
//!
//! // An app encrypts a HAS payload with its auth_key; the PKSA decrypts it.
//! let auth_key = "03f63469-5a35-47cb-a6b4-e8c4d3144cf9";
//! let data = cryptojs::encrypt(r#"{"key_type":"posting","challenge":"hi"}"#, auth_key);
//! let plain = cryptojs::decrypt(&data, auth_key).unwrap();
//!
//! // The PKSA signs the challenge exactly as hive-js would.
//! let key = PrivateKey::from_login("alice", "password", has_crypto::KeyRole::Posting).unwrap();
//! let sig = key.sign_buffer(b"hi");
//! assert_eq!(sig.recover_buffer(b"hi").unwrap(), *key.public_key());
//! # let _ = plain;
//! ```

mod aes_cbc;
mod aesx;
pub mod base58;
pub mod cryptojs;
mod error;
pub mod keys;
mod md5x;
pub mod memo;
mod secret;
pub mod sign;

pub use error::{Error, Result};
pub use keys::{KeyRole, MAINNET_PREFIX, PrivateKey, PublicKey, TESTNET_PREFIX};
pub use memo::{MemoChannel, SharedSecret, SharedSecretCache};
pub use secret::{SecretBytes, SecretString};
pub use sign::Signature;
