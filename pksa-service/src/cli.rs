//! The command line: `pksa-service [sandbox|run|init|keys|session|enroll|import|policy|audit]`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use has_crypto::{KeyRole, PrivateKey, SecretString};
use has_protocol::AuthKey;
use tokio::sync::watch;

use crate::config::{Config, KeySource};
use crate::keystore::{KeyStore, read_passphrase};
use crate::service::{self, Service, Settings};
use crate::store::{self, Sealer, Store, enrollments, now_ms, sessions};

/// A HiveAuth (HAS) PKSA in service mode. With no command: a local sandbox.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, default_value = "pksa.toml")]
    pub config: PathBuf,
    /// Log as JSON lines.
    #[arg(long, global = true, value_parser = ["human", "json"])]
    pub log_format: Option<String>,
    /// Log encrypted payloads in full (never keys or auth_keys).
    #[arg(long, global = true)]
    pub log_payloads: bool,
    /// Command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local sandbox: relay, dry-run Hive node and service with a generated account.
    Sandbox(SandboxArgs),
    /// Run the service with the config file.
    Run,
    /// Write a commented example config.
    Init,
    /// Manage keys in the keystore.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Manage sessions.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Open an enrollment window: auth requests without a session create one meanwhile.
    Enroll {
        /// Account.
        #[arg(long)]
        account: String,
        /// Only this app name.
        #[arg(long)]
        app: Option<String>,
        /// How long: 30s, 10m, 2h, 1d.
        #[arg(long = "for", default_value = "10m")]
        duration: String,
    },
    /// Convert the reference PKSA's storage.json and keys.json.
    Import {
        /// storage.json.
        #[arg(long)]
        storage: PathBuf,
        /// keys.json.
        #[arg(long)]
        keys: PathBuf,
    },
    /// Check policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The audit chain.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Ask the running service (pid file next to the state) to reload config and policy.
    Reload,
}

/// Sandbox flags.
#[derive(Debug, Args, Default)]
pub struct SandboxArgs {
    /// Print the sandbox information as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Relay port.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Dry-run Hive node port.
    #[arg(long, default_value_t = 0)]
    pub hive_port: u16,
    /// Drive has-client through every flow, then exit (0 on success).
    #[arg(long)]
    pub demo: bool,
    /// Keep the sandbox state in this directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Account name (default: random).
    #[arg(long)]
    pub account: Option<String>,
    /// Account password for login-derived keys (default: random).
    #[arg(long)]
    pub password: Option<String>,
    /// Register on this external relay (which must know the account) instead of starting one.
    #[arg(long)]
    pub relay: Option<String>,
    /// Prometheus metrics and health on this address.
    #[arg(long)]
    pub metrics: Option<std::net::SocketAddr>,
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Add a key; the WIF is read from stdin (never echoed).
    Add {
        /// Account.
        #[arg(long)]
        account: String,
        /// memo, posting or active.
        #[arg(long)]
        role: String,
    },
    /// List accounts and public keys.
    List,
    /// Remove a key (or all keys of the account).
    Remove {
        /// Account.
        #[arg(long)]
        account: String,
        /// Only this role.
        #[arg(long)]
        role: Option<String>,
    },
}

/// `session` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Create a session offline and print its auth_key for the app's config.
    Create {
        /// Account.
        #[arg(long)]
        account: String,
        /// App name.
        #[arg(long)]
        app: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 90.0)]
        days: f64,
    },
    /// List sessions (keys are never shown).
    List {
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke a session by id.
    Revoke {
        /// Session id.
        id: i64,
    },
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Explain the decision for a decrypted sign_req/challenge_req payload or an ops list.
    Check {
        /// JSON file.
        file: PathBuf,
        /// Account.
        #[arg(long)]
        account: String,
        /// App name.
        #[arg(long, default_value = "?")]
        app: String,
    },
    /// Validate a policy file (TOML with `[[rules]]`) and print its hash.
    Validate {
        /// Policy file.
        file: PathBuf,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// List decisions.
    List {
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
        /// Only since this long ago (10m, 2h, 1d).
        #[arg(long)]
        since: Option<String>,
    },
    /// Verify the hash chain.
    Verify,
}

/// Parses 30s / 10m / 2h / 1d.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 10m, 2h or 1d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    if !(secs > 0.0 && secs < 3650.0 * 86400.0) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Sets up tracing (human or JSON).
pub fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
    };
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(anyhow::Error::new)
}

fn passphrase_for(config: &Config) -> anyhow::Result<(PathBuf, SecretString)> {
    match &config.keys {
        KeySource::Keystore { path, passphrase } => {
            Ok((path.clone(), read_passphrase(passphrase)?))
        }
        KeySource::PlainKeysJson(p) => anyhow::bail!(
            "keys are in the plaintext {}: use an encrypted keystore for `keys` commands",
            p.display()
        ),
    }
}

/// Opens the keys the config names.
pub fn open_keys(config: &Config) -> anyhow::Result<KeyStore> {
    match &config.keys {
        KeySource::Keystore { path, passphrase } => {
            let pass = read_passphrase(passphrase)?;
            Ok(KeyStore::open(path, &pass)?)
        }
        KeySource::PlainKeysJson(p) => Ok(KeyStore::open_reference_keys(p)?),
    }
}

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

/// Runs the CLI.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    let json_logs = cli.log_format.as_deref() == Some("json");
    match cli.command {
        None => sandbox(SandboxArgs::default(), json_logs).await,
        Some(Command::Sandbox(a)) => sandbox(a, json_logs).await,
        Some(Command::Run) => run(&cli.config, json_logs, cli.log_payloads).await,
        Some(Command::Init) => {
            if cli.config.exists() {
                anyhow::bail!(
                    "{} already exists; not overwriting it",
                    cli.config.display()
                );
            }
            std::fs::write(&cli.config, crate::config::EXAMPLE)?;
            println!(
                "wrote {}: edit has_servers, hive_api and the keystore, then `pksa-service keys add`",
                cli.config.display()
            );
            Ok(())
        }
        // The store's blocking calls must not run on a runtime worker as is.
        Some(Command::Keys(k)) => tokio::task::block_in_place(|| keys(&cli.config, k)),
        Some(Command::Session(s)) => tokio::task::block_in_place(|| session(&cli.config, s)),
        Some(Command::Enroll {
            account,
            app,
            duration,
        }) => {
            let config = load_config(&cli.config)?;
            let d = parse_duration(&duration).map_err(anyhow::Error::msg)?;
            let ks = open_keys(&config)?;
            if ks.account(&account).is_none() {
                anyhow::bail!("no keys for {account} in the keystore");
            }
            let store = Store::open(
                &config.state,
                Sealer::new(ks.state_key().clone()),
                store::Sync::Full,
            )?;
            let until = now_ms() + d.as_millis() as i64;
            let app2 = app.clone();
            store
                .call(move |c| enrollments::open(c, &account, app2.as_deref(), until))
                .await?;
            println!(
                "enrollment window open for {} until {} (ms since epoch){}",
                d.as_secs(),
                until,
                app.map(|a| format!(", app {a}")).unwrap_or_default()
            );
            Ok(())
        }
        Some(Command::Import { storage, keys }) => {
            tokio::task::block_in_place(|| crate::import::run(&cli.config, &storage, &keys))
        }
        Some(Command::Policy(p)) => tokio::task::block_in_place(|| policy(&cli.config, p)),
        Some(Command::Audit(a)) => tokio::task::block_in_place(|| audit(&cli.config, a)),
        Some(Command::Reload) => {
            let config = load_config(&cli.config)?;
            // Validate first: a bad file is reported here and not sent.
            let pid_file = config.state.with_extension("pid");
            let pid = std::fs::read_to_string(&pid_file).map_err(|e| {
                anyhow::anyhow!("{}: {e} (is the service running?)", pid_file.display())
            })?;
            let pid = pid.trim();
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                anyhow::bail!("{} does not hold a pid", pid_file.display());
            }
            let st = std::process::Command::new("kill")
                .args(["-HUP", pid])
                .status()?;
            if !st.success() {
                anyhow::bail!("could not signal process {pid}");
            }
            println!(
                "sent SIGHUP to {pid}; policy hash {}",
                crate::policy::hash(&config.policy)
            );
            Ok(())
        }
    }
}

async fn sandbox(a: SandboxArgs, json_logs: bool) -> anyhow::Result<()> {
    if !a.json {
        init_logging(json_logs);
    }
    let sb = crate::sandbox::start(crate::sandbox::Options {
        port: a.port,
        hive_port: a.hive_port,
        dir: a.dir,
        metrics: a.metrics,
        account: a.account,
        password: a.password,
        relay: a.relay,
    })
    .await?;
    if a.json {
        println!("{}", sb.info_json());
    } else {
        println!("{}", sb.banner());
    }
    if a.demo {
        let r = sb.demo().await;
        sb.stop().await?;
        return r;
    }
    let _ = tokio::signal::ctrl_c().await;
    sb.stop().await
}

async fn run(path: &Path, json_logs: bool, log_payloads: bool) -> anyhow::Result<()> {
    let mut config = load_config(path)?;
    init_logging(json_logs || config.log.json);
    config.log.payloads |= log_payloads;
    let ks = open_keys(&config)?;
    if ks.accounts().is_empty() {
        anyhow::bail!(
            "the keystore holds no account: `pksa-service keys add --account NAME --role posting`"
        );
    }
    let store = Store::open(
        &config.state,
        Sealer::new(ks.state_key().clone()),
        store::Sync::Full,
    )?;
    let rpc = service::rpc_client(config.hive_api.clone())?;
    let svc = Service::new(
        config.pksa_name.clone(),
        ks,
        store,
        rpc,
        config.chain_id,
        Settings::from_config(&config),
        &config.has_servers,
    );
    let (stop, rx) = watch::channel(false);
    let reload_svc = svc.clone();
    let config_path = path.to_path_buf();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                crate::cli::reload(&reload_svc, &config_path);
            }
        }
    });
    let waiter = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let pid_file = config.state.with_extension("pid");
    std::fs::write(&pid_file, std::process::id().to_string())?;
    tracing::info!(
        accounts = svc.keys.accounts().len(),
        servers = config.has_servers.len(),
        policy_hash = %crate::policy::hash(&config.policy),
        "pksa-service starting"
    );
    let r = service::run(svc, config.metrics_listen, rx).await;
    waiter.abort();
    r
}

/// Re-reads the config: on success swaps the settings and policy, else keeps the old ones.
pub fn reload(svc: &Service, path: &Path) {
    match Config::load(path) {
        Ok(c) => {
            let hash = crate::policy::hash(&c.policy);
            svc.set_settings(Settings::from_config(&c));
            tracing::info!(policy_hash = %hash, "configuration reloaded");
        }
        Err(e) => tracing::error!(error = %e, "reload refused: keeping the previous configuration"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn keys(path: &Path, cmd: KeysCmd) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let (ks_path, pass) = passphrase_for(&config)?;
    let mut ks = if ks_path.exists() {
        KeyStore::open(&ks_path, &pass)?
    } else {
        KeyStore::new()
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
        KeysCmd::List => {
            for (name, keys) in ks.accounts() {
                for (role, public) in keys.public_keys() {
                    println!("{name}\t{role}\t{public}");
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

fn open_store(config: &Config) -> anyhow::Result<(KeyStore, Store)> {
    let ks = open_keys(config)?;
    let store = Store::open(
        &config.state,
        Sealer::new(ks.state_key().clone()),
        store::Sync::Full,
    )?;
    Ok((ks, store))
}

fn session(path: &Path, cmd: SessionCmd) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let (ks, store) = open_store(&config)?;
    match cmd {
        SessionCmd::Create { account, app, days } => {
            if ks.account(&account).is_none() {
                anyhow::bail!("no keys for {account} in the keystore");
            }
            if !(days > 0.0 && days <= 3650.0) {
                anyhow::bail!("--days must be more than 0 and at most 3650");
            }
            let key = AuthKey::generate();
            let expire = now_ms() + (days * 86_400_000.0) as i64;
            let sealer = store.sealer().clone();
            let (k2, a2, app2) = (key.clone(), account.clone(), app.clone());
            let id = store.call_blocking(move |c| {
                sessions::insert(
                    c, &sealer, &a2, &app2, &k2, expire, expire, "operator", None, 0,
                )
            })?;
            println!("session {id} for {account} / {app}");
            println!("auth_key {}", key.expose_secret());
            println!("expire   {expire}");
            println!(
                "Put the auth_key and expiry in the app's configuration; anyone holding the key can act for {app}."
            );
        }
        SessionCmd::List { account } => {
            let rows = store.call_blocking(move |c| sessions::list(c, account.as_deref()))?;
            println!("id\taccount\tapp\torigin\texpire\tlast_nonce\trevoked");
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.id, r.account, r.app, r.origin, r.expire, r.last_nonce, r.revoked
                );
            }
        }
        SessionCmd::Revoke { id } => {
            if !store.call_blocking(move |c| sessions::revoke(c, id))? {
                anyhow::bail!("no session {id}");
            }
            println!("session {id} revoked");
        }
    }
    Ok(())
}

fn policy(path: &Path, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Validate { file } => {
            let text = std::fs::read_to_string(&file)?;
            let p: crate::policy::PolicyConfig =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            p.validate()
                .map_err(|(f, m)| anyhow::anyhow!("{}: {f}: {m}", file.display()))?;
            println!(
                "{}: valid, {} rule(s), hash {}",
                file.display(),
                p.rules.len(),
                crate::policy::hash(&p)
            );
            Ok(())
        }
        PolicyCmd::Check { file, account, app } => {
            let config = load_config(path)?;
            let text = std::fs::read_to_string(&file)?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let d = crate::policy::explain(
                &config.policy,
                &v,
                &account,
                &app,
                config.challenge_decrypt,
            )
            .map_err(anyhow::Error::msg)?;
            println!(
                "decision {}\nrule     {}\nreason   {}",
                if d.approve { "approve" } else { "deny" },
                d.rule,
                d.reason
            );
            Ok(())
        }
    }
}

fn audit(path: &Path, cmd: AuditCmd) -> anyhow::Result<()> {
    let config = load_config(path)?;
    let (_ks, store) = open_store(&config)?;
    match cmd {
        AuditCmd::List {
            account,
            app,
            since,
        } => {
            let since = since
                .map(|s| parse_duration(&s).map(|d| now_ms() - d.as_millis() as i64))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let rows = store.call_blocking(move |c| {
                crate::audit::list(c, account.as_deref(), app.as_deref(), since)
            })?;
            for r in rows {
                let e = &r.entry;
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    r.id,
                    r.time,
                    e.uuid,
                    e.account,
                    e.app,
                    e.cmd,
                    e.op_types,
                    e.decision,
                    e.rule,
                    e.reason
                );
            }
            Ok(())
        }
        AuditCmd::Verify => match store.call_blocking(crate::audit::verify)? {
            crate::audit::Verdict::Intact { rows } => {
                println!("audit chain intact: {rows} rows");
                Ok(())
            }
            crate::audit::Verdict::Broken { id, reason } => {
                anyhow::bail!("audit chain broken at row {id}: {reason}")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5d").unwrap(), Duration::from_secs(129600));
        assert!(parse_duration("10y").is_err());
        assert!(parse_duration("m").is_err());
    }
}
