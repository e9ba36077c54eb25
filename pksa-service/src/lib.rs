//! pksa-service: a HiveAuth (HAS) PKSA in service mode.
//!
//! A headless daemon that holds Hive keys, stays registered on one or more HAS relays, and
//! answers authentication, signing and challenge requests from apps, approving only what
//! its operator's policy allows (has-protocol.md §8.2; `docs/architecture.md`).
//!
//! Dependencies point one way: [`cli`] → [`daemon`] → `request` → {`sessions`, [`policy`],
//! [`state`]}.
//! * `request`: one pipeline for every request: intake → dedupe → resolve → decide (pure
//!   functions per command) → execute (the only awaits) → reply (the one wire mapping).
//! * `sessions`: the session cache and resolution by trial decryption.
//! * [`state`]: all SQL: sessions, answers, enrollments, spend counters, the audit chain.
//! * [`daemon`]: one connection task per HAS server, health and metrics, `run`.
//! * [`cli`]: the commands, the sandbox.

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod keystore;
pub mod policy;
pub(crate) mod request;
pub(crate) mod sessions;
pub mod state;
pub(crate) mod text;

pub use config::Settings;
pub use daemon::{Service, run};
pub use request::Core;
