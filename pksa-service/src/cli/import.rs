//! `pksa-service import`: converts the reference PKSA's `storage.json` (accounts, sessions
//! with their nonces) and `keys.json` into the encrypted keystore and the state store.

use std::path::Path;

use has_protocol::AuthKey;
use serde::Deserialize;

use super::open_keys;
use crate::config::{Config, KeySource};
use crate::keystore::{KeyStore, read_new_passphrase, read_passphrase};
use crate::state::sessions::{self, NewSession};
use crate::state::{self, Sealer, Store, now_ms};

#[derive(Debug, Deserialize)]
struct Storage {
    #[serde(default)]
    accounts: Vec<StorageAccount>,
}

#[derive(Debug, Deserialize)]
struct StorageAccount {
    name: String,
    #[serde(default)]
    auths: Vec<StorageAuth>,
}

#[derive(Debug, Deserialize)]
struct StorageAuth {
    key: String,
    expire: serde_json::Value,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
}

fn as_i64(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Runs the import into the keystore and store the config names.
pub(super) fn run(config_path: &Path, storage: &Path, keys: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let KeySource::Keystore {
        path: ks_path,
        passphrase,
    } = &config.keys
    else {
        anyhow::bail!(
            "import writes an encrypted keystore: set `keystore` in {}",
            config_path.display()
        );
    };
    let imported = KeyStore::reference_keys_from_str(
        &std::fs::read_to_string(keys)?,
        &keys.display().to_string(),
    )?;
    let (mut ks, pass) = if ks_path.exists() {
        (open_keys(&config)?, read_passphrase(passphrase)?)
    } else {
        (KeyStore::new(), read_new_passphrase(passphrase)?)
    };
    let mut n_keys = 0;
    for (name, acct) in imported.accounts() {
        for (role, _) in acct.public_keys() {
            if let Some(k) = acct.get(role) {
                ks.add(name, role, k.clone()).map_err(anyhow::Error::msg)?;
                n_keys += 1;
            }
        }
    }
    ks.save(ks_path, &pass, None)?;
    let storage: Storage = serde_json::from_str(&std::fs::read_to_string(storage)?)
        .map_err(|e| anyhow::anyhow!("{}: not a reference storage.json: {e}", storage.display()))?;
    let store = Store::open(
        &config.state,
        Sealer::new(ks.state_key().clone()),
        state::Sync::Full,
    )?;
    let now = now_ms();
    let (mut imported_sessions, mut skipped) = (0, 0);
    for acct in storage.accounts {
        for auth in acct.auths {
            let Some(expire) = as_i64(&auth.expire) else {
                skipped += 1;
                continue;
            };
            if expire <= now || auth.key.is_empty() {
                skipped += 1;
                continue;
            }
            let nonce = auth.nonce.as_ref().and_then(as_i64).unwrap_or(0);
            let (name, app, key, sealer) = (
                acct.name.clone(),
                auth.app.clone().unwrap_or_else(|| "imported".into()),
                AuthKey::new(auth.key.clone()),
                store.sealer().clone(),
            );
            let r = store.call_blocking(move |c| {
                if sessions::by_key(c, &sealer, &key)?.is_some() {
                    return Ok(false);
                }
                let new = NewSession {
                    account: name,
                    app,
                    key,
                    expire,
                    max_expire: expire,
                    origin: "import",
                    token: None,
                    nonce_floor: nonce,
                };
                sessions::insert(c, &sealer, &new)?;
                Ok(true)
            })?;
            if r {
                imported_sessions += 1
            } else {
                skipped += 1
            }
        }
    }
    println!(
        "imported {n_keys} key(s) into {}, {imported_sessions} live session(s) into {} ({skipped} expired or duplicate skipped)",
        ks_path.display(),
        config.state.display()
    );
    Ok(())
}
