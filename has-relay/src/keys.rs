//! The persistent server key and the account key directory.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use has_crypto::{PrivateKey, PublicKey};
use hive_chain::rpc::{RpcClient, RpcOptions};

/// Loads the server key from `path`, or generates it there (mode 0600) on first start.
pub fn load_or_create_server_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "server key file {} has mode {mode:o}; it must not be readable by others (chmod 600)",
                    path.display()
                );
            }
        }
        let text = std::fs::read_to_string(path)?;
        return PrivateKey::from_wif(text.trim())
            .map_err(|e| anyhow::anyhow!("server key file {}: {e}", path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let key = PrivateKey::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(key.to_wif().expose_secret().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    tracing::info!(path = %path.display(), public_key = %key.public_key(), "generated a new server key");
    Ok(key)
}

/// Account name → every public key of the account (memo, posting, active, owner).
pub type AccountKeys = HashMap<String, HashSet<PublicKey>>;

/// A cached lookup: the account's keys (None = no such account) and when it was fetched.
pub type CacheEntry = (Option<HashSet<PublicKey>>, Instant);

/// Where the relay looks up account keys.
#[derive(Debug)]
pub enum Directory {
    /// Fixed accounts (a get_accounts JSON file).
    Static(AccountKeys),
    /// Hive API nodes with a short cache.
    Nodes {
        /// The client.
        client: RpcClient,
        /// Cache entries: keys (None = account does not exist) and when fetched.
        cache: Mutex<HashMap<String, CacheEntry>>,
        /// Cache lifetime.
        ttl: Duration,
    },
}

impl Directory {
    /// From a get_accounts JSON file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let accounts: Vec<_> = hive_chain::accounts::load_accounts_file(path)?
            .into_iter()
            .map(|(a, _)| a)
            .collect();
        Ok(Directory::Static(
            accounts
                .into_iter()
                .map(|a| (a.name.clone(), a.public_keys()))
                .collect(),
        ))
    }

    /// From Hive API nodes.
    pub fn from_nodes(nodes: Vec<String>, ttl: Duration) -> anyhow::Result<Self> {
        let client = RpcClient::new(nodes, RpcOptions::default())?;
        Ok(Directory::Nodes {
            client,
            cache: Mutex::new(HashMap::new()),
            ttl,
        })
    }

    /// Keys of each named account; an account that does not exist is absent from the map.
    pub async fn lookup(&self, names: &[String]) -> anyhow::Result<AccountKeys> {
        match self {
            Directory::Static(map) => Ok(names
                .iter()
                .filter_map(|n| map.get(n).map(|k| (n.clone(), k.clone())))
                .collect()),
            Directory::Nodes { client, cache, ttl } => {
                let mut out = AccountKeys::new();
                let mut missing = vec![];
                if let Ok(c) = cache.lock() {
                    for n in names {
                        match c.get(n) {
                            Some((keys, at)) if at.elapsed() < *ttl => {
                                if let Some(k) = keys {
                                    out.insert(n.clone(), k.clone());
                                }
                            }
                            _ => missing.push(n.clone()),
                        }
                    }
                }
                if !missing.is_empty() {
                    let fetched = client.get_accounts(&missing).await?;
                    let mut c = cache
                        .lock()
                        .map_err(|_| anyhow::anyhow!("account cache poisoned"))?;
                    for n in &missing {
                        let keys = fetched
                            .iter()
                            .find(|a| &a.name == n)
                            .map(|a| a.public_keys());
                        if let Some(k) = &keys {
                            out.insert(n.clone(), k.clone());
                        }
                        c.insert(n.clone(), (keys, Instant::now()));
                    }
                }
                Ok(out)
            }
        }
    }
}
