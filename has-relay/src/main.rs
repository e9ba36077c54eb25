//! `has-relay`: flags and config file in, [`has_relay::run`] out.

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use has_relay::{AccountSource, FileConfig, RelayConfig};

/// The version with the commit it was built from (`unknown` outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PKSA_BUILD_COMMIT"),
    ")"
);

/// A self-hostable HiveAuth (HAS) relay.
#[derive(Debug, Parser)]
#[command(version = VERSION, about)]
struct Args {
    /// TOML config file (flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (plain ws://; put TLS in a reverse proxy).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Static account keys: the JSON array `condenser_api.get_accounts` returns.
    #[arg(long)]
    accounts: Option<PathBuf>,
    /// Hive API node for account keys (repeat for failover).
    #[arg(long = "hive-api")]
    hive_api: Vec<String>,
    /// Server key file (created with mode 0600 on first start).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Request lifetime in seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Heartbeat interval in seconds.
    #[arg(long)]
    ping_rate: Option<u64>,
    /// Accept replies without pok from registered sockets (protocol 0.8 PKSAs).
    #[arg(long)]
    allow_replies_without_pok: bool,
    /// Prometheus metrics listen address, e.g. 127.0.0.1:9107.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Cluster mode: share routing and pending state with the other relay nodes through this
    /// Redis, e.g. redis://127.0.0.1:6379/ (every node needs the same key file contents).
    #[arg(long)]
    redis: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let file: FileConfig = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7000)));
    let accounts = match (
        args.accounts.or(file.accounts_file),
        args.hive_api,
        file.hive_api,
    ) {
        (Some(p), _, _) => AccountSource::File(p),
        (None, nodes, _) if !nodes.is_empty() => AccountSource::Nodes(nodes),
        (None, _, Some(nodes)) if !nodes.is_empty() => AccountSource::Nodes(nodes),
        _ => AccountSource::Nodes(vec![
            "https://api.hive.blog".into(),
            "https://api.deathwing.me".into(),
        ]),
    };
    let key_file = args
        .key_file
        .or(file.key_file)
        .unwrap_or_else(|| PathBuf::from("has-relay.key"));
    let mut config = RelayConfig::new(key_file, accounts);
    if let Some(s) = file.server_name {
        config.server_name = s;
    }
    if let Some(t) = args.timeout.or(file.timeout_secs) {
        config.timeout = Duration::from_secs(t.max(1));
    }
    if let Some(p) = args.ping_rate.or(file.ping_rate_secs) {
        config.ping_rate = Duration::from_secs(p.max(1));
    }
    if let Some(v) = file.max_frame_bytes {
        config.max_frame_bytes = v;
    }
    if let Some(v) = file.max_connections {
        config.max_connections = v;
    }
    if let Some(v) = file.frames_per_second {
        config.frames_per_second = v;
    }
    if let Some(v) = file.max_pending_per_account {
        config.max_pending_per_account = v;
    }
    if let Some(v) = file.max_pending_per_socket {
        config.max_pending_per_socket = v;
    }
    if let Some(v) = file.max_pending_per_ip {
        config.max_pending_per_ip = v;
    }
    if let Some(v) = file.max_pending_bytes {
        config.max_pending_bytes = v;
    }
    config.allow_replies_without_pok =
        args.allow_replies_without_pok || file.allow_replies_without_pok.unwrap_or(false);
    config.metrics_listen = args.metrics.or(file.metrics_listen);
    config.redis = args.redis.or(file.redis);

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        has_relay::run(listener, config, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
