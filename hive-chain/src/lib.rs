//! Hive chain data for a HAS PKSA: every user-signable operation in both JSON forms,
//! transaction serialization exactly as hived, digests, ids, dhive-identical signing,
//! required authorities, and (features `rpc`, `dry-run`) a JSON-RPC client with node
//! failover and a local dry-run node.
//!
//! Spec: hive-crypto.md §4 (serialization), §7-8 (operation ids, authorities). The
//! serializer is pure and synchronous; vectors generated from @hiveio/dhive check it byte
//! for byte (`tests/vectors/transactions.json`, `cargo xtask vectors`).
//!
//! ```
//! use hive_chain::{ChainId, HeadBlock, Operation, Transaction, TimePointSec};
//! let ops = Operation::list_from_json(&[serde_json::json!(
//!     ["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": 10000}]
//! )]).unwrap();
//! let head = HeadBlock { head_block_number: 1, head_block_id: "00000001aabbccdd00000000000000000000000".to_owned() + "0", time: TimePointSec(1700000000) };
//! let tx = Transaction::new(&head, ops, 60).unwrap();
//! let key = has_crypto::PrivateKey::from_login("alice", "pw", has_crypto::KeyRole::Posting).unwrap();
//! let signed = tx.sign(&ChainId::MAINNET, &[&key]).unwrap();
//! assert_eq!(signed.signers(&ChainId::MAINNET).unwrap(), vec![*key.public_key()]);
//! ```

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

pub mod accounts;
mod error;
pub mod ops;
pub mod ser;
pub mod tx;
pub mod types;
pub mod validate;

#[cfg(feature = "rpc")]
pub mod rpc;

#[cfg(feature = "dry-run")]
pub mod dryrun;

#[cfg(feature = "arbitrary")]
pub mod arb;

pub use error::{Error, Result};
pub use ops::{Level, Operation, Required};
pub use tx::{ChainId, HeadBlock, RequiredAuthorities, SignedTransaction, Transaction};
pub use types::{Asset, Authority, PublicKeyField, Symbol, TimePointSec};
