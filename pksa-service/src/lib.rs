//! pksa-service: a HiveAuth (HAS) PKSA in service mode.
//!
//! A headless daemon that holds Hive keys, stays registered on one or more HAS relays, and
//! answers authentication, signing and challenge requests from apps, approving only what
//! its operator's policy allows (has-protocol.md §8.2; `../shared/ARCHITECTURE.md`).
//!
//! The binary is thin: it composes has-protocol (frames), has-crypto (keys, signatures),
//! hive-chain (operations, transactions, Hive API), the SQLite [`store`], the [`policy`]
//! and the [`audit`] chain. [`handlers`] decide one request each; [`conn`] keeps one socket
//! per HAS server; [`sandbox`] starts everything on loopback with no configuration.

pub mod audit;
pub mod cli;
pub mod config;
pub mod conn;
pub mod handlers;
pub mod health;
pub mod import;
pub mod keystore;
pub mod policy;
pub mod sandbox;
pub mod service;
pub mod spend;
pub mod store;
