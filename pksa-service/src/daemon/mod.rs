//! The running service: one connection task per HAS server, the purge task, the optional
//! metrics/health listener, and `run` until shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hive_chain::ChainId;
use hive_chain::rpc::{RpcClient, RpcOptions};
use tokio::sync::watch;

use crate::config::Settings;
use crate::keystore::KeyStore;
use crate::request::Core;
use crate::state::{Store, now_ms};

pub mod health;
pub(crate) mod server;

/// Connection status of one HAS server (for /readyz and /metrics).
#[derive(Debug, Default)]
pub struct ServerStatus {
    /// Connected and got key_ack.
    pub connected: AtomicBool,
    /// Accounts with a register_ack on the current socket.
    pub registered: AtomicU64,
    /// Reconnections.
    pub reconnects: AtomicU64,
}

/// The service: the request path's shared state and the status of each HAS server.
#[derive(Debug)]
pub struct Service {
    core: Core,
    /// Per-server status, in config order.
    pub servers: Vec<(String, Arc<ServerStatus>)>,
}

impl std::ops::Deref for Service {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Service {
    /// Builds the service state.
    pub fn new(
        pksa_name: String,
        keys: KeyStore,
        store: Store,
        rpc: Arc<RpcClient>,
        chain: ChainId,
        settings: Settings,
        servers: &[String],
    ) -> Arc<Self> {
        Arc::new(Service {
            core: Core::new(pksa_name, keys, store, rpc, chain, settings),
            servers: servers
                .iter()
                .map(|s| (s.clone(), Arc::new(ServerStatus::default())))
                .collect(),
        })
    }

    /// Registered on at least one server, with keys, and the last write to the store
    /// succeeded; otherwise why not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = vec![];
        if self.keys.accounts().is_empty() {
            why.push("no account in the keystore".to_owned());
        }
        if !self
            .servers
            .iter()
            .any(|(_, s)| s.registered.load(Ordering::Relaxed) > 0)
        {
            why.push("not registered on any HAS server".to_owned());
        }
        if let Some(e) = self.store.health().last_failure() {
            why.push(format!("the last write to the state store failed: {e}"));
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }

    /// Whether the service is ready (see [`Service::readiness`]).
    pub fn ready(&self) -> bool {
        self.readiness().is_ok()
    }
}

/// Builds the Hive API client for a config.
pub fn rpc_client(nodes: Vec<String>) -> anyhow::Result<Arc<RpcClient>> {
    Ok(Arc::new(RpcClient::new(nodes, RpcOptions::default())?))
}

/// Runs the service until `shutdown` flips to true: one connection task per HAS server, the
/// purge task, and the optional metrics/health listener. In-flight replies finish first.
pub async fn run(
    svc: Arc<Service>,
    metrics_listen: Option<std::net::SocketAddr>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // What the service reads and writes; the app-side directions are never compiled here.
    has_protocol::validate::init_directions(&[
        has_protocol::validate::dir::RELAY_TO_PKSA,
        has_protocol::validate::dir::PKSA_TO_RELAY,
        has_protocol::validate::dir::PAYLOADS,
    ])
    .map_err(anyhow::Error::msg)?;
    // Warm the session cache so the first requests already reserve nonces in arrival order.
    svc.warm().await;
    let mut tasks = tokio::task::JoinSet::new();
    for (url, status) in svc.servers.clone() {
        let svc = svc.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move { server::server_task(svc, url, status, stop).await });
    }
    {
        let svc = svc.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if svc.store.health().last_failure().is_some() {
                            // Readiness comes back with a write that works, traffic or not.
                            let _ = svc.store.call(crate::state::write_probe).await;
                        }
                        let settings = svc.settings();
                        let keep = i64::try_from(settings.answer_retention.as_millis()).unwrap_or(i64::MAX);
                        let audit_before = settings
                            .audit_retention
                            .map(|d| now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
                        let sealer = svc.store.sealer().clone();
                        let r = svc.store.call(move |c| {
                            let answers = crate::state::answers::purge(c, now_ms(), keep)?;
                            crate::state::sessions::purge_used_data(c)?;
                            let audit = match audit_before {
                                Some(t) => crate::state::audit::prune(c, &sealer, t)?,
                                None => 0,
                            };
                            Ok((answers, audit))
                        }).await;
                        match r {
                            Ok((0, 0)) => {}
                            Ok((answers, audit)) => tracing::info!(answers, audit, "pruned past their retention"),
                            Err(e) => tracing::warn!(error = %e, "purge failed"),
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    if let Some(addr) = metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        if !bound.ip().is_loopback() {
            tracing::warn!(addr = %bound, "metrics and health listen on a non-loopback address: anyone who can reach it sees account names, spend headroom and node URLs; put it behind a firewall or use 127.0.0.1");
        }
        tracing::info!(addr = %bound, "metrics and health listening");
        let svc = svc.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move { health::serve(listener, svc, stop).await });
    }
    let _ = shutdown.wait_for(|s| *s).await;
    tracing::info!("shutting down: finishing in-flight requests");
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(15), drain)
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not finish within 15 s");
    }
    Ok(())
}
