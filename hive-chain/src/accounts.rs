//! Accounts as nodes return them (`condenser_api.get_accounts`,
//! `database_api.find_accounts`), and hived's authority check.

use std::collections::{HashMap, HashSet};

use has_crypto::PublicKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ops::Level;
use crate::types::{Authority, PublicKeyField};

/// hived's `HIVE_MAX_SIG_CHECK_DEPTH`: how deep account_auths are followed.
pub const MAX_SIG_CHECK_DEPTH: u32 = 2;

/// The parts of an account a PKSA and a relay need. Other fields a node returns are ignored,
/// so the JSON array of `condenser_api.get_accounts` reads as `Vec<Account>` directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account name.
    pub name: String,
    /// Owner authority.
    pub owner: Authority,
    /// Active authority.
    pub active: Authority,
    /// Posting authority.
    pub posting: Authority,
    /// Memo key.
    pub memo_key: PublicKeyField,
}

impl Account {
    /// The authority of a level.
    pub fn authority(&self, level: Level) -> &Authority {
        match level {
            Level::Posting => &self.posting,
            Level::Active => &self.active,
            Level::Owner => &self.owner,
        }
    }

    /// Every public key of the account: memo key and the keys of the posting, active and
    /// owner authorities (what a relay accepts as the sender of a Proof of Key).
    pub fn public_keys(&self) -> HashSet<PublicKey> {
        let mut out = HashSet::new();
        if let Some(k) = self.memo_key.key() {
            out.insert(*k);
        }
        for auth in [&self.posting, &self.active, &self.owner] {
            out.extend(
                auth.key_auths
                    .0
                    .iter()
                    .filter_map(|(k, _)| k.key().copied()),
            );
        }
        out
    }

    /// A new account whose four roles use the given keys (1-of-1 authorities).
    pub fn with_keys(
        name: &str,
        owner: PublicKey,
        active: PublicKey,
        posting: PublicKey,
        memo: PublicKey,
    ) -> Self {
        Account {
            name: name.to_owned(),
            owner: Authority::single_key(owner),
            active: Authority::single_key(active),
            posting: Authority::single_key(posting),
            memo_key: PublicKeyField::new(memo),
        }
    }
}

/// Accounts by name.
pub type AccountMap = HashMap<String, Account>;

fn satisfied(
    auth: &Authority,
    level: Level,
    signers: &HashSet<PublicKey>,
    accounts: &AccountMap,
    depth: u32,
) -> bool {
    let mut weight: u64 = 0;
    for (k, w) in &auth.key_auths.0 {
        if k.key().is_some_and(|k| signers.contains(k)) {
            weight += u64::from(*w);
        }
    }
    if depth < MAX_SIG_CHECK_DEPTH {
        for (name, w) in &auth.account_auths.0 {
            if let Some(acct) = accounts.get(name)
                && satisfied(acct.authority(level), level, signers, accounts, depth + 1)
            {
                weight += u64::from(*w);
            }
        }
    }
    weight >= u64::from(auth.weight_threshold) && auth.weight_threshold > 0
}

/// Whether `signers` satisfy `level` of `account` as hived checks it since HF28: posting
/// needs the posting authority (strict: active/owner no longer count), active is satisfied
/// by the active or the owner authority, owner by the owner authority.
pub fn has_authority(
    account: &Account,
    level: Level,
    signers: &HashSet<PublicKey>,
    accounts: &AccountMap,
) -> bool {
    match level {
        Level::Posting => satisfied(&account.posting, Level::Posting, signers, accounts, 0),
        Level::Active => {
            satisfied(&account.active, Level::Active, signers, accounts, 0)
                || satisfied(&account.owner, Level::Owner, signers, accounts, 0)
        }
        Level::Owner => satisfied(&account.owner, Level::Owner, signers, accounts, 0),
    }
}

/// Errors loading accounts.
#[derive(Debug, thiserror::Error)]
pub enum AccountsFileError {
    /// Not readable.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    /// Not the get_accounts JSON array.
    #[error("{0} is not a condenser_api.get_accounts JSON array: {1}")]
    Format(String, String),
}

/// Parses the JSON array `condenser_api.get_accounts` returns.
pub fn parse_accounts(
    json: &str,
    origin: &str,
) -> Result<Vec<(Account, Value)>, AccountsFileError> {
    let raw: Vec<Value> = serde_json::from_str(json)
        .map_err(|e| AccountsFileError::Format(origin.into(), e.to_string()))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<Account>(v.clone())
                .map(|a| (a, v))
                .map_err(|e| AccountsFileError::Format(origin.into(), format!("account {i}: {e}")))
        })
        .collect()
}

/// Reads an accounts file.
pub fn load_accounts_file(
    path: &std::path::Path,
) -> Result<Vec<(Account, Value)>, AccountsFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AccountsFileError::Io(path.display().to_string(), e))?;
    parse_accounts(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use has_crypto::{KeyRole, PrivateKey};

    fn keys(name: &str) -> [PrivateKey; 4] {
        KeyRole::ALL.map(|r| PrivateKey::from_login(name, "pw", r).unwrap())
    }

    fn account(name: &str) -> Account {
        let [m, p, a, o] = keys(name);
        Account::with_keys(
            name,
            *o.public_key(),
            *a.public_key(),
            *p.public_key(),
            *m.public_key(),
        )
    }

    #[test]
    fn levels_hf28() {
        let alice = account("alice");
        let [_, p, a, o] = keys("alice");
        let map = AccountMap::new();
        let set = |k: &PrivateKey| HashSet::from([*k.public_key()]);
        assert!(has_authority(&alice, Level::Posting, &set(&p), &map));
        assert!(
            !has_authority(&alice, Level::Posting, &set(&a), &map),
            "HF28: active does not satisfy posting"
        );
        assert!(has_authority(&alice, Level::Active, &set(&a), &map));
        assert!(has_authority(&alice, Level::Active, &set(&o), &map));
        assert!(!has_authority(&alice, Level::Active, &set(&p), &map));
        assert!(!has_authority(&alice, Level::Owner, &set(&a), &map));
    }

    #[test]
    fn account_auths_and_condenser_json() {
        let bob = account("bob");
        let mut alice = account("alice");
        alice.posting.account_auths.0.push(("bob".into(), 1));
        let map = AccountMap::from([("bob".to_owned(), bob)]);
        let [_, bob_posting, _, _] = keys("bob");
        assert!(has_authority(
            &alice,
            Level::Posting,
            &HashSet::from([*bob_posting.public_key()]),
            &map
        ));
        let json = serde_json::json!([{
            "id": 1, "name": "alice", "balance": "1.000 HIVE",
            "owner": {"weight_threshold": 1, "account_auths": [], "key_auths": [[alice.owner.key_auths.0[0].0.to_string(), 1]]},
            "active": {"weight_threshold": 1, "account_auths": [], "key_auths": [[alice.active.key_auths.0[0].0.to_string(), 1]]},
            "posting": {"weight_threshold": 1, "account_auths": [["bob", 1]], "key_auths": [[alice.posting.key_auths.0[0].0.to_string(), 1]]},
            "memo_key": alice.memo_key.to_string(), "json_metadata": ""
        }]);
        let parsed: Vec<Account> = serde_json::from_value(json).unwrap();
        assert_eq!(parsed[0], alice);
        assert_eq!(parsed[0].public_keys().len(), 4);
    }
}
