//! Cluster mode: several relay nodes behind one address share routing and pending state
//! through Redis (`--redis`).
//!
//! Each node keeps its sockets, registrations and caps in its own [`Hub`]; Redis holds what
//! must outlive a node and reach the others:
//!
//! | key | what | lifetime |
//! | --- | --- | --- |
//! | `has:req:{uuid}` | the request ([`Shared`], JSON) | until it expires |
//! | `has:pending:{account}` | sorted set of the account's uuids, by expiry | its last expiry |
//! | `has:reply:{uuid}` | the answer frame for the app; `SET NX`: the first answer wins | until the request expires |
//! | `has:app:{uuid}` | the node holding the app's socket (updated by `attach_req`) | until the request expires |
//!
//! and two kinds of pub/sub channel: `has:acct:{account}` (a new request, to the nodes with a
//! PKSA registered for the account: each subscribes while it has one) and `has:node:{id}` (an
//! answer, to the node holding the app's socket).
//!
//! A request is written before its `*_wait` leaves, so a node that stops (even `kill -9`)
//! loses nothing it acknowledged: the app attaches through another node and a PKSA that
//! registers anywhere gets the request. While Redis is unreachable a node serves the sockets
//! it holds on its own, reports not-ready, and writes what it took meanwhile (requests, and
//! answers, routed on to their apps' nodes) when Redis comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use has_protocol::{RequestId, UnixMillis};
use redis::aio::{MultiplexedConnection, PubSubSink};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::hub::{CheckedReply, Hub, Shared, SocketId, Unsynced};

/// How long one Redis command may take before the store counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Pending requests read for one registration at most (the per-account cap of every node
/// together stays far below it).
const PENDING_SCAN: isize = 4096;

/// What nodes tell each other.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Note {
    /// A new request for an account (on `has:acct:{account}`).
    Req(Shared),
    /// The answer for a request whose app's socket is on the receiving node.
    Reply { uuid: RequestId, text: String },
}

fn key_req(uuid: &RequestId) -> String {
    format!("has:req:{uuid}")
}
fn key_pending(account: &str) -> String {
    format!("has:pending:{account}")
}
fn key_reply(uuid: &RequestId) -> String {
    format!("has:reply:{uuid}")
}
fn key_app(uuid: &RequestId) -> String {
    format!("has:app:{uuid}")
}
fn chan_acct(account: &str) -> String {
    format!("has:acct:{account}")
}
fn chan_node(node: &str) -> String {
    format!("has:node:{node}")
}

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection to Redis right now.
    #[error("the cluster store (Redis) is unreachable")]
    Down,
    /// Redis answered with an error, or the command failed on the way.
    #[error("the cluster store (Redis): {0}")]
    Redis(#[from] redis::RedisError),
    /// A record in the store is not what a node writes.
    #[error("the cluster store holds a malformed record: {0}")]
    Malformed(String),
}

/// The outcome of offering an answer to the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This answer is the request's; the app's socket is on this node (None: on no node, or
    /// on this one) or on the named node.
    Won(Option<String>),
    /// Another node's answer came first.
    Lost,
}

/// One node's link to the cluster store.
pub struct Cluster {
    /// This node's id (random per start).
    pub node: String,
    client: redis::Client,
    conn: std::sync::Mutex<Option<MultiplexedConnection>>,
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    up: AtomicBool,
    lost: tokio::sync::Notify,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Cluster {
    /// A link to the Redis at `url` (`redis://host:port/db`); nothing is connected yet.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).map_err(|e| anyhow::anyhow!("redis URL {url:?}: {e}"))?;
        Ok(Cluster {
            node: uuid::Uuid::new_v4().to_string(),
            client,
            conn: std::sync::Mutex::new(None),
            sink: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(false),
            lost: tokio::sync::Notify::new(),
        })
    }

    /// Whether the store is reachable (and this node's state written to it).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn conn(&self) -> Result<MultiplexedConnection, StoreError> {
        self.conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Down)
    }

    /// Runs one store operation; a failure marks the store unreachable (the supervisor
    /// reconnects).
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let conn = self.conn()?;
        match tokio::time::timeout(COMMAND_TIMEOUT, op(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(StoreError::Malformed(m))) => Err(StoreError::Malformed(m)),
            Ok(Err(e)) => {
                self.lost.notify_one();
                Err(e)
            }
            Err(_) => {
                self.lost.notify_one();
                Err(StoreError::Down)
            }
        }
    }

    /// Writes a request (before its `*_wait` leaves): the record, its place in the account's
    /// pending set, and the node holding the app's socket (`app_here`; only if none is
    /// recorded when `only_if_new`).
    pub async fn store_request(&self, r: &Shared, app_here: bool) -> Result<(), StoreError> {
        let json = serde_json::to_string(r).map_err(|e| StoreError::Malformed(e.to_string()))?;
        let pending = key_pending(&r.account);
        self.run(|mut c| async move {
            let mut p = redis::pipe();
            p.atomic()
                .cmd("SET")
                .arg(key_req(&r.uuid))
                .arg(json)
                .arg("PXAT")
                .arg(r.expire)
                .ignore()
                .cmd("ZADD")
                .arg(&pending)
                .arg(r.expire)
                .arg(r.uuid.as_str())
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&pending)
                .arg(r.expire)
                .arg("NX")
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&pending)
                .arg(r.expire)
                .arg("GT")
                .ignore();
            if app_here {
                p.cmd("SET")
                    .arg(key_app(&r.uuid))
                    .arg(&self.node)
                    .arg("NX")
                    .arg("PXAT")
                    .arg(r.expire)
                    .ignore();
            }
            p.query_async::<()>(&mut c).await?;
            Ok(())
        })
        .await
    }

    /// Tells the nodes with a PKSA registered for the request's account about it.
    pub async fn announce(&self, r: &Shared) -> Result<(), StoreError> {
        let note = serde_json::to_string(&Note::Req(r.clone()))
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        self.run(|mut c| async move {
            redis::cmd("PUBLISH")
                .arg(chan_acct(&r.account))
                .arg(note)
                .query_async::<i64>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    /// Reads a request from the store (None: unknown or expired).
    pub async fn load_request(&self, uuid: &RequestId) -> Result<Option<Shared>, StoreError> {
        let text: Option<String> = self
            .run(|mut c| async move {
                Ok(redis::cmd("GET")
                    .arg(key_req(uuid))
                    .query_async(&mut c)
                    .await?)
            })
            .await?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Malformed(e.to_string())))
            .transpose()
    }

    /// Offers an answer: `SET NX` on the reply key makes the first answer of the whole
    /// cluster win. The winner learns which node holds the app's socket.
    /// Offering the same answer again (a retry after a failure) wins again.
    pub async fn claim(&self, checked: &CheckedReply) -> Result<Claim, StoreError> {
        let expire = checked.expire.0.max(UnixMillis::now().0.saturating_add(1));
        self.run(|mut c| async move {
            let (held, app): (Option<String>, Option<String>) = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(key_reply(&checked.uuid))
                .arg(&checked.text)
                .arg("NX")
                .arg("PXAT")
                .arg(expire)
                .ignore()
                .cmd("GET")
                .arg(key_reply(&checked.uuid))
                .cmd("GET")
                .arg(key_app(&checked.uuid))
                .cmd("ZREM")
                .arg(key_pending(&checked.account))
                .arg(checked.uuid.as_str())
                .ignore()
                .query_async(&mut c)
                .await?;
            Ok(if held.as_deref() == Some(checked.text.as_str()) {
                Claim::Won(app.filter(|n| *n != self.node))
            } else {
                Claim::Lost
            })
        })
        .await
    }

    /// Sends an answer to the node holding its app's socket.
    pub async fn route_answer(
        &self,
        node: &str,
        uuid: &RequestId,
        text: &str,
    ) -> Result<(), StoreError> {
        let note = serde_json::to_string(&Note::Reply {
            uuid: uuid.clone(),
            text: text.to_owned(),
        })
        .map_err(|e| StoreError::Malformed(e.to_string()))?;
        self.run(|mut c| async move {
            redis::cmd("PUBLISH")
                .arg(chan_node(node))
                .arg(note)
                .query_async::<i64>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    /// `attach_req` through this node: records it as the app's node and reads the request
    /// and its answer. None: the store does not have the request (unknown or expired).
    pub async fn attach(
        &self,
        uuid: &RequestId,
    ) -> Result<Option<(Shared, Option<String>)>, StoreError> {
        let (req, answer): (Option<String>, Option<String>) = self
            .run(|mut c| async move {
                let (req, _, answer): (Option<String>, Option<String>, Option<String>) =
                    redis::pipe()
                        .atomic()
                        .cmd("GET")
                        .arg(key_req(uuid))
                        .cmd("SET")
                        .arg(key_app(uuid))
                        .arg(&self.node)
                        .arg("XX")
                        .arg("KEEPTTL")
                        .cmd("GET")
                        .arg(key_reply(uuid))
                        .query_async(&mut c)
                        .await?;
                Ok((req, answer))
            })
            .await?;
        let Some(req) = req else {
            return Ok(None);
        };
        let shared: Shared =
            serde_json::from_str(&req).map_err(|e| StoreError::Malformed(e.to_string()))?;
        Ok(Some((shared, answer)))
    }

    /// The account's unanswered, unexpired requests in the store (for a new registration).
    pub async fn pending(&self, account: &str) -> Result<Vec<Shared>, StoreError> {
        let now = UnixMillis::now().0;
        let key = key_pending(account);
        let uuids: Vec<String> = self
            .run(|mut c| async move {
                let (uuids,): (Vec<String>,) = redis::pipe()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(PENDING_SCAN - 1)
                    .query_async(&mut c)
                    .await?;
                Ok(uuids)
            })
            .await?;
        let ids: Vec<RequestId> = uuids
            .into_iter()
            .filter_map(|u| RequestId::try_from(u).ok())
            .collect();
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let records: Vec<(Option<String>, bool)> = self
            .run(|mut c| async move {
                let mut p = redis::pipe();
                for u in &ids {
                    p.cmd("GET").arg(key_req(u)).cmd("EXISTS").arg(key_reply(u));
                }
                let v: Vec<redis::Value> = p.query_async(&mut c).await?;
                let mut out = vec![];
                for pair in v.chunks(2) {
                    let [req, answered] = pair else { continue };
                    let req: Option<String> = redis::from_redis_value_ref(req)
                        .map_err(|e| StoreError::Malformed(e.to_string()))?;
                    let answered: bool = redis::from_redis_value_ref(answered)
                        .map_err(|e| StoreError::Malformed(e.to_string()))?;
                    out.push((req, answered));
                }
                Ok(out)
            })
            .await?;
        Ok(records
            .into_iter()
            .filter(|(_, answered)| !answered)
            .filter_map(|(r, _)| r)
            .filter_map(|r| serde_json::from_str::<Shared>(&r).ok())
            .filter(|r| r.expire > now)
            .collect())
    }

    /// Subscribes to an account's channel (a socket of this node registered for it).
    pub async fn subscribe(&self, account: &str) -> Result<(), StoreError> {
        let mut sink = self.sink.lock().await;
        let s = sink.as_mut().ok_or(StoreError::Down)?;
        match tokio::time::timeout(COMMAND_TIMEOUT, s.subscribe(chan_acct(account))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.lost.notify_one();
                Err(e.into())
            }
            Err(_) => {
                self.lost.notify_one();
                Err(StoreError::Down)
            }
        }
    }

    /// Unsubscribes from an account's channel: no socket of this node is registered for it
    /// (checked again under the subscription lock, so a registration that raced the last
    /// socket's departure keeps its subscription).
    pub async fn unsubscribe(&self, hub: &Hub, account: &str) {
        let mut sink = self.sink.lock().await;
        if let Some(s) = sink.as_mut() {
            if hub.is_registered_here(account) {
                return;
            }
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, s.unsubscribe(chan_acct(account))).await;
            if hub.is_registered_here(account) {
                let _ =
                    tokio::time::timeout(COMMAND_TIMEOUT, s.subscribe(chan_acct(account))).await;
            }
        }
    }

    /// A registration on this node: subscribes to the account's announcements first, then
    /// gives the socket what the store holds pending for the account (each request at most
    /// once per socket: the hub remembers what it gave).
    pub async fn registered(&self, hub: &Hub, socket: SocketId, account: &str) {
        if self.subscribe(account).await.is_err() {
            // Resubscribed and rescanned for every registered account when the store is back.
            return;
        }
        match self.pending(account).await {
            Ok(list) => {
                for r in &list {
                    hub.offer(r, Some(socket));
                }
            }
            Err(e) => tracing::warn!(error = %e, account, "reading pending requests failed"),
        }
    }

    /// Writes what this node took while the store was unreachable: its requests, and the
    /// answers it took, routed to their apps' nodes. Err: the store failed again.
    async fn sync(&self, hub: &Hub) -> Result<(), StoreError> {
        for Unsynced {
            shared,
            request,
            app_here,
            answer,
        } in hub.unsynced()
        {
            if request {
                self.store_request(&shared, app_here).await?;
                hub.mark_synced(&shared.uuid, true, false);
            }
            if let Some(text) = answer {
                let checked = CheckedReply {
                    uuid: shared.uuid.clone(),
                    account: shared.account.clone(),
                    text,
                    expire: UnixMillis(shared.expire),
                };
                match self.claim(&checked).await? {
                    Claim::Won(Some(node)) => {
                        self.route_answer(&node, &checked.uuid, &checked.text)
                            .await?;
                    }
                    Claim::Won(None) => {}
                    Claim::Lost => {
                        hub.metrics.count("cluster", "answer_conflict");
                        tracing::warn!(uuid = %shared.uuid, "two answers were taken while the store was unreachable; the store kept the other node's");
                    }
                }
                hub.mark_synced(&shared.uuid, false, true);
            }
        }
        Ok(())
    }

    /// Graceful drain: writes what the store lacks (a few seconds at most).
    pub async fn flush(&self, hub: &Hub) {
        match tokio::time::timeout(COMMAND_TIMEOUT * 2, self.sync(hub)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "drain: the cluster store did not take this node's state")
            }
            Err(_) => tracing::warn!("drain: the cluster store did not answer in time"),
        }
    }

    /// Connects, subscribes, writes this node's state and serves the node's channels until
    /// the store fails or `stop` fires; then again, with a back-off, until `stop`.
    pub async fn supervise(self: Arc<Self>, hub: Arc<Hub>, mut stop: broadcast::Receiver<()>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = self.clone().session(hub.clone(), &mut stop);
            match attempt.await {
                Ok(Stopped::Stop) => return,
                Ok(Stopped::Lost) => backoff = Duration::from_millis(100),
                Err(e) => {
                    hub.metrics.count("cluster", "connect_failed");
                    tracing::warn!(error = %e, "cluster store unreachable; serving local sockets only");
                }
            }
            if self.up.swap(false, Ordering::Relaxed) {
                tracing::warn!("cluster store lost; serving local sockets only until it is back");
                hub.metrics.count("cluster", "lost");
            }
            *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
            *self.sink.lock().await = None;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.recv() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn session(
        self: Arc<Self>,
        hub: Arc<Hub>,
        stop: &mut broadcast::Receiver<()>,
    ) -> Result<Stopped, StoreError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let conn = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| StoreError::Down)??;
        let pubsub = tokio::time::timeout(COMMAND_TIMEOUT * 2, self.client.get_async_pubsub())
            .await
            .map_err(|_| StoreError::Down)??;
        let (mut sink, mut stream) = pubsub.split();
        sink.subscribe(chan_node(&self.node)).await?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        *self.sink.lock().await = Some(sink);
        // A failure before this point left a permit: forget it.
        let _ = tokio::time::timeout(Duration::ZERO, self.lost.notified()).await;
        for account in hub.registered_accounts() {
            self.subscribe(&account).await?;
        }
        self.sync(&hub).await?;
        // Announcements missed while away: every registered account's pending requests.
        for account in hub.registered_accounts() {
            for r in self.pending(&account).await? {
                hub.offer(&r, None);
            }
        }
        // Anything taken while the scan ran.
        self.sync(&hub).await?;
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %self.node, "cluster store connected");
            hub.metrics.count("cluster", "connected");
        }
        let mut ping = tokio::time::interval(Duration::from_secs(1));
        let mut conn = conn;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => self.deliver(&hub, m),
                    None => return Ok(Stopped::Lost),
                },
                _ = self.lost.notified() => return Ok(Stopped::Lost),
                _ = ping.tick() => {
                    let pong: Result<String, _> = tokio::time::timeout(
                        COMMAND_TIMEOUT,
                        redis::cmd("PING").query_async(&mut conn),
                    )
                    .await
                    .map_err(|_| StoreError::Down)
                    .and_then(|r| r.map_err(StoreError::from));
                    if pong.is_err() {
                        return Ok(Stopped::Lost);
                    }
                    // What a failed write left behind (taken while a command failed, before
                    // the supervisor noticed).
                    self.sync(&hub).await?;
                }
                _ = stop.recv() => return Ok(Stopped::Stop),
            }
        }
    }

    /// A message on one of this node's channels.
    fn deliver(&self, hub: &Hub, msg: redis::Msg) {
        let Ok(payload) = msg.get_payload::<String>() else {
            return;
        };
        match serde_json::from_str::<Note>(&payload) {
            Ok(Note::Req(r)) => {
                hub.metrics.count("cluster", "request_in");
                hub.offer(&r, None);
            }
            Ok(Note::Reply { uuid, text }) => {
                hub.metrics.count("cluster", "answer_in");
                hub.remote_answer(&uuid, text);
            }
            Err(e) => {
                hub.metrics.count("cluster", "malformed_note");
                tracing::warn!(error = %e, channel = msg.get_channel_name(), "malformed cluster message");
            }
        }
    }
}

enum Stopped {
    Stop,
    Lost,
}
