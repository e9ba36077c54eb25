//! `has-client`: authenticate, sign, challenge and attach from the command line, plus a load
//! generator (`bench`) for the end-to-end benchmark.
//!
//! Global options go before or after the command. Exit codes: 0 done, 1 other errors,
//! 2 bad arguments, 3 refused by the PKSA (`*_nack`), 4 failed at the PKSA (`*_err`),
//! 5 no answer in time (`--timeout`, or the request expired), 6 the relay (connection,
//! `error` frames, protocol). With `--json`, an error is one JSON object on stdout:
//! `{"error": {"kind": …, "message": …, "exit_code": …}}`.

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use has_client::{AuthMode, HasClient, Session, SignResult};
use has_protocol::payloads::{AppInfo, ChallengeSpec};
use has_protocol::{AuthKey, AuthReqSecret, KeyType, RequestId};
use serde_json::json;

/// The app side of HiveAuth (HAS).
#[derive(Debug, Parser)]
#[command(version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PKSA_BUILD_COMMIT"), ")"), about)]
struct Cli {
    /// HAS server.
    #[arg(
        long,
        global = true,
        env = "HAS_SERVER",
        default_value = "ws://127.0.0.1:7000"
    )]
    server: String,
    /// Session file (written by `auth`, read by the others; keep it private).
    #[arg(
        long,
        global = true,
        env = "HAS_SESSION",
        default_value = "has-session.json"
    )]
    session: PathBuf,
    /// Hive API node used to verify sign-only transactions against on-chain authorities.
    #[arg(long, global = true)]
    hive_api: Option<String>,
    /// Machine-readable output (errors too).
    #[arg(long, global = true)]
    json: bool,
    /// Give up waiting for the PKSA's answer to auth, sign or challenge after this many
    /// seconds (exit code 5; `attach` has --wait, `bench` runs to its end).
    #[arg(long, global = true, default_value_t = 120)]
    timeout: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Role {
    Memo,
    Posting,
    Active,
}

impl From<Role> for KeyType {
    fn from(r: Role) -> KeyType {
        match r {
            Role::Memo => KeyType::Memo,
            Role::Posting => KeyType::Posting,
            Role::Active => KeyType::Active,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BenchKind {
    Challenge,
    SignOnly,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Authenticate and save the session.
    Auth {
        /// Account.
        #[arg(long)]
        account: String,
        /// Service mode: the PKSA's auth_req_secret (better from a file or HAS_AUTH_REQ_SECRET:
        /// a command line is visible to other users).
        #[arg(long, conflicts_with_all = ["key", "secret_file"])]
        secret: Option<String>,
        /// Service mode: read the auth_req_secret from this file (its first line).
        #[arg(long, conflicts_with = "key")]
        secret_file: Option<PathBuf>,
        /// Re-authenticate with a key the PKSA already knows (e.g. from `session create`).
        #[arg(long)]
        key: Option<String>,
        /// App name.
        #[arg(long, default_value = "has-client")]
        app: String,
        /// Also have this text signed.
        #[arg(long)]
        challenge: Option<String>,
        /// Key for the challenge.
        #[arg(long, value_enum, default_value = "posting")]
        key_type: Role,
    },
    /// Sign operations (JSON array, or @file).
    Sign {
        /// `[["vote", {...}]]` or @ops.json.
        #[arg(long)]
        ops: String,
        /// Key type hint.
        #[arg(long, value_enum, default_value = "posting")]
        key_type: Role,
        /// Only sign; return the signed transaction.
        #[arg(long)]
        sign_only: bool,
    },
    /// Sign (or decrypt) a challenge.
    Challenge {
        /// Text.
        #[arg(long)]
        text: String,
        /// Key.
        #[arg(long, value_enum, default_value = "posting")]
        key_type: Role,
        /// Decrypt the memo `text` instead of signing.
        #[arg(long)]
        decrypt: bool,
    },
    /// Attach to a pending request after a reconnect and wait for its answer.
    Attach {
        /// Request uuid.
        #[arg(long)]
        uuid: String,
        /// Seconds to wait.
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
    /// Load: N requests, C in flight, over the saved session; prints a JSON report.
    Bench {
        /// Requests.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// In flight.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// What to send.
        #[arg(long, value_enum, default_value = "challenge")]
        kind: BenchKind,
        /// Target rate in requests/s (0 = as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
}

fn load_session(path: &PathBuf) -> anyhow::Result<Session> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run `has-client auth` first)", path.display()))?;
    Session::from_json(&text).map_err(anyhow::Error::msg)
}

fn save_session(path: &PathBuf, s: &Session) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    opts.open(path)?.write_all(s.to_json().as_bytes())?;
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("has-client: {e}");
            std::process::exit(1);
        }
    };
    let json = cli.json;
    let result = rt.block_on(run(cli));
    if let Err(e) = result {
        let (kind, code) = classify(&e);
        if json {
            let mut err = serde_json::Map::new();
            err.insert("kind".into(), json!(kind));
            err.insert("message".into(), json!(format!("{e:#}")));
            err.insert("exit_code".into(), json!(code));
            if let Some(uuid) = e.downcast_ref::<TimedOut>().and_then(|t| t.uuid.as_ref()) {
                err.insert("uuid".into(), json!(uuid));
            }
            println!("{}", json!({ "error": err }));
        } else {
            eprintln!("has-client: {e:#}");
        }
        std::process::exit(code);
    }
}

/// `--timeout` ran out; the request's uuid when the relay had acknowledged it (a script can
/// `attach` to it).
#[derive(Debug)]
struct TimedOut {
    secs: u64,
    uuid: Option<String>,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {} s (--timeout)", self.secs)?;
        if let Some(u) = &self.uuid {
            write!(
                f,
                "; the request is {u}: `has-client attach --uuid {u}` waits for its answer"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for TimedOut {}

/// The error's kind and exit code (see the crate documentation).
fn classify(e: &anyhow::Error) -> (&'static str, i32) {
    use has_client::ClientError as E;
    if e.downcast_ref::<TimedOut>().is_some() {
        return ("timeout", 5);
    }
    match e.downcast_ref::<E>() {
        Some(E::Refused { .. }) => ("refused", 3),
        Some(E::Failed { .. }) => ("failed", 4),
        Some(E::Expired(_)) => ("expired", 5),
        Some(E::Connection(_) | E::Protocol(_) | E::Server(_) | E::NoWait) => ("relay", 6),
        Some(E::Input(_)) => ("input", 2),
        _ => ("error", 1),
    }
}

/// Tells a person at a terminal what the command is waiting for (not under `--json`).
fn waiting(json: bool, what: &str) {
    if !json {
        eprintln!("waiting for the PKSA to answer the {what}…");
    }
}

/// `f` within `--timeout` seconds.
async fn bounded<T>(
    client: &HasClient,
    secs: u64,
    f: impl std::future::Future<Output = Result<T, has_client::ClientError>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(Duration::from_secs(secs.max(1)), f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(anyhow::Error::new(TimedOut {
            secs: secs.max(1),
            uuid: client.last_request(),
        })),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut client = HasClient::connect(&cli.server).await?;
    if let Some(api) = &cli.hive_api {
        client = client.with_chain(Arc::new(hive_chain::rpc::RpcClient::new(
            vec![api.clone()],
            Default::default(),
        )?));
    }
    match cli.command {
        Cmd::Auth {
            account,
            secret,
            secret_file,
            key,
            app,
            challenge,
            key_type,
        } => {
            let secret = match (secret, secret_file) {
                (Some(s), _) => Some(s),
                (None, Some(f)) => {
                    let text = std::fs::read_to_string(&f)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                    let first = text.lines().next().unwrap_or("").trim().to_owned();
                    if first.is_empty() {
                        anyhow::bail!("{}: no secret on its first line", f.display());
                    }
                    Some(first)
                }
                // The environment only when no flag chose (--key included).
                (None, None) if key.is_none() => std::env::var("HAS_AUTH_REQ_SECRET")
                    .ok()
                    .filter(|s| !s.is_empty()),
                (None, None) => None,
            };
            let mode = match (secret, key) {
                (Some(s), _) => AuthMode::ServiceSecret(AuthReqSecret::new(s)),
                (None, Some(k)) => AuthMode::ExistingKey(AuthKey::new(k)),
                (None, None) => AuthMode::Interactive(Box::new(|p| {
                    eprintln!(
                        "Scan or open this with your PKSA:\n{}",
                        p.to_uri().expose_secret()
                    );
                })),
            };
            let spec = challenge.map(|c| ChallengeSpec {
                key_type: key_type.into(),
                challenge: c,
            });
            let app = AppInfo {
                name: app,
                description: None,
                icon: None,
                pubkey: None,
            };
            let previous = load_session(&cli.session).ok();
            waiting(cli.json, "authentication request");
            let s = bounded(
                &client,
                cli.timeout,
                client.authenticate(&account, app, spec, mode),
            )
            .await?;
            if let Some(p) = &previous {
                s.continue_from(p);
            }
            save_session(&cli.session, &s)?;
            if cli.json {
                println!(
                    "{}",
                    json!({"account": s.account, "expire": s.expire.0, "pubkey": s.pubkey, "session_file": cli.session})
                );
            } else {
                println!(
                    "authenticated {} until {} (ms); session saved to {}",
                    s.account,
                    s.expire,
                    cli.session.display()
                );
                if let Some(pk) = &s.pubkey {
                    println!("challenge signed by {pk} (verified)");
                }
            }
        }
        Cmd::Sign {
            ops,
            key_type,
            sign_only,
        } => {
            let s = load_session(&cli.session)?;
            let text = match ops.strip_prefix('@') {
                Some(f) => std::fs::read_to_string(f)?,
                None => ops,
            };
            let ops: Vec<serde_json::Value> = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("--ops must be a JSON array of operations: {e}"))?;
            waiting(cli.json, "sign request");
            let r = bounded(
                &client,
                cli.timeout,
                client.sign(&s, ops, key_type.into(), !sign_only),
            )
            .await;
            save_session(&cli.session, &s)?;
            match r? {
                SignResult::Broadcast { uuid, tx_id } => {
                    if cli.json {
                        println!(
                            "{}",
                            json!({"uuid": uuid, "broadcast": true, "tx_id": tx_id})
                        )
                    } else {
                        println!("broadcast: tx {tx_id}")
                    }
                }
                SignResult::Signed {
                    uuid,
                    transaction,
                    signers,
                } => {
                    let tx = transaction.to_json()?;
                    let signers: Vec<String> = signers.iter().map(ToString::to_string).collect();
                    if cli.json {
                        println!(
                            "{}",
                            json!({"uuid": uuid, "broadcast": false, "transaction": tx, "signers": signers})
                        )
                    } else {
                        println!(
                            "signed by {}:\n{}",
                            signers.join(", "),
                            serde_json::to_string_pretty(&tx)?
                        )
                    }
                }
            }
        }
        Cmd::Challenge {
            text,
            key_type,
            decrypt,
        } => {
            let s = load_session(&cli.session)?;
            waiting(cli.json, "challenge");
            let r = bounded(
                &client,
                cli.timeout,
                client.challenge(&s, key_type.into(), &text, decrypt),
            )
            .await;
            save_session(&cli.session, &s)?;
            let r = r?;
            if cli.json {
                println!(
                    "{}",
                    json!({"uuid": r.uuid, "pubkey": r.pubkey, "challenge": r.challenge})
                );
            } else {
                println!("{} (key {}, verified)", r.challenge, r.pubkey);
            }
        }
        Cmd::Attach { uuid, wait } => {
            let uuid = RequestId::try_from(uuid).map_err(anyhow::Error::msg)?;
            match client.attach(&uuid, Duration::from_secs(wait)).await? {
                Some(frame) => println!("{}", has_protocol::frame::encode(&frame)?),
                None => anyhow::bail!("the server no longer knows request {uuid}"),
            }
        }
        Cmd::Bench {
            requests,
            concurrency,
            kind,
            rate,
        } => {
            let s = Arc::new(load_session(&cli.session)?);
            let client = Arc::new(client);
            let report = bench(client, s.clone(), requests, concurrency.max(1), kind, rate).await;
            save_session(&cli.session, &s)?;
            println!("{report}");
        }
    }
    Ok(())
}

async fn bench(
    client: Arc<HasClient>,
    s: Arc<Session>,
    n: usize,
    c: usize,
    kind: BenchKind,
    rate: f64,
) -> serde_json::Value {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (client, s, next) = (client.clone(), s.clone(), next.clone());
        workers.spawn(async move {
            let mut lat = vec![];
            let mut errors = 0usize;
            let mut samples: Vec<String> = vec![];
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t0 = Instant::now();
                let r = match kind {
                    BenchKind::Challenge => client.challenge(&s, KeyType::Posting, &format!("bench {i}"), false).await.map(|_| ()),
                    BenchKind::SignOnly => {
                        let op = json!(["vote", {"voter": s.account.as_str(), "author": "bench", "permlink": format!("p{i}"), "weight": 100}]);
                        client.sign(&s, vec![op], KeyType::Posting, false).await.map(|_| ())
                    }
                };
                match r {
                    Ok(()) => lat.push(t0.elapsed()),
                    Err(e) => {
                        errors += 1;
                        if samples.len() < 3 {
                            samples.push(e.to_string());
                        }
                    }
                }
            }
            (lat, errors, samples)
        });
    }
    let mut lat = vec![];
    let mut errors = 0;
    let mut samples = vec![];
    while let Some(Ok((l, e, s))) = workers.join_next().await {
        lat.extend(l);
        errors += e;
        samples.extend(s);
    }
    samples.truncate(3);
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(
            ((lat.len() as f64 * p).ceil() as usize)
                .saturating_sub(1)
                .min(lat.len().saturating_sub(1)),
        )
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
    };
    json!({
        "kind": format!("{kind:?}").to_lowercase(),
        "requests": n,
        "concurrency": c,
        "ok": lat.len(),
        "errors": errors,
        "elapsed_s": elapsed,
        "throughput_rps": lat.len() as f64 / elapsed.max(1e-9),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "error_samples": samples,
    })
}
