//! A self-hostable HiveAuth (HAS) relay (has-protocol.md §8.1, §6, §2).
//!
//! Apps and PKSAs connect over WebSocket; the relay greets every socket with `connected`,
//! gives PKSAs its persistent public key (`key_ack`), registers accounts whose Proof of Key
//! decodes from one of the account's on-chain keys, and routes requests by account and
//! replies by uuid. It reads nothing encrypted. Every frame is validated with has-protocol.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use has_relay::{RelayConfig, AccountSource};
//! let config = RelayConfig::new("relay.key".into(), AccountSource::File("accounts.json".into()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7000").await?;
//! has_relay::run(listener, config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

// Only has-crypto may use `unsafe` (md5x and aesx: calls of #[target_feature] functions
// after the CPU reported the feature); everything else forbids it.
#![forbid(unsafe_code)]

pub mod cluster;
mod config;
mod conn;
pub mod hub;
mod keys;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use has_crypto::PublicKey;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast};

pub use config::{AccountSource, FileConfig, RelayConfig};
pub use keys::{Directory, load_or_create_server_key};

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub config: RelayConfig,
    pub hub: Arc<hub::Hub>,
    /// Cluster mode (`--redis`).
    pub cluster: Option<Arc<cluster::Cluster>>,
    pub directory: Directory,
    pub version: &'static str,
}

/// The relay software version announced in `connected`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// File descriptors a relay needs besides one per connection (listeners, the metrics
/// listener, the Hive API client, the runtime).
const SPARE_FILES: u64 = 64;

/// Makes sure the process may open a file per connection: raises the soft `RLIMIT_NOFILE`
/// up to what `max_connections` needs, or fails naming the limit to change. Without it, a
/// relay with the default soft limit (often 1,024) stops accepting connections long before
/// `max_connections`, with "Too many open files" in the log.
pub fn ensure_open_files(max_connections: usize) -> anyhow::Result<u64> {
    let need = (max_connections as u64).saturating_add(SPARE_FILES);
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= need {
        return Ok(soft);
    }
    if hard < need {
        anyhow::bail!(
            "max_connections = {max_connections} needs {need} open files, but the hard limit (RLIMIT_NOFILE) is {hard}: raise it (systemd: LimitNOFILE={need}; shell: ulimit -Hn {need}) or lower max_connections to {}",
            hard.saturating_sub(SPARE_FILES)
        );
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, need, hard)?;
    tracing::info!(
        from = soft,
        to = need,
        "raised the open-file limit for max_connections"
    );
    Ok(need)
}

/// Serves the relay on `listener` until `shutdown` resolves, then closes every socket
/// cleanly (close frame "going away") and returns.
pub async fn run(
    listener: TcpListener,
    config: RelayConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    ensure_open_files(config.max_connections)?;
    // Everything that can refuse the configuration first: a bad start writes no file.
    let directory = match &config.accounts {
        AccountSource::File(p) => Directory::from_file(p)?,
        AccountSource::Nodes(n) => Directory::from_nodes(n.clone(), config.account_cache_ttl)?,
    };
    has_protocol::validate::init().map_err(anyhow::Error::msg)?;
    let cluster = match &config.redis {
        Some(url) => Some(Arc::new(cluster::Cluster::new(
            url,
            config.max_pending_per_account,
        )?)),
        None => None,
    };
    let server_key = load_or_create_server_key(&config.key_file)?;
    let hub = hub::Hub::new(
        server_key,
        config.timeout.as_millis() as u64,
        hub::Limits {
            per_account: config.max_pending_per_account,
            per_socket: config.max_pending_per_socket,
            per_ip: config.max_pending_per_ip,
            total_bytes: config.max_pending_bytes,
        },
        config.allow_replies_without_pok,
    );
    let ctx = Arc::new(Ctx {
        config,
        hub: Arc::new(hub),
        cluster,
        directory,
        version: VERSION,
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, server_key = %ctx.hub.server_key().public_key(), "has-relay listening");

    let (stop_tx, _) = broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();

    // Purge expired requests every second.
    {
        let ctx = ctx.clone();
        let mut stop = stop_tx.subscribe();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => { ctx.hub.purge_expired(); }
                    _ = stop.recv() => break,
                }
            }
        });
    }
    // Cluster mode: the link to the store, reconnecting until the relay stops.
    if let Some(cluster) = &ctx.cluster {
        tracing::info!(node = %cluster.node, "cluster mode: sharing state through Redis");
        tasks.spawn(
            cluster
                .clone()
                .supervise(ctx.hub.clone(), stop_tx.subscribe()),
        );
    }
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    if let Some(metrics_addr) = ctx.config.metrics_listen {
        let ml = TcpListener::bind(metrics_addr).await?;
        let ctx = ctx.clone();
        let mut stop = stop_tx.subscribe();
        let free = permits.clone();
        let cluster = ctx.cluster.clone();
        tracing::info!(addr = %ml.local_addr()?, "metrics listening");
        tasks.spawn(async move {
            // /healthz: the process answers. /readyz: it takes new connections (below
            // max_connections), with the reason when it does not.
            let app = axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(move || {
                        let ctx = ctx.clone();
                        async move {
                            let mut text = ctx.hub.metrics.render();
                            if let Some(c) = &ctx.cluster {
                                text.push_str(&metrics::cluster_gauge(c.is_up()));
                            }
                            text
                        }
                    }),
                )
                .route("/healthz", axum::routing::get(|| async { "ok\n" }))
                .route(
                    "/readyz",
                    axum::routing::get(move || {
                        let free = free.available_permits();
                        let store_down = cluster.as_ref().is_some_and(|c| !c.is_up());
                        async move {
                            if store_down {
                                (
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    "not ready: the cluster store (Redis) is unreachable\n"
                                        .to_owned(),
                                )
                            } else if free > 0 {
                                (axum::http::StatusCode::OK, "ready\n".to_owned())
                            } else {
                                (
                                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                    "not ready: max_connections reached\n".to_owned(),
                                )
                            }
                        }
                    }),
                );
            let _ = axum::serve(ml, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.recv().await;
                })
                .await;
        });
    }

    let mut next_id: u64 = 1;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Frames are small and latency matters: no Nagle delay.
                let _ = stream.set_nodelay(true);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; refusing");
                    ctx.hub.metrics.count("connection", "refused_limit");
                    drop(stream);
                    continue;
                };
                let id = next_id;
                next_id += 1;
                let ctx = ctx.clone();
                let stop = stop_tx.subscribe();
                tasks.spawn(async move {
                    conn::serve_socket(stream, peer, id, ctx, stop).await;
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: closing every socket");
    if let Some(cluster) = &ctx.cluster {
        // Drain: what this node took and the store lacks is written first, so the apps and
        // PKSAs that reconnect to another node find it there.
        cluster.flush(&ctx.hub).await;
    }
    let _ = stop_tx.send(());
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tracing::warn!("some sockets did not close within 5 s");
    }
    Ok(())
}

/// A relay running in the background (tests, the sandbox).
#[derive(Debug)]
pub struct RelayHandle {
    /// `ws://127.0.0.1:port`
    pub url: String,
    /// Bound address.
    pub addr: SocketAddr,
    /// The server public key (`key_ack`).
    pub server_key: PublicKey,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RelayHandle {
    /// Stops the relay and waits for it to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await?
    }
}

/// Binds `addr` (port 0 = any), then runs the relay in a task. Ready when this returns.
pub async fn spawn(addr: SocketAddr, config: RelayConfig) -> anyhow::Result<RelayHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    // As `run`: an accounts file that cannot be read refuses the start before the key file
    // is written.
    if let AccountSource::File(p) = &config.accounts {
        Directory::from_file(p)?;
    }
    let server_key = *load_or_create_server_key(&config.key_file)?.public_key();
    let (stop, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(listener, config, async move {
        let _ = rx.await;
    }));
    Ok(RelayHandle {
        url: format!("ws://{addr}"),
        addr,
        server_key,
        stop: Some(stop),
        task,
    })
}
