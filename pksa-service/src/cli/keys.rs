//! `pksa-service keys add|list|remove`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use has_crypto::{KeyRole, PrivateKey, SecretString};

use super::{KeysCmd, load_config};
use crate::config::KeySource;
use crate::keystore::{KeyStore, read_new_passphrase, read_passphrase};

fn read_wif() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        Ok(SecretString::new(rpassword::prompt_password(
            "WIF private key (not echoed): ",
        )?))
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let s = SecretString::new(line.trim().to_owned());
        line.clear();
        Ok(s)
    }
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
            let wif = read_wif()?;
            let key = PrivateKey::from_wif(wif.expose_secret())
                .map_err(|e| anyhow::anyhow!("not a valid WIF private key: {e}"))?;
            let public = *key.public_key();
            ks.add(&account, role, key).map_err(anyhow::Error::msg)?;
            ks.save(&ks_path, &pass, None)?;
            println!("added {account} {role} {public}");
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
