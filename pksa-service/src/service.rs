//! The running service: shared state, the session cache, and `run`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use has_crypto::SharedSecretCache;
use has_protocol::{AuthKey, AuthReqSecret};
use hive_chain::ChainId;
use hive_chain::rpc::{RpcClient, RpcOptions};
use tokio::sync::watch;

use crate::config::Config;
use crate::keystore::KeyStore;
use crate::policy::PolicyConfig;
use crate::store::{Store, now_ms, sessions};

/// Settings that a reload may change.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Pre-shared secret.
    pub auth_req_secret: Option<AuthReqSecret>,
    /// New session lifetime.
    pub session_lifetime: Duration,
    /// Renewal cap after creation.
    pub session_max_lifetime: Duration,
    /// Reject modes.
    pub auth_req_reject: bool,
    /// Reject modes.
    pub sign_req_reject: bool,
    /// Reject modes.
    pub challenge_req_reject: bool,
    /// Memo decryption enabled.
    pub challenge_decrypt: bool,
    /// Nonce required on challenges.
    pub challenge_nonce_required: bool,
    /// Transaction expiration.
    pub expiration: Duration,
    /// Log payloads in full.
    pub log_payloads: bool,
    /// The policy.
    pub policy: PolicyConfig,
}

impl Settings {
    /// From a validated config.
    pub fn from_config(c: &Config) -> Self {
        Settings {
            auth_req_secret: c.auth_req_secret.clone(),
            session_lifetime: c.session_lifetime,
            session_max_lifetime: c.session_max_lifetime,
            auth_req_reject: c.auth_req_reject,
            sign_req_reject: c.sign_req_reject,
            challenge_req_reject: c.challenge_req_reject,
            challenge_decrypt: c.challenge_decrypt,
            challenge_nonce_required: c.challenge_nonce_required,
            expiration: c.expiration,
            log_payloads: c.log.payloads,
            policy: c.policy.clone(),
        }
    }
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// (command, decision) → count.
    pub decisions: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// Broadcasts that succeeded.
    pub broadcasts_ok: AtomicU64,
    /// Broadcasts that failed.
    pub broadcasts_failed: AtomicU64,
    /// Sum of broadcast latencies (µs).
    pub broadcast_latency_us: AtomicU64,
}

impl Counters {
    /// Counts a decision.
    pub fn decision(&self, cmd: &str, decision: &str) {
        if let Ok(mut m) = self.decisions.lock() {
            *m.entry((cmd.to_owned(), decision.to_owned())).or_insert(0) += 1;
        }
    }
}

/// Connection status of one HAS server (for /readyz and /metrics).
#[derive(Debug, Default)]
pub struct ServerStatus {
    /// Connected and got key_ack.
    pub connected: std::sync::atomic::AtomicBool,
    /// Accounts with a register_ack on the current socket.
    pub registered: AtomicU64,
    /// Reconnections.
    pub reconnects: AtomicU64,
}

/// A live session in memory: its key and the highest nonce accepted so far. Nonces are
/// reserved here, in the order requests arrive on a socket, so concurrent requests of one
/// app are accepted in the order it sent them; the store keeps the maximum.
#[derive(Debug, Clone)]
pub struct CachedSession(Arc<SessionEntry>);

/// What [`CachedSession`] shares: one allocation per session, the app name shared by the
/// sessions of one app (10,000 sessions ≈ 1 MB).
#[derive(Debug)]
pub struct SessionEntry {
    /// Session id.
    pub id: i64,
    /// The auth_key.
    pub key: AuthKey,
    /// The app the session was created for.
    pub app: Arc<str>,
    /// Highest nonce reserved (accepted) so far.
    pub last_nonce: AtomicI64,
}

impl std::ops::Deref for CachedSession {
    type Target = SessionEntry;
    fn deref(&self) -> &SessionEntry {
        &self.0
    }
}

impl CachedSession {
    /// A session as read from the store.
    pub fn new(id: i64, key: AuthKey, app: Arc<str>, last_nonce: i64) -> Self {
        CachedSession(Arc::new(SessionEntry {
            id,
            key,
            app,
            last_nonce: AtomicI64::new(last_nonce),
        }))
    }

    /// Reserves `nonce` if it is greater than every nonce accepted so far.
    pub fn reserve(&self, nonce: i64) -> bool {
        let mut cur = self.last_nonce.load(Ordering::SeqCst);
        loop {
            if nonce <= cur {
                return false;
            }
            match self
                .last_nonce
                .compare_exchange(cur, nonce, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }
}

#[derive(Debug, Default)]
struct CachedAccount {
    sessions: Vec<CachedSession>,
    loaded: Option<Instant>,
    /// SQLite `data_version` when loaded: it changes when another process (the CLI) commits.
    version: i64,
    /// One copy of each app name (thousands of sessions usually come from a few apps).
    apps: HashSet<Arc<str>>,
}

/// The shared copy of `app` in `apps`, added if new.
fn intern(apps: &mut HashSet<Arc<str>>, app: &str) -> Arc<str> {
    if let Some(a) = apps.get(app) {
        return a.clone();
    }
    let a: Arc<str> = Arc::from(app);
    apps.insert(a.clone());
    a
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Service {
    /// Name in register_req.
    pub pksa_name: String,
    /// Keys.
    pub keys: KeyStore,
    /// State.
    pub store: Store,
    /// Hive API client.
    pub rpc: Arc<RpcClient>,
    /// Chain id.
    pub chain: ChainId,
    settings: RwLock<Arc<Settings>>,
    /// POK shared secrets.
    pub pok_cache: SharedSecretCache,
    sessions: Mutex<HashMap<String, CachedAccount>>,
    /// In-flight requests by data hash: the same request through two servers waits for the
    /// first to finish and then re-uses its answer.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Counters.
    pub counters: Counters,
    /// The last head block read, reused for up to a second (TaPoS may reference any recent
    /// block; one node call per transaction would dominate the signing cost).
    head: Mutex<Option<(hive_chain::HeadBlock, Instant)>>,
    /// One head-block fetch at a time; with the time and error of the last failed one.
    head_fetch: tokio::sync::Mutex<Option<(Instant, hive_chain::rpc::RpcError)>>,
    /// Per-server status, in config order.
    pub servers: Vec<(String, Arc<ServerStatus>)>,
}

/// A request being processed; see [`Service::inflight`].
pub struct Inflight<'a> {
    svc: &'a Service,
    hash: String,
    guard: tokio::sync::OwnedMutexGuard<()>,
}

impl std::fmt::Debug for Inflight<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflight")
            .field("hash", &self.hash)
            .finish()
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut m = self.svc.inflight.lock().unwrap_or_else(|p| p.into_inner());
        // Held by the map and the guard only: nobody else waits for it.
        if Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&self.guard)) <= 2 {
            m.remove(&self.hash);
        }
    }
}

/// Most recently used first: the session at `i` moves to the front, the others keep their
/// order.
fn move_to_front(sessions: &mut [CachedSession], i: usize) {
    if let Some(prefix) = sessions.get_mut(..=i) {
        prefix.rotate_right(1);
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
            pksa_name,
            keys,
            store,
            rpc,
            chain,
            settings: RwLock::new(Arc::new(settings)),
            pok_cache: SharedSecretCache::new(4096),
            sessions: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            head: Mutex::new(None),
            head_fetch: tokio::sync::Mutex::new(None),
            servers: servers
                .iter()
                .map(|s| (s.clone(), Arc::new(ServerStatus::default())))
                .collect(),
        })
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the settings (reload).
    pub fn set_settings(&self, s: Settings) {
        if let Ok(mut w) = self.settings.write() {
            *w = Arc::new(s);
        }
    }

    /// Reloads an account's sessions from the store (keeping the nonce counters of sessions
    /// already known).
    pub async fn refresh_sessions_now(&self, account: &str) {
        let sealer = self.store.sealer().clone();
        let acct = account.to_owned();
        match self
            .store
            .call(move |c| {
                let v = crate::store::data_version(c)?;
                Ok((sessions::live_with_keys(c, &sealer, &acct, now_ms())?, v))
            })
            .await
        {
            Ok((rows, version)) => {
                let mut cache = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                let mut apps = HashSet::new();
                let old: HashMap<i64, CachedSession> = cache
                    .remove(account)
                    .map(|c| c.sessions)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| (s.id, s))
                    .collect();
                let sessions = rows
                    .into_iter()
                    .map(|(r, k)| match old.get(&r.id) {
                        // Known: keep its counter (nonces reserved but not yet stored).
                        Some(o) if o.key == k => {
                            o.last_nonce.fetch_max(r.last_nonce, Ordering::SeqCst);
                            apps.insert(o.app.clone());
                            o.clone()
                        }
                        _ => CachedSession::new(r.id, k, intern(&mut apps, &r.app), r.last_nonce),
                    })
                    .collect();
                cache.insert(
                    account.to_owned(),
                    CachedAccount {
                        sessions,
                        loaded: Some(Instant::now()),
                        version,
                        apps,
                    },
                );
            }
            Err(e) => tracing::error!(error = %e, account, "cannot load sessions"),
        }
    }

    /// Puts one session (new or renewed, found by its key) at the front of its account's
    /// cache, reading only that row: creating the 10,000th session must not reload the other
    /// 9,999. Loads the whole account when its cache is not loaded yet.
    pub async fn cache_session(&self, account: &str, key: &AuthKey) {
        let loaded = {
            let cache = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(account).is_some_and(|c| c.loaded.is_some())
        };
        if !loaded {
            self.refresh_sessions_now(account).await;
            return;
        }
        let sealer = self.store.sealer().clone();
        let (acct, k) = (account.to_owned(), key.clone());
        let row = self
            .store
            .call(move |c| sessions::live_by_key(c, &sealer, &acct, &k, now_ms()))
            .await;
        let mut cache = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = cache.get_mut(account) else {
            return;
        };
        let pos = match &row {
            Ok(Some(r)) => entry.sessions.iter().position(|s| s.id == r.id),
            _ => entry.sessions.iter().position(|s| s.key == *key),
        };
        match (row, pos) {
            (Ok(Some(_)), Some(i)) => move_to_front(&mut entry.sessions, i),
            (Ok(Some(r)), None) => {
                let app = intern(&mut entry.apps, &r.app);
                entry
                    .sessions
                    .insert(0, CachedSession::new(r.id, key.clone(), app, r.last_nonce));
            }
            (Ok(None), Some(i)) => {
                entry.sessions.remove(i);
            }
            (Ok(None), None) => {}
            (Err(e), _) => {
                tracing::error!(error = %e, account, "cannot load a session");
                // Next lookup reloads the account.
                entry.loaded = None;
            }
        }
    }

    /// Trial decryption over the cached sessions of an account, most recently used first; a
    /// match moves to the front (an active app's session is found at the first try even
    /// among thousands). None when the account's sessions are not loaded yet.
    pub fn find_session<T: has_protocol::Payload>(
        &self,
        account: &str,
        data: &has_protocol::Encrypted<T>,
    ) -> Option<crate::handlers::Resolved<T>> {
        use crate::handlers::Resolved;
        let mut cache = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get_mut(account).filter(|c| c.loaded.is_some())?;
        for i in 0..entry.sessions.len() {
            let Some(s) = entry.sessions.get(i) else {
                break;
            };
            match data.decrypt(&s.key) {
                Ok(payload) => {
                    move_to_front(&mut entry.sessions, i);
                    let session = entry.sessions.first()?.clone();
                    return Some(Resolved::Found { session, payload });
                }
                Err(has_protocol::PayloadError::Invalid(message)) => {
                    return Some(Resolved::Invalid {
                        id: s.id,
                        key: s.key.clone(),
                        message,
                    });
                }
                Err(_) => continue,
            }
        }
        Some(Resolved::NotOurs)
    }

    /// Makes sure an account's sessions are loaded, reloading them when `refresh` and the
    /// store changed (see [`Service::session_keys`]).
    pub async fn ensure_sessions(&self, account: &str, refresh: bool) {
        let _ = self.session_keys_inner(account, refresh, false).await;
    }

    /// Live sessions of an account (cached). With `refresh` (no cached session matched),
    /// the cache is reloaded if another process changed the store since it was loaded (a
    /// session created or revoked by the CLI) or if it is older than 10 s.
    pub async fn session_keys(&self, account: &str, refresh: bool) -> Vec<CachedSession> {
        self.session_keys_inner(account, refresh, true).await
    }

    async fn session_keys_inner(
        &self,
        account: &str,
        refresh: bool,
        clone: bool,
    ) -> Vec<CachedSession> {
        let (loaded, version) = {
            let cache = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            cache
                .get(account)
                .map(|c| (c.loaded, c.version))
                .unwrap_or((None, 0))
        };
        let stale = match loaded {
            None => true,
            Some(_) if !refresh => false,
            Some(at) if at.elapsed() > Duration::from_secs(10) => true,
            Some(_) => self
                .store
                .call(crate::store::data_version)
                .await
                .map(|v| v != version)
                .unwrap_or(true),
        };
        if stale {
            self.refresh_sessions_now(account).await;
        }
        if !clone {
            return vec![];
        }
        let cache = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(account)
            .map(|c| c.sessions.clone())
            .unwrap_or_default()
    }

    /// Serializes the processing of identical requests (the same request through two HAS
    /// servers): the second waits for the first, then finds its stored answer. The entry
    /// leaves the map when its last holder is done, so the map holds only requests in flight.
    pub async fn inflight(&self, data_hash: &str) -> Inflight<'_> {
        let lock = {
            let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(data_hash.to_owned()).or_default().clone()
        };
        Inflight {
            svc: self,
            hash: data_hash.to_owned(),
            guard: lock.lock_owned().await,
        }
    }

    /// Requests being processed (for tests).
    pub fn inflight_len(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The head block for TaPoS, from a cache younger than a second or from the node.
    /// Requests that miss the cache together make one call: the others wait for it and share
    /// its block, or its error (a node that is down is not asked once per waiting request).
    pub async fn head_block(&self) -> Result<hive_chain::HeadBlock, hive_chain::rpc::RpcError> {
        let fresh = || {
            self.head
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .filter(|(_, at)| at.elapsed() < Duration::from_secs(1))
                .map(|(h, _)| h)
        };
        if let Some(h) = fresh() {
            return Ok(h);
        }
        let asked = Instant::now();
        let mut last_failure = self.head_fetch.lock().await;
        if let Some(h) = fresh() {
            return Ok(h);
        }
        if let Some((at, e)) = last_failure.as_ref()
            && *at >= asked
        {
            return Err(e.clone());
        }
        match self.rpc.head_block().await {
            Ok(h) => {
                *self.head.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((h.clone(), Instant::now()));
                *last_failure = None;
                Ok(h)
            }
            Err(e) => {
                *last_failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Whether the service is ready: keys present, registered on at least one server.
    pub fn ready(&self) -> bool {
        !self.keys.accounts().is_empty()
            && self
                .servers
                .iter()
                .any(|(_, s)| s.registered.load(Ordering::Relaxed) > 0)
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
    let accounts: Vec<String> = svc.keys.accounts().keys().cloned().collect();
    for account in accounts {
        svc.refresh_sessions_now(&account).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (url, status) in svc.servers.clone() {
        let svc = svc.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move { crate::conn::server_task(svc, url, status, stop).await });
    }
    {
        let svc = svc.clone();
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let r = svc.store.call(|c| crate::store::answers::purge(c, now_ms(), 24 * 3600 * 1000)).await;
                        if let Err(e) = r { tracing::warn!(error = %e, "purge failed"); }
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    if let Some(addr) = metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "metrics and health listening");
        let svc = svc.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move { crate::health::serve(listener, svc, stop).await });
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
