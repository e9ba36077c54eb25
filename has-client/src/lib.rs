//! The app side of HiveAuth (HAS), as a library (has-protocol.md §5, §8.3).
//!
//! One [`HasClient`] holds one WebSocket to a HAS server. Requests are correlated strictly:
//! each `*_wait` is matched to the oldest unanswered request of the same command and account
//! (the server answers a socket's frames in order), every reply by its uuid only, and an
//! `error` only to the request it answers. Results are verified before they are returned: a
//! challenge signature must recover to the returned public key, a sign-only transaction must
//! carry the requested operations and valid signatures (and, with a Hive API client, satisfy
//! the account's authority).
//!
//! ```no_run
//! # async fn demo() -> Result<(), has_client::ClientError> {
//! use has_client::{HasClient, AuthMode};
//! use has_protocol::{payloads::AppInfo, AuthReqSecret, KeyType};
//! let client = HasClient::connect("ws://127.0.0.1:7000").await?;
//! let app = AppInfo { name: "my-bot".into(), description: None, icon: None, pubkey: None };
//! let session = client
//!     .authenticate("alice", app, None, AuthMode::ServiceSecret(AuthReqSecret::new("secret")))
//!     .await?;
//! let sig = client.challenge(&session, KeyType::Posting, "login:alice", false).await?;
//! println!("{} signed by {}", sig.challenge, sig.pubkey);
//! # Ok(()) }
//! ```

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

mod client;
mod error;
mod session;

pub use client::{AuthMode, ChallengeResult, HasClient, SignResult};
pub use error::ClientError;
pub use session::Session;
