//! The command line: `pksa-service [sandbox|run|init|keys|session|enroll|import|policy|audit]`.
//! One file per command family; `run` starts the daemon.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use has_crypto::{KeyRole, PrivateKey};
use tokio::sync::watch;

use crate::config::{Config, KeySource, Settings};
use crate::daemon::{self, Service};
use crate::keystore::{KeyStore, read_passphrase};
use crate::state::{self, Sealer, Store};

/// The version with the commit it was built from (`unknown` outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PKSA_BUILD_COMMIT"),
    ")"
);

mod audit;
mod enroll;
mod import;
mod keys;
mod policy;
pub mod sandbox;
mod session;

/// A HiveAuth (HAS) PKSA in service mode. With no command: a local sandbox.
#[derive(Debug, Parser)]
#[command(version = VERSION, about)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, default_value = "pksa.toml", env = "PKSA_CONFIG")]
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
    Run {
        /// If the state file is empty or damaged, move it aside and start with no sessions,
        /// answers or audit (a good state file is never replaced).
        #[arg(long)]
        new_state: bool,
    },
    /// Write a commented example config.
    Init {
        /// The layout of `dist/pksa.service`: keystore and state in the state directory, the
        /// passphrase from the systemd credential `pksa-passphrase`, JSON logs.
        #[arg(long)]
        system: bool,
        /// With --system: the service's state directory (StateDirectory=pksa).
        #[arg(long, requires = "system", default_value = "/var/lib/pksa")]
        state_dir: PathBuf,
    },
    /// Manage keys in the keystore.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Manage sessions.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Enrollment windows: open one (auth requests without a session create one meanwhile),
    /// list the open ones, close them.
    Enroll(EnrollArgs),
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
    /// A dry-run Hive node alone (the sandbox's), on loopback: it verifies transactions as
    /// hived does and records them; nothing reaches a real chain. For `hive_api` in a test
    /// deployment of `run`.
    DevNode(DevNodeArgs),
    /// Print a shell completion script: `pksa-service completions bash >
    /// /etc/bash_completion.d/pksa-service` (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `pksa-service man > /usr/local/share/man/man1/pksa-service.1`.
    Man,
}

/// `dev-node` flags.
#[derive(Debug, Args)]
pub struct DevNodeArgs {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The accounts it knows, in has-relay's accounts file format.
    #[arg(long, required_unless_present = "account")]
    pub accounts: Option<PathBuf>,
    /// An account with login-derived keys (with --password), as the sandbox's.
    #[arg(long, requires = "password", conflicts_with = "accounts")]
    pub account: Option<String>,
    /// The password its keys derive from (PKSA_DEV_PASSWORD keeps it off the command line,
    /// where other local users can read it).
    #[arg(
        long,
        requires = "account",
        env = "PKSA_DEV_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Print the node's URL and accounts as one JSON line.
    #[arg(long)]
    pub json: bool,
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
    /// The auth_req_secret apps use (at least 16 characters; default: random), so an app's
    /// configuration outlives a sandbox restart.
    #[arg(long, env = "PKSA_SANDBOX_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}

/// `enroll` flags and subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EnrollArgs {
    /// list or close (without one: open a window).
    #[command(subcommand)]
    pub cmd: Option<EnrollCmd>,
    /// Account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only this app name.
    #[arg(long)]
    pub app: Option<String>,
    /// How long: 30s, 10m, 2h, 1d.
    #[arg(long = "for", default_value = "10m")]
    pub duration: String,
    /// How many sessions the window may create before it closes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub uses: u32,
    /// Any number of sessions until the window closes.
    #[arg(long, conflicts_with = "uses")]
    pub unlimited: bool,
    /// Print the window as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `enroll` subcommands.
#[derive(Debug, Subcommand)]
pub enum EnrollCmd {
    /// List the open windows.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Close windows now: one by id, or every window of an account.
    Close {
        /// This window.
        #[arg(long, conflicts_with = "account")]
        id: Option<i64>,
        /// Every window of this account.
        #[arg(long, required_unless_present = "id")]
        account: Option<String>,
    },
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
    /// Derive keys from the account's master password, as the wallets do (login-derived;
    /// the password is read from stdin or asked, never an argument). The owner key it also
    /// derives is never stored.
    Derive {
        /// Account.
        #[arg(long)]
        account: String,
        /// Roles to store (default: posting and memo).
        #[arg(long = "role", value_parser = ["memo", "posting", "active"])]
        roles: Vec<String>,
    },
    /// Generate a new random key for a role and store it; put its public key in the
    /// account's authority on chain (account_update) before apps use it.
    Generate {
        /// Account.
        #[arg(long)]
        account: String,
        /// memo, posting or active.
        #[arg(long, value_parser = ["memo", "posting", "active"])]
        role: String,
    },
    /// List accounts and public keys.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
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
        /// Print the session as one JSON object (with its auth_key).
        #[arg(long)]
        json: bool,
    },
    /// List sessions (keys are never shown).
    List {
        /// Only this account.
        #[arg(long)]
        account: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
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
        /// Print the decision as one JSON object.
        #[arg(long)]
        json: bool,
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
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Verify the hash chain.
    Verify,
}

/// Parses a duration: `30s`, `10m`, `2h`, `1d`, `1h 30m`, `90 minutes` (jiff's friendly
/// format; a day is 24 hours), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration like 30s, 10m, 2h, 1d or 1h30m");
    let secs = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<f64>().map_err(|_| bad())?
    } else {
        let span: jiff::Span = s.trim().parse().map_err(|_| bad())?;
        span.total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .map_err(|_| {
            format!("{s:?}: use units from seconds to days (not weeks, months or years)")
        })?
    };
    if !(secs > 0.0 && secs < 3650.0 * 86400.0) {
        return Err(format!(
            "{s:?} is out of range (more than 0, less than 10 years)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A time in ms since the epoch as RFC 3339 in UTC, to the second
/// (`2026-12-03T06:40:00Z`); the number itself if it is out of range.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.0}"))
        .unwrap_or_else(|_| ms.to_string())
}

/// A time in ms since the epoch in the machine's local time zone, for people
/// (`2026-12-03 07:40:00 +01:00`).
pub fn local_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string())
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

/// Opens the keys the config names.
pub(crate) fn open_keys(config: &Config) -> anyhow::Result<KeyStore> {
    match &config.keys {
        KeySource::Keystore { path, passphrase } => {
            let pass = read_passphrase(passphrase)?;
            Ok(KeyStore::open(path, &pass)?)
        }
        KeySource::PlainKeysJson(p) => Ok(KeyStore::open_reference_keys(p)?),
    }
}

fn open_store(config: &Config) -> anyhow::Result<(KeyStore, Store)> {
    let ks = open_keys(config)?;
    let store = Store::open(
        &config.state,
        Sealer::new(ks.state_key().clone()),
        state::Sync::Full,
    )?;
    Ok((ks, store))
}

/// Runs the CLI.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    let json_logs = cli.log_format.as_deref() == Some("json");
    match cli.command {
        None => sandbox(SandboxArgs::default(), json_logs).await,
        Some(Command::Sandbox(a)) => sandbox(a, json_logs).await,
        Some(Command::Run { new_state }) => {
            run(&cli.config, json_logs, cli.log_payloads, new_state).await
        }
        Some(Command::Init { system, state_dir }) => {
            let text = if system {
                crate::config::system_example(&state_dir).map_err(anyhow::Error::msg)?
            } else {
                crate::config::EXAMPLE.to_owned()
            };
            // `--config -`: to stdout (a container writes it to the host this way).
            if cli.config == Path::new("-") {
                print!("{text}");
                return Ok(());
            }
            if cli.config.exists() {
                anyhow::bail!(
                    "{} already exists; not overwriting it",
                    cli.config.display()
                );
            }
            // It will hold the auth_req_secret: readable by its owner only.
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            std::io::Write::write_all(&mut file.open(&cli.config)?, text.as_bytes())?;
            println!(
                "wrote {}: edit has_servers, hive_api and auth_req_secret, then `pksa-service keys add`",
                cli.config.display()
            );
            Ok(())
        }
        // The store's blocking calls must not run on a runtime worker as is.
        Some(Command::Keys(k)) => tokio::task::block_in_place(|| keys::run(&cli.config, k)),
        Some(Command::Session(s)) => tokio::task::block_in_place(|| session::run(&cli.config, s)),
        Some(Command::Enroll(e)) => tokio::task::block_in_place(|| enroll::run(&cli.config, e)),
        Some(Command::Import { storage, keys }) => {
            tokio::task::block_in_place(|| import::run(&cli.config, &storage, &keys))
        }
        Some(Command::Policy(p)) => tokio::task::block_in_place(|| policy::run(&cli.config, p)),
        Some(Command::Audit(a)) => tokio::task::block_in_place(|| audit::run(&cli.config, a)),
        Some(Command::DevNode(a)) => dev_node(a).await,
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "pksa-service", &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Man) => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Some(Command::Reload) => {
            let config = load_config(&cli.config)?;
            // Validate first: a bad file is reported here and not sent.
            let pid_file = config.state.with_extension("pid");
            let pid = PidFile::running(&pid_file)?;
            let target = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .ok_or_else(|| anyhow::anyhow!("{} does not hold a pid", pid_file.display()))?;
            rustix::process::kill_process(target, rustix::process::Signal::HUP)
                .map_err(|e| anyhow::anyhow!("could not signal process {pid}: {e}"))?;
            println!(
                "sent SIGHUP to {pid}; policy hash {}",
                crate::policy::hash(&config.policy)
            );
            Ok(())
        }
    }
}

async fn sandbox(a: SandboxArgs, json_logs: bool) -> anyhow::Result<()> {
    // Logs go to stderr, with --json too (stdout then carries the one JSON line).
    init_logging(json_logs);
    let sb = sandbox::start(sandbox::Options {
        port: a.port,
        hive_port: a.hive_port,
        dir: a.dir,
        metrics: a.metrics,
        account: a.account,
        password: a.password,
        relay: a.relay,
        secret: a.secret,
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
    // SIGTERM (a service manager, `docker stop`) cleans up as Ctrl-C does.
    shutdown_signal().await;
    sb.stop().await
}

async fn dev_node(a: DevNodeArgs) -> anyhow::Result<()> {
    use hive_chain::accounts::{Account, load_accounts_file};
    let accounts: Vec<Account> = match (&a.accounts, &a.account, &a.password) {
        (Some(file), _, _) => load_accounts_file(file)?
            .into_iter()
            .map(|(acc, _)| acc)
            .collect(),
        (None, Some(name), Some(password)) => {
            has_protocol::AccountName::new(name).map_err(anyhow::Error::msg)?;
            let key = |r| PrivateKey::from_login(name, password, r).map(|k| *k.public_key());
            vec![Account::with_keys(
                name,
                key(KeyRole::Owner)?,
                key(KeyRole::Active)?,
                key(KeyRole::Posting)?,
                key(KeyRole::Memo)?,
            )]
        }
        _ => anyhow::bail!("give --accounts FILE, or --account NAME with --password"),
    };
    let names: Vec<String> = accounts.iter().map(|acc| acc.name.clone()).collect();
    let node = hive_chain::dryrun::DryRunNode::new(hive_chain::ChainId::MAINNET, accounts);
    let (url, task) = hive_chain::dryrun::spawn(node, a.port).await?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "hive_api_url": url, "accounts": names })
        );
    } else {
        init_logging(false);
        println!(
            "dry-run Hive node (mainnet chain id; nothing reaches a real chain)\n\n  hive_api  {url}\n  accounts  {}\n\n  Ctrl-C stops it.",
            names.join(", ")
        );
    }
    tokio::select! {
        _ = shutdown_signal() => Ok(()),
        r = task => r.map_err(anyhow::Error::from),
    }
}

async fn run(
    path: &Path,
    json_logs: bool,
    log_payloads: bool,
    new_state: bool,
) -> anyhow::Result<()> {
    let mut config = load_config(path)?;
    config.log.json |= json_logs;
    init_logging(config.log.json);
    config.log.payloads |= log_payloads;
    // One service per state file; `reload` finds it by this file, locked while it runs.
    let pid_file = PidFile::acquire(&config.state.with_extension("pid"))?;
    // Before the keystore is read: a key added after this point is one the service lacks.
    let running = Running::new(&config, json_logs, log_payloads);
    let ks = open_keys(&config)?;
    if ks.accounts().is_empty() {
        anyhow::bail!(
            "the keystore holds no account: `pksa-service keys add --account NAME --role posting`"
        );
    }
    let store = Store::open_or_start_anew(
        &config.state,
        Sealer::new(ks.state_key().clone()),
        state::Sync::Full,
        new_state,
    )?;
    let rpc = daemon::rpc_client(config.hive_api.clone())?;
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
    // SIGHUP is handled before the pid is published: `reload` must never reach a process
    // whose default action for it is to terminate.
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| anyhow::anyhow!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        #[cfg(unix)]
        while hup.recv().await.is_some() {
            crate::cli::reload(&reload_svc, &config_path, &running);
        }
    });
    pid_file.publish()?;
    let waiter = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    tracing::info!(
        version = VERSION,
        accounts = svc.keys.accounts().len(),
        servers = %config.has_servers.join(" "),
        address_prefix = config.chain_id.address_prefix(),
        policy_hash = %crate::policy::hash(&config.policy),
        "pksa-service starting"
    );
    // What will sign, before anything does: each account's roles and public keys.
    for (account, keys) in svc.keys.accounts() {
        let roles: Vec<String> = keys
            .public_keys()
            .iter()
            .map(|(role, key)| {
                format!(
                    "{role}={}",
                    key.to_string_with_prefix(config.chain_id.address_prefix())
                )
            })
            .collect();
        tracing::info!(account = %account, keys = %roles.join(" "), "signing for");
    }
    let r = daemon::run(svc, config.metrics_listen, rx).await;
    waiter.abort();
    r
}

/// The pid file of a running service (`<state>.pid`): created with the process's pid and
/// locked (an advisory `flock`) for as long as it runs, removed when it stops. `reload`
/// signals the pid only while the lock is held: a pid file left behind (a crash, a
/// `kill -9`) names a process that may be anything by now, and is never signalled.
struct PidFile {
    path: PathBuf,
    file: std::fs::File,
}

impl PidFile {
    fn acquire(path: &Path) -> anyhow::Result<PidFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let pid = std::fs::read_to_string(path).unwrap_or_default();
                let pid = if pid.trim().is_empty() {
                    "starting"
                } else {
                    pid.trim()
                };
                anyhow::bail!(
                    "another pksa-service (pid {pid}) is running with this state file ({} is locked)",
                    path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                anyhow::bail!("{}: cannot lock: {e}", path.display())
            }
        }
        file.set_len(0)?;
        Ok(PidFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes the pid (once the process is ready for SIGHUP).
    fn publish(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let mut f = &self.file;
        f.write_all(std::process::id().to_string().as_bytes())?;
        f.sync_all()?;
        Ok(())
    }

    /// The pid of the service running with this pid file, if one is (it holds the lock).
    fn running(path: &Path) -> anyhow::Result<u32> {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (is the service running?)", path.display()))?;
        match file.try_lock() {
            // Nobody holds it: left behind by a service that is gone.
            Ok(()) => anyhow::bail!(
                "no pksa-service is running with {} (the file was left behind by one that stopped; nothing was signalled)",
                path.display()
            ),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                anyhow::bail!("{}: cannot check its lock: {e}", path.display())
            }
        }
        let text = std::fs::read_to_string(path)?;
        text.trim()
            .parse::<u32>()
            .ok()
            .filter(|p| *p > 1)
            .ok_or_else(|| anyhow::anyhow!("{} does not hold a pid", path.display()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Re-reads the config: on success swaps the settings and policy, else keeps the old ones.
/// What a running service was started with, for [`reload`] to tell what it cannot apply.
#[derive(Debug)]
pub struct Running {
    config: Config,
    log_json_flag: bool,
    log_payloads_flag: bool,
    keystore_modified: Option<std::time::SystemTime>,
}

impl Running {
    /// `config` as started, with the `--log-format json` and `--log-payloads` flags given or
    /// not (they override the file, at reloads too).
    pub fn new(config: &Config, log_json_flag: bool, log_payloads_flag: bool) -> Self {
        Running {
            config: config.clone(),
            log_json_flag,
            log_payloads_flag,
            keystore_modified: keystore_modified(config),
        }
    }
}

fn keystore_modified(c: &Config) -> Option<std::time::SystemTime> {
    let path = match &c.keys {
        KeySource::Keystore { path, .. } => path,
        KeySource::PlainKeysJson(path) => path,
    };
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The settings of `new` that differ from what the service started with and only apply at
/// the next start (servers, nodes, chain, keys, state, logging format, metrics listener).
pub fn restart_needed(running: &Running, new: &Config) -> Vec<&'static str> {
    let old = &running.config;
    let mut changed = vec![];
    for (name, differs) in [
        ("pksa_name", old.pksa_name != new.pksa_name),
        ("has_servers", old.has_servers != new.has_servers),
        ("hive_api", old.hive_api != new.hive_api),
        ("chain_id", old.chain_id != new.chain_id),
        ("keystore or keys_json", old.keys != new.keys),
        (
            "the keys in the keystore",
            old.keys == new.keys && running.keystore_modified != keystore_modified(new),
        ),
        ("state", old.state != new.state),
        (
            "log.format",
            old.log.json != (new.log.json || running.log_json_flag),
        ),
        ("metrics_listen", old.metrics_listen != new.metrics_listen),
    ] {
        if differs {
            changed.push(name);
        }
    }
    changed
}

/// SIGHUP: re-reads the config file. What can change live (policy, secret, lifetimes,
/// refusals, challenges, expiration, retention, payload logging) applies to the next
/// request; what cannot is named in the log, with the previous value kept until a restart.
/// An invalid file is refused and changes nothing.
pub fn reload(svc: &Service, path: &Path, running: &Running) {
    match Config::load(path) {
        Ok(mut c) => {
            c.log.payloads |= running.log_payloads_flag;
            let hash = crate::policy::hash(&c.policy);
            svc.set_settings(Settings::from_config(&c));
            let pending = restart_needed(running, &c);
            if pending.is_empty() {
                tracing::info!(policy_hash = %hash, "configuration reloaded");
            } else {
                tracing::warn!(
                    policy_hash = %hash,
                    restart_needed = %pending.join(", "),
                    "configuration reloaded, except settings that apply at the next restart"
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("90 minutes").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in ["10y", "2 months", "m", "", "0s", "-5m", "99999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_276_400_123), "2026-12-03T05:40:00Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
        // Local time carries its offset, whatever the zone.
        let l = local_time(1_796_276_400_000);
        assert!(l.len() == "2026-12-03 06:20:00 +00:00".len(), "{l}");
    }
}
