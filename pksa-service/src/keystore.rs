//! Keys: an age-encrypted keystore, or (discouraged) a plaintext reference keys.json.
//!
//! The keystore plaintext is JSON `{"version":1,"state_key":hex,"accounts":{name:{role:wif}}}`;
//! the state key encrypts session keys at rest in the SQLite store. Private keys never reach
//! logs: they are [`PrivateKey`]s (redacted `Debug`, zeroized).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::io::{Read, Write};
use std::path::Path;

use has_crypto::{KeyRole, PrivateKey, PublicKey, SecretBytes, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::PassphraseSource;

/// The keys of one account.
#[derive(Debug, Clone, Default)]
pub struct AccountKeys {
    /// Memo key.
    pub memo: Option<PrivateKey>,
    /// Posting key.
    pub posting: Option<PrivateKey>,
    /// Active key.
    pub active: Option<PrivateKey>,
}

impl AccountKeys {
    /// The key of a role (owner keys are never held).
    pub fn get(&self, role: KeyRole) -> Option<&PrivateKey> {
        match role {
            KeyRole::Memo => self.memo.as_ref(),
            KeyRole::Posting => self.posting.as_ref(),
            KeyRole::Active => self.active.as_ref(),
            KeyRole::Owner => None,
        }
    }

    fn slot(&mut self, role: KeyRole) -> Option<&mut Option<PrivateKey>> {
        match role {
            KeyRole::Memo => Some(&mut self.memo),
            KeyRole::Posting => Some(&mut self.posting),
            KeyRole::Active => Some(&mut self.active),
            KeyRole::Owner => None,
        }
    }

    /// The lowest key held, memo → posting → active (the Proof of Key key).
    pub fn lowest(&self) -> Option<&PrivateKey> {
        self.memo
            .as_ref()
            .or(self.posting.as_ref())
            .or(self.active.as_ref())
    }

    /// Every public key held with its role.
    pub fn public_keys(&self) -> Vec<(KeyRole, PublicKey)> {
        [KeyRole::Memo, KeyRole::Posting, KeyRole::Active]
            .into_iter()
            .filter_map(|r| self.get(r).map(|k| (r, *k.public_key())))
            .collect()
    }
}

/// All keys of the service plus the state key.
#[derive(Debug, Clone)]
pub struct KeyStore {
    accounts: BTreeMap<String, AccountKeys>,
    state_key: SecretBytes,
}

#[derive(Serialize, Deserialize)]
struct KeystoreJson {
    version: u32,
    state_key: String,
    accounts: BTreeMap<String, BTreeMap<String, String>>,
}

/// One entry of the reference PKSA's keys.json.
#[derive(Deserialize)]
struct ReferenceKeys {
    name: String,
    #[serde(default)]
    memo: Option<String>,
    #[serde(default)]
    posting: Option<String>,
    #[serde(default)]
    active: Option<String>,
    #[serde(default)]
    owner: Option<String>,
}

/// Keystore errors (never containing key material).
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// I/O.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Wrong passphrase or damaged file.
    #[error("{0}: cannot decrypt the keystore (wrong passphrase or damaged file)")]
    Decrypt(String),
    /// Content is not what we wrote.
    #[error("{0}: {1}")]
    Format(String, String),
    /// Plaintext keys file readable by others.
    #[error("{0} has mode {1:o}; a plaintext keys file must be mode 0600 (chmod 600)")]
    Permissions(String, u32),
    /// Passphrase unavailable.
    #[error("keystore passphrase: {0}")]
    Passphrase(String),
}

fn random_state_key() -> SecretBytes {
    let mut b = Zeroizing::new(vec![0u8; 32]);
    rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
    SecretBytes::new(b.to_vec())
}

impl Default for KeyStore {
    fn default() -> Self {
        KeyStore::new()
    }
}

impl KeyStore {
    /// An empty keystore with a fresh state key.
    pub fn new() -> Self {
        KeyStore {
            accounts: BTreeMap::new(),
            state_key: random_state_key(),
        }
    }

    /// The key that encrypts session keys at rest.
    pub fn state_key(&self) -> &SecretBytes {
        &self.state_key
    }

    /// Accounts and their keys.
    pub fn accounts(&self) -> &BTreeMap<String, AccountKeys> {
        &self.accounts
    }

    /// Keys of one account.
    pub fn account(&self, name: &str) -> Option<&AccountKeys> {
        self.accounts.get(name)
    }

    /// Adds (or replaces) a key. Owner keys are refused: this service never uses them.
    pub fn add(&mut self, account: &str, role: KeyRole, key: PrivateKey) -> Result<(), String> {
        let entry = self.accounts.entry(account.to_owned()).or_default();
        let slot = entry
            .slot(role)
            .ok_or("owner keys are never stored: the service never signs with owner authority")?;
        *slot = Some(key);
        Ok(())
    }

    /// Removes a role's key (or every key of the account when `role` is None). Returns
    /// whether anything was removed.
    pub fn remove(&mut self, account: &str, role: Option<KeyRole>) -> bool {
        match role {
            None => self.accounts.remove(account).is_some(),
            Some(r) => {
                let removed = self
                    .accounts
                    .get_mut(account)
                    .and_then(|a| a.slot(r))
                    .and_then(Option::take)
                    .is_some();
                if self
                    .accounts
                    .get(account)
                    .is_some_and(|a| a.lowest().is_none())
                {
                    self.accounts.remove(account);
                }
                removed
            }
        }
    }

    fn to_json(&self) -> Zeroizing<String> {
        let accounts = self
            .accounts
            .iter()
            .map(|(name, keys)| {
                let roles = [KeyRole::Memo, KeyRole::Posting, KeyRole::Active]
                    .into_iter()
                    .filter_map(|r| {
                        keys.get(r)
                            .map(|k| (r.as_str().to_owned(), k.to_wif().expose_secret().to_owned()))
                    })
                    .collect();
                (name.clone(), roles)
            })
            .collect();
        let j = KeystoreJson {
            version: 1,
            state_key: hex::encode(self.state_key.expose_secret()),
            accounts,
        };
        Zeroizing::new(serde_json::to_string(&j).unwrap_or_default())
    }

    fn from_json(text: &str, origin: &str) -> Result<Self, KeystoreError> {
        let fmt = |m: String| KeystoreError::Format(origin.to_owned(), m);
        let j: KeystoreJson =
            serde_json::from_str(text).map_err(|e| fmt(format!("not a keystore: {e}")))?;
        if j.version != 1 {
            return Err(fmt(format!(
                "keystore version {} is not supported",
                j.version
            )));
        }
        let state_key = hex::decode(&j.state_key).map_err(|_| fmt("bad state key".into()))?;
        let mut ks = KeyStore {
            accounts: BTreeMap::new(),
            state_key: SecretBytes::new(state_key),
        };
        for (name, roles) in j.accounts {
            for (role, wif) in roles {
                let r: KeyRole = role
                    .parse()
                    .map_err(|_| fmt(format!("{name}: unknown role {role}")))?;
                let key =
                    PrivateKey::from_wif(&wif).map_err(|e| fmt(format!("{name} {role}: {e}")))?;
                ks.add(&name, r, key).map_err(fmt)?;
            }
        }
        Ok(ks)
    }

    /// Encrypts to `path` with `passphrase` (atomically: temp file, fsync, rename; mode 0600).
    /// `work_factor` is scrypt's log2(N): None = age's default (about a second).
    pub fn save(
        &self,
        path: &Path,
        passphrase: &SecretString,
        work_factor: Option<u8>,
    ) -> Result<(), KeystoreError> {
        let io = |e: std::io::Error| KeystoreError::Io(path.display().to_string(), e);
        let mut recipient = age::scrypt::Recipient::new(age::secrecy::SecretString::from(
            passphrase.expose_secret().to_owned(),
        ));
        if let Some(w) = work_factor {
            recipient.set_work_factor(w);
        }
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| KeystoreError::Format(path.display().to_string(), e.to_string()))?;
        let mut out = vec![];
        {
            let mut w = encryptor.wrap_output(&mut out).map_err(io)?;
            w.write_all(self.to_json().as_bytes()).map_err(io)?;
            w.finish().map_err(io)?;
        }
        write_private_atomic(path, &out).map_err(io)
    }

    /// Decrypts the keystore at `path`.
    pub fn open(path: &Path, passphrase: &SecretString) -> Result<Self, KeystoreError> {
        let origin = path.display().to_string();
        let data = std::fs::read(path).map_err(|e| KeystoreError::Io(origin.clone(), e))?;
        let decryptor =
            age::Decryptor::new(&data[..]).map_err(|_| KeystoreError::Decrypt(origin.clone()))?;
        let identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(
            passphrase.expose_secret().to_owned(),
        ));
        let mut reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|_| KeystoreError::Decrypt(origin.clone()))?;
        let mut text = Zeroizing::new(String::new());
        reader
            .read_to_string(&mut text)
            .map_err(|_| KeystoreError::Decrypt(origin.clone()))?;
        KeyStore::from_json(&text, &origin)
    }

    /// Reads a plaintext reference keys.json (`[{"name", "posting", "active", "memo"}]`),
    /// refusing it unless its mode is 0600. The state key then lives in `<file>.statekey`.
    pub fn open_reference_keys(path: &Path) -> Result<Self, KeystoreError> {
        let origin = path.display().to_string();
        check_private_mode(path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| KeystoreError::Io(origin.clone(), e))?,
        );
        let mut ks = KeyStore::reference_keys_from_str(&text, &origin)?;
        ks.use_state_key_file(&path.with_extension("statekey"))?;
        tracing::warn!(path = %origin, "using a plaintext keys.json: prefer an encrypted keystore (pksa-service import)");
        Ok(ks)
    }

    /// Takes the state key from a file (mode 0600, hex), writing this keystore's key there
    /// first when the file does not exist: for keystores without a place of their own for it
    /// (a plaintext keys.json, the sandbox's state directory).
    pub fn use_state_key_file(&mut self, sk_path: &Path) -> Result<(), KeystoreError> {
        if sk_path.exists() {
            check_private_mode(sk_path)?;
            let hexs = Zeroizing::new(
                std::fs::read_to_string(sk_path)
                    .map_err(|e| KeystoreError::Io(sk_path.display().to_string(), e))?,
            );
            let bytes = hex::decode(hexs.trim())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    KeystoreError::Format(sk_path.display().to_string(), "bad state key".into())
                })?;
            self.state_key = SecretBytes::new(bytes);
        } else {
            write_private_atomic(
                sk_path,
                hex::encode(self.state_key.expose_secret()).as_bytes(),
            )
            .map_err(|e| KeystoreError::Io(sk_path.display().to_string(), e))?;
        }
        Ok(())
    }

    /// Parses reference keys.json text.
    pub fn reference_keys_from_str(text: &str, origin: &str) -> Result<Self, KeystoreError> {
        let fmt = |m: String| KeystoreError::Format(origin.to_owned(), m);
        let entries: Vec<ReferenceKeys> = serde_json::from_str(text)
            .map_err(|e| fmt(format!("not a reference keys.json: {e}")))?;
        let mut ks = KeyStore::new();
        for e in entries {
            if e.owner.is_some() {
                tracing::warn!(account = %e.name, "ignoring the owner key in keys.json: the service never uses it");
            }
            for (role, wif) in [
                (KeyRole::Memo, e.memo),
                (KeyRole::Posting, e.posting),
                (KeyRole::Active, e.active),
            ] {
                if let Some(w) = wif.filter(|w| !w.is_empty()) {
                    let key = PrivateKey::from_wif(&w)
                        .map_err(|err| fmt(format!("{} {role}: {err}", e.name)))?;
                    ks.add(&e.name, role, key).map_err(fmt)?;
                }
            }
        }
        Ok(ks)
    }
}

fn check_private_mode(path: &Path) -> Result<(), KeystoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| KeystoreError::Io(path.display().to_string(), e))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Permissions(path.display().to_string(), mode));
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` via a 0600 temp file, fsync and rename.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Obtains the keystore passphrase from its configured source. An empty passphrase is
/// refused: it would encrypt the keys with nothing.
pub fn read_passphrase(source: &PassphraseSource) -> Result<SecretString, KeystoreError> {
    let first_line = |s: String| SecretString::new(s.lines().next().unwrap_or_default().to_owned());
    let pass = match source {
        PassphraseSource::Env(var) => std::env::var(var).map(SecretString::new).map_err(|_| {
            KeystoreError::Passphrase(format!("environment variable {var} is not set"))
        }),
        PassphraseSource::File(p) => std::fs::read_to_string(p)
            .map(first_line)
            .map_err(|e| KeystoreError::Passphrase(format!("{}: {e}", p.display()))),
        PassphraseSource::Credential(name) => match std::env::var("CREDENTIALS_DIRECTORY") {
            Ok(dir) => {
                let p = Path::new(&dir).join(name);
                std::fs::read_to_string(&p)
                    .map(first_line)
                    .map_err(|e| KeystoreError::Passphrase(format!("{}: {e}", p.display())))
            }
            // An operator's command beside the unit (`sudo -u pksa pksa-service keys add`):
            // the credential is the unit's, so the passphrase is asked at the terminal.
            Err(_) if std::io::stdin().is_terminal() => prompt("Keystore passphrase: "),
            Err(_) => Err(KeystoreError::Passphrase(format!(
                "credential:{name}: CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential=) and there is no terminal to ask at"
            ))),
        },
        PassphraseSource::Prompt => prompt("Keystore passphrase: "),
    }?;
    if pass.expose_secret().is_empty() {
        return Err(KeystoreError::Passphrase(format!(
            "the keystore passphrase from {} is empty",
            describe(source)
        )));
    }
    Ok(pass)
}

/// The passphrase for a keystore about to be created: at a prompt it is asked twice (a typo
/// would lock the keys away for good); from other sources as [`read_passphrase`].
pub fn read_new_passphrase(source: &PassphraseSource) -> Result<SecretString, KeystoreError> {
    let first = read_passphrase(source)?;
    let prompted = match source {
        PassphraseSource::Prompt => true,
        PassphraseSource::Credential(_) => {
            std::env::var_os("CREDENTIALS_DIRECTORY").is_none() && std::io::stdin().is_terminal()
        }
        _ => false,
    };
    if prompted {
        let again = prompt("Repeat the new keystore passphrase: ")?;
        if again.expose_secret() != first.expose_secret() {
            return Err(KeystoreError::Passphrase(
                "the two passphrases differ; nothing was written".into(),
            ));
        }
    }
    Ok(first)
}

fn prompt(text: &str) -> Result<SecretString, KeystoreError> {
    rpassword::prompt_password(text)
        .map(SecretString::new)
        .map_err(|e| {
            KeystoreError::Passphrase(format!(
                "cannot prompt: {e} (set keystore_passphrase to env:VAR, file:PATH or credential:NAME to run without a terminal)"
            ))
        })
}

fn describe(source: &PassphraseSource) -> String {
    match source {
        PassphraseSource::Env(v) => format!("environment variable {v}"),
        PassphraseSource::File(p) => p.display().to_string(),
        PassphraseSource::Credential(n) => format!("credential {n}"),
        PassphraseSource::Prompt => "the prompt".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_open_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ks.age");
        let mut ks = KeyStore::new();
        let k = PrivateKey::from_login("alice", "pw", KeyRole::Posting).unwrap();
        ks.add("alice", KeyRole::Posting, k.clone()).unwrap();
        assert!(ks.add("alice", KeyRole::Owner, k.clone()).is_err());
        let pass = SecretString::from("correct horse");
        ks.save(&path, &pass, Some(4)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(k.to_wif().expose_secret()));
        let back = KeyStore::open(&path, &pass).unwrap();
        assert_eq!(back.account("alice").unwrap().posting.as_ref().unwrap(), &k);
        assert_eq!(back.state_key(), ks.state_key());
        assert!(matches!(
            KeyStore::open(&path, &SecretString::from("wrong")),
            Err(KeystoreError::Decrypt(_))
        ));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn an_empty_passphrase_is_refused_from_every_source() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pass");
        std::fs::write(&f, "\nsecond line").unwrap();
        let e = read_passphrase(&PassphraseSource::File(f.clone())).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        assert!(read_new_passphrase(&PassphraseSource::File(f)).is_err());
        // SAFETY-free: a variable only this test uses.
        let var = "PKSA_KEYSTORE_TEST_EMPTY_PASSPHRASE";
        assert!(
            read_passphrase(&PassphraseSource::Env(var.into())).is_err(),
            "unset"
        );
    }

    #[test]
    fn reference_keys_json_needs_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let wif = PrivateKey::from_login("alice", "pw", KeyRole::Posting)
            .unwrap()
            .to_wif();
        std::fs::write(
            &path,
            format!(
                r#"[{{"name":"alice","posting":"{}","memo":""}}]"#,
                wif.expose_secret()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            KeyStore::open_reference_keys(&path),
            Err(KeystoreError::Permissions(_, 0o644))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let ks = KeyStore::open_reference_keys(&path).unwrap();
        assert!(ks.account("alice").unwrap().lowest().is_some());
        // The state key persists next to it.
        let again = KeyStore::open_reference_keys(&path).unwrap();
        assert_eq!(again.state_key(), ks.state_key());
    }
}
