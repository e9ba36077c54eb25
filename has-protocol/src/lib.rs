//! Typed HiveAuth (HAS) messages, their generated JSON Schemas, and frame validation.
//!
//! This crate is the only place that knows the JSON shapes of the HAS wire protocol
//! (has-protocol.md §1-3, §6-8). Every frame the relay, the service and the client read or
//! write goes through [`frame::parse`] / [`frame::parse_to_relay`] / [`frame::encode`], which
//! check it against the JSON Schema generated from these types (committed under `schemas/`,
//! regenerated and compared by `cargo xtask validate-schemas`).
//!
//! * [`messages`]: one `#[serde(tag = "cmd")]` enum per direction ([`AppToRelay`],
//!   [`PksaToRelay`], [`RelayToPksa`], [`RelayToApp`]) with an `Unknown` catch-all; unknown
//!   fields are ignored, `null` means absent, numbers are read leniently.
//! * [`payloads`]: the decrypted inner payloads; [`Encrypted<T>`] only yields a `T` through
//!   [`Encrypted::decrypt`].
//! * [`auth_payload`]: the QR code / `has://auth_req/` deep link.
//!
//! ```
//! use has_protocol::{AuthKey, Encrypted, frame, messages::*, payloads::*};
//!
//! let key = AuthKey::generate();
//! let data = SignReqData {
//!     key_type: has_protocol::KeyType::Posting,
//!     ops: vec![serde_json::json!(["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": 10000}])],
//!     broadcast: true,
//!     nonce: Some(has_protocol::Nonce(1690000000001)),
//! };
//! let frame = AppToRelay::SignReq(SignReq {
//!     account: "alice".parse().unwrap(),
//!     data: Encrypted::encrypt(&data, &key),
//!     token: None,
//! });
//! let text = frame::encode(&frame).unwrap();
//! let AppToRelay::SignReq(back) = frame::parse::<AppToRelay>(&text).unwrap() else { panic!() };
//! assert_eq!(back.data.decrypt(&key).unwrap(), data);
//! ```

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

pub mod auth_payload;
#[doc(hidden)]
pub mod corpus;
mod encrypted;
mod error;
pub mod frame;
pub mod messages;
pub mod payloads;
mod types;
pub mod validate;

pub use encrypted::{Encrypted, Payload, Prepared};
pub use error::{FrameError, PayloadError, ValidationFailure};
pub use messages::{AppToRelay, PksaToRelay, RelayToApp, RelayToPksa};
pub use types::{
    ACCOUNT_NAME_PATTERN, AccountName, AuthKey, AuthReqSecret, KeyType, Nonce, Passphrase,
    ProtocolVersion, RequestId, Seconds, UnixMillis,
};
