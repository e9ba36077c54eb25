//! `pksa-service keys add|derive|generate|list|remove`.
//!
//! A key added or derived is checked against the account on chain when a `hive_api` node
//! answers: an owner key is refused (the service never signs with owner authority and never
//! needs that key), a key outside the role's authority is warned about.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use has_crypto::{KeyRole, PrivateKey, SecretString};

use super::{KeysCmd, load_config};
use crate::config::{Config, KeySource};
use crate::keystore::{KeyStore, read_new_passphrase, read_passphrase};

/// A secret from a prompt (not echoed) at a terminal, else the first line of stdin (its line
/// ending removed; the buffer is zeroized).
fn read_secret(prompt: &str) -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        Ok(SecretString::new(rpassword::prompt_password(prompt)?))
    } else {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(SecretString::new(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    }
}

fn parse_role(role: &str) -> anyhow::Result<KeyRole> {
    match role.parse() {
        Ok(KeyRole::Owner) | Err(()) => anyhow::bail!("role must be memo, posting or active"),
        Ok(r) => Ok(r),
    }
}

/// Checks `public` against `account` on the chain the config names (when a node answers):
/// Err for the account's owner key; a warning on stderr when the role's authority does not
/// hold it, or when the check could not be made.
fn check_on_chain(
    config: &Config,
    account: &str,
    role: KeyRole,
    public: &has_crypto::PublicKey,
) -> anyhow::Result<()> {
    let found = tokio::runtime::Handle::current().block_on(async {
        let rpc = hive_chain::rpc::RpcClient::new(
            config.hive_api.clone(),
            hive_chain::rpc::RpcOptions {
                timeout: std::time::Duration::from_secs(5),
                rounds: 1,
                ..Default::default()
            },
        )?;
        rpc.get_accounts(&[account.to_owned()]).await
    });
    let prefix = config.chain_id.address_prefix();
    let shown = public.to_string_with_prefix(prefix);
    let accounts = match found {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "note: could not check the key against {account} on chain ({e}); check it yourself"
            );
            return Ok(());
        }
    };
    let Some(acc) = accounts.iter().find(|a| a.name == account) else {
        eprintln!("warning: the Hive API knows no account {account}");
        return Ok(());
    };
    let holds = |auth: &hive_chain::types::Authority| {
        auth.key_auths
            .0
            .iter()
            .any(|(k, _)| k.key() == Some(public))
    };
    if holds(&acc.owner) {
        anyhow::bail!(
            "{shown} is {account}'s owner key: the service never signs with owner authority and never stores that key"
        );
    }
    let in_role = match role {
        KeyRole::Memo => acc.memo_key.key() == Some(public),
        KeyRole::Posting => holds(&acc.posting),
        KeyRole::Active => holds(&acc.active),
        KeyRole::Owner => false,
    };
    if !in_role {
        eprintln!(
            "warning: {shown} is not in {account}'s {role} authority on chain: what it signs will be refused by the network until it is"
        );
    }
    Ok(())
}

pub(super) fn run(path: &Path, cmd: KeysCmd) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let (ks_path, source) = match &config.keys {
        KeySource::Keystore { path, passphrase } => (path.clone(), passphrase.clone()),
        KeySource::PlainKeysJson(p) => anyhow::bail!(
            "keys are in the plaintext {}: use an encrypted keystore for `keys` commands",
            p.display()
        ),
    };
    // A new keystore's passphrase is asked twice at a prompt (a typo would lock the keys).
    let (mut ks, pass) = if ks_path.exists() {
        let pass = read_passphrase(&source)?;
        (KeyStore::open(&ks_path, &pass)?, pass)
    } else {
        (KeyStore::new(), read_new_passphrase(&source)?)
    };
    match cmd {
        KeysCmd::Add { account, role } => {
            has_protocol::AccountName::new(&account).map_err(anyhow::Error::msg)?;
            let role: KeyRole = role
                .parse()
                .map_err(|_| anyhow::anyhow!("role must be memo, posting or active"))?;
            let wif = read_secret("WIF private key (not echoed): ")?;
            let key = PrivateKey::from_wif(wif.expose_secret().trim())
                .map_err(|e| anyhow::anyhow!("not a valid WIF private key: {e}"))?;
            let public = *key.public_key();
            if role != KeyRole::Owner {
                check_on_chain(&config, &account, role, &public)?;
            }
            ks.add(&account, role, key).map_err(anyhow::Error::msg)?;
            ks.save(&ks_path, &pass, None)?;
            println!("added {account} {role} {public}");
        }
        KeysCmd::Derive { account, roles } => {
            has_protocol::AccountName::new(&account).map_err(anyhow::Error::msg)?;
            let roles: Vec<KeyRole> = if roles.is_empty() {
                vec![KeyRole::Posting, KeyRole::Memo]
            } else {
                roles
                    .iter()
                    .map(|r| parse_role(r))
                    .collect::<Result<_, _>>()?
            };
            let password = read_secret("Master password of the account (not echoed): ")?;
            if password.expose_secret().is_empty() {
                anyhow::bail!("the password is empty");
            }
            let mut added = vec![];
            for role in roles {
                let key = PrivateKey::from_login(&account, password.expose_secret(), role)?;
                let public = *key.public_key();
                check_on_chain(&config, &account, role, &public)?;
                ks.add(&account, role, key).map_err(anyhow::Error::msg)?;
                added.push((role, public));
            }
            ks.save(&ks_path, &pass, None)?;
            for (role, public) in added {
                println!("added {account} {role} {public}");
            }
            println!("(the owner key derived from the same password is not stored)");
        }
        KeysCmd::Generate { account, role } => {
            has_protocol::AccountName::new(&account).map_err(anyhow::Error::msg)?;
            let role = parse_role(&role)?;
            let key = PrivateKey::generate();
            let public = *key.public_key();
            ks.add(&account, role, key).map_err(anyhow::Error::msg)?;
            ks.save(&ks_path, &pass, None)?;
            println!("generated {account} {role} {public}");
            eprintln!(
                "put {public} in {account}'s {role} authority on chain (account_update) before apps use it"
            );
        }
        KeysCmd::List { json } => {
            for (name, keys) in ks.accounts() {
                for (role, public) in keys.public_keys() {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"account": name, "role": role.as_str(),
                                "public_key": public.to_string()})
                        );
                    } else {
                        println!("{name}\t{role}\t{public}");
                    }
                }
            }
        }
        KeysCmd::Remove { account, role } => {
            let role = role
                .map(|r| {
                    r.parse::<KeyRole>()
                        .map_err(|_| anyhow::anyhow!("role must be memo, posting or active"))
                })
                .transpose()?;
            if !ks.remove(&account, role) {
                anyhow::bail!("no such key");
            }
            ks.save(&ks_path, &pass, None)?;
            println!("removed");
        }
    }
    Ok(())
}
