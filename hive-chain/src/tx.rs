//! Transactions: header, serialization, digest, id, signing, required authorities
//! (hive-crypto.md §3.2, §4.2).

use std::collections::BTreeSet;
use std::fmt;

use has_crypto::{PrivateKey, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ops::{Level, Operation};
use crate::types::{NoExtensions, TimePointSec};

/// A 32-byte chain id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainId(pub [u8; 32]);

impl ChainId {
    /// Hive mainnet (`beeab0de00…`).
    pub const MAINNET: ChainId = {
        let mut b = [0u8; 32];
        b[0] = 0xbe;
        b[1] = 0xea;
        b[2] = 0xb0;
        b[3] = 0xde;
        ChainId(b)
    };

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        let v = hex::decode(s).map_err(|_| Error::ChainId)?;
        v.try_into().map(ChainId).map_err(|_| Error::ChainId)
    }

    /// `mainnet`, `testnet` (hived's testnet id, sha256("testnet")), or 64 hex characters
    /// (mirrornet and private networks choose their own id: give it in hex).
    pub fn from_name(s: &str) -> Result<Self> {
        match s {
            "mainnet" => Ok(ChainId::MAINNET),
            "testnet" => Ok(ChainId(Sha256::digest(b"testnet").into())),
            other => ChainId::from_hex(other),
        }
    }

    /// The address prefix of public keys on this chain (STM on mainnet, TST elsewhere).
    pub fn address_prefix(&self) -> &'static str {
        if *self == ChainId::MAINNET {
            has_crypto::MAINNET_PREFIX
        } else {
            has_crypto::TESTNET_PREFIX
        }
    }

    /// Hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.to_hex())
    }
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Low 16 bits of the reference block number (TaPoS).
    pub ref_block_num: u16,
    /// Bytes 4..8 of the reference block id, little-endian (TaPoS).
    pub ref_block_prefix: u32,
    /// Expiry (at most 1 h after the head block time on chain).
    pub expiration: TimePointSec,
    /// Operations.
    pub operations: Vec<Operation>,
    /// Must be empty.
    #[serde(default)]
    pub extensions: NoExtensions,
}

/// A transaction with its signatures, as dhive returns and nodes accept it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransaction {
    /// Low 16 bits of the reference block number.
    pub ref_block_num: u16,
    /// Reference block prefix.
    pub ref_block_prefix: u32,
    /// Expiry.
    pub expiration: TimePointSec,
    /// Operations.
    pub operations: Vec<Operation>,
    /// Must be empty.
    #[serde(default)]
    pub extensions: NoExtensions,
    /// 65-byte compact signatures, hex.
    pub signatures: Vec<SignatureHex>,
}

/// A signature in JSON as 130 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureHex(pub Signature);

impl Serialize for SignatureHex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.0.to_hex())
        } else {
            s.serialize_bytes(&self.0.to_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for SignatureHex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Signature::from_hex(&s)
            .map(SignatureHex)
            .map_err(serde::de::Error::custom)
    }
}

/// Dynamic global properties the TaPoS header needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadBlock {
    /// Head block number.
    pub head_block_number: u32,
    /// Head block id (40 hex chars).
    pub head_block_id: String,
    /// Head block time.
    pub time: TimePointSec,
}

/// The longest expiration hived accepts after the head block time.
pub const MAX_EXPIRATION_SECS: u32 = 3600;

impl Transaction {
    /// Builds a transaction referencing the head block, expiring `expire_secs` after the head
    /// block time (dhive uses 60 s; at most [`MAX_EXPIRATION_SECS`]).
    pub fn new(head: &HeadBlock, operations: Vec<Operation>, expire_secs: u32) -> Result<Self> {
        if expire_secs == 0 || expire_secs > MAX_EXPIRATION_SECS {
            return Err(Error::Transaction(format!(
                "expiration must be 1..={MAX_EXPIRATION_SECS} s after the head block"
            )));
        }
        let id = hex::decode(&head.head_block_id)
            .map_err(|_| Error::Transaction("head_block_id is not hex".into()))?;
        let prefix: [u8; 4] = id
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Transaction("head_block_id is shorter than 8 bytes".into()))?;
        Ok(Transaction {
            ref_block_num: (head.head_block_number & 0xffff) as u16,
            ref_block_prefix: u32::from_le_bytes(prefix),
            expiration: TimePointSec(head.time.0.saturating_add(expire_secs)),
            operations,
            extensions: NoExtensions,
        })
    }

    /// The binary serialization (what is hashed).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        crate::ser::to_bytes(self)
    }

    /// `sha256(chain_id ‖ bytes)`: what is signed.
    pub fn digest(&self, chain: &ChainId) -> Result<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(chain.0);
        h.update(self.to_bytes()?);
        Ok(h.finalize().into())
    }

    /// The transaction id: first 20 bytes of `sha256(bytes)` (no chain id), as 40 hex chars.
    pub fn id(&self) -> Result<String> {
        let h = Sha256::digest(self.to_bytes()?);
        Ok(hex::encode(h.get(..20).unwrap_or_default()))
    }

    /// Signs with each key (dhive's deterministic scheme, so the bytes equal dhive's).
    pub fn sign(self, chain: &ChainId, keys: &[&PrivateKey]) -> Result<SignedTransaction> {
        let digest = self.digest(chain)?;
        let signatures = keys
            .iter()
            .map(|k| SignatureHex(k.sign_digest(&digest)))
            .collect();
        Ok(SignedTransaction {
            ref_block_num: self.ref_block_num,
            ref_block_prefix: self.ref_block_prefix,
            expiration: self.expiration,
            operations: self.operations,
            extensions: self.extensions,
            signatures,
        })
    }

    /// The (account, level) pairs all operations need, deduplicated, plus any authority
    /// that is not an account level. Since HF28 every level needs its own signature: a
    /// transaction mixing posting and active operations needs both keys.
    pub fn required(&self) -> RequiredAuthorities {
        let mut out = RequiredAuthorities::default();
        for op in &self.operations {
            let r = op.required();
            out.accounts.extend(r.accounts);
            out.other.extend(r.other);
        }
        out
    }
}

/// A transaction's required authorities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredAuthorities {
    /// (account, level), sorted and unique.
    pub accounts: BTreeSet<(String, Level)>,
    /// Authorities that are not an account's posting/active/owner.
    pub other: Vec<String>,
}

impl RequiredAuthorities {
    /// The highest level required of any account.
    pub fn max_level(&self) -> Option<Level> {
        self.accounts.iter().map(|(_, l)| *l).max()
    }
}

impl SignedTransaction {
    /// The unsigned part.
    pub fn transaction(&self) -> Transaction {
        Transaction {
            ref_block_num: self.ref_block_num,
            ref_block_prefix: self.ref_block_prefix,
            expiration: self.expiration,
            operations: self.operations.clone(),
            extensions: NoExtensions,
        }
    }

    /// The public keys that signed `digest(chain)`; an unrecoverable signature is an error.
    pub fn signers(&self, chain: &ChainId) -> Result<Vec<PublicKey>> {
        let digest = self.transaction().digest(chain)?;
        self.signatures
            .iter()
            .map(|s| {
                if !s.0.is_low_s() {
                    return Err(Error::Transaction(
                        "signature is not canonical (high S)".into(),
                    ));
                }
                s.0.recover(&digest)
                    .map_err(|e| Error::Transaction(format!("signature: {e}")))
            })
            .collect()
    }

    /// The JSON a node accepts (condenser form, as dhive produces it: absent optional
    /// fields of operations are left out, not `null`).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        let mut v = serde_json::to_value(self).map_err(|e| Error::Serialize(e.to_string()))?;
        if let Some(serde_json::Value::Array(ops)) = v.get_mut("operations") {
            for op in ops {
                if let Some(body) = op.get_mut(1) {
                    crate::ops::drop_nulls(body);
                }
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_vote_transaction() {
        let op = Operation::from_json(json!(["vote", {"voter": "alice", "author": "bob", "permlink": "my-first-post", "weight": 10000}]), 0).unwrap();
        let tx = Transaction {
            ref_block_num: 34567,
            ref_block_prefix: 3451789012,
            expiration: "2023-11-14T22:13:20".parse().unwrap(),
            operations: vec![op],
            extensions: NoExtensions,
        };
        assert_eq!(
            hex::encode(tx.to_bytes().unwrap()),
            "0787d41ebecd00f15365010005616c69636503626f620d6d792d66697273742d706f7374102700"
        );
        let key = PrivateKey::from_login("alice", "pw", has_crypto::KeyRole::Posting).unwrap();
        let signed = tx.clone().sign(&ChainId::MAINNET, &[&key]).unwrap();
        assert_eq!(
            signed.signers(&ChainId::MAINNET).unwrap(),
            vec![*key.public_key()]
        );
        let j = signed.to_json().unwrap();
        let back: SignedTransaction = serde_json::from_value(j).unwrap();
        assert_eq!(back, signed);
    }

    #[test]
    fn absent_optionals_are_left_out_of_the_json_as_dhive_does() {
        let op = Operation::from_json(
            json!(["account_update2", {"account": "alice", "json_metadata": "", "posting_json_metadata": "{}"}]),
            0,
        )
        .unwrap();
        let tx = Transaction {
            ref_block_num: 1,
            ref_block_prefix: 2,
            expiration: "2023-11-14T22:13:20".parse().unwrap(),
            operations: vec![op.clone()],
            extensions: NoExtensions,
        };
        let key = PrivateKey::from_login("alice", "pw", has_crypto::KeyRole::Active).unwrap();
        let signed = tx.sign(&ChainId::MAINNET, &[&key]).unwrap();
        let text = signed.to_json().unwrap().to_string();
        assert!(!text.contains("null"), "{text}");
        assert!(!op.to_json().unwrap().to_string().contains("null"));
        // It reads back as the same transaction (absent = None).
        let back: SignedTransaction = serde_json::from_str(&text).unwrap();
        assert_eq!(back, signed);
    }

    #[test]
    fn tapos_from_head_block() {
        let head = HeadBlock {
            head_block_number: 0x0102_8707,
            head_block_id: "01028707d41ebecd000000000000000000000000".into(),
            time: TimePointSec(1700000000),
        };
        let tx = Transaction::new(&head, vec![], 60).unwrap();
        assert_eq!(tx.ref_block_num, 0x8707);
        assert_eq!(
            tx.ref_block_prefix,
            u32::from_le_bytes([0xd4, 0x1e, 0xbe, 0xcd])
        );
        assert_eq!(tx.expiration.0, 1700000060);
        assert!(Transaction::new(&head, vec![], 3601).is_err());
    }

    #[test]
    fn chain_ids() {
        assert_eq!(
            ChainId::from_name("mainnet").unwrap().to_hex(),
            format!("beeab0de{}", "0".repeat(56))
        );
        assert_eq!(
            ChainId::from_name("testnet").unwrap().address_prefix(),
            "TST"
        );
        assert!(ChainId::from_name("nope").is_err());
    }
}
