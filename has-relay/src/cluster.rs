//! Cluster mode: several relay nodes behind one address share routing and pending state
//! through Redis (`--redis`).
//!
//! Each node keeps its sockets, registrations and caps in its own [`Hub`]; Redis holds what
//! must outlive a node and reach the others:
//!
//! | key | what | lifetime |
//! | --- | --- | --- |
//! | `has:req:{uuid}` | the request ([`Shared`], JSON, with the node that made it) | until it expires |
//! | `has:pending:{account}` | sorted set of the account's unanswered uuids, by expiry | its last expiry |
//! | `has:reply:{uuid}` | the answer frame for the app; `SET NX`: the first answer wins | until the request expires |
//! | `has:app:{uuid}` | the node holding the app's socket (`-`: none; moved by `attach_req`) | until the request expires |
//! | `has:server_key` | the relay's public key: a node with another key file refuses to join | none |
//!
//! and two kinds of pub/sub channel: `has:acct:{account}` (a new request, then its answer, to
//! the nodes with a PKSA registered for the account: each subscribes while it has one) and
//! `has:node:{id}` (an answer, to the node holding the app's socket and the node that made
//! the request).
//!
//! A request is written (and announced, in the same transaction) before its `*_wait` leaves,
//! so a node that stops (even `kill -9`) loses nothing it acknowledged: the app attaches
//! through another node and a PKSA that registers anywhere gets the request. An answer is
//! claimed and announced in one script: one round trip each way. While Redis is unreachable
//! a node serves the sockets it holds on its own, reports not-ready, and writes what it took
//! meanwhile (requests, and answers, routed on to their apps' nodes) when Redis is back; it
//! writes every live request it made again on each reconnect, in case Redis lost them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use has_protocol::{RequestId, UnixMillis};
use redis::aio::{MultiplexedConnection, PubSubSink};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::hub::{Backlog, CheckedReply, Hub, Shared, SocketId, Unsynced};

/// How long one Redis command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Account channels per SUBSCRIBE command when resubscribing.
const SUBSCRIBE_BATCH: usize = 512;
/// The oldest Redis with every command used (`SET … PXAT`, `PEXPIREAT … NX|GT`).
const REDIS_MAJOR: u32 = 7;

/// Writes a request (the record and the app's route only if missing: a rewrite after a
/// reconnect never replaces what is there) and, unless it is answered (here or in the store),
/// adds it to the account's pending set and announces it, in one atomic step. Expiry is
/// relative (`PX`): node and Redis clocks need not agree.
/// KEYS: req, app, pending, reply. ARGV: record, ttl ms, app node or `-`, answered (0/1),
/// uuid, expire (score), now, account channel, note.
const STORE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2])
if ARGV[4] == '0' and redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[7])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
  redis.call('PEXPIRE', KEYS[3], ARGV[2], 'NX')
  redis.call('PEXPIRE', KEYS[3], ARGV[2], 'GT')
  redis.call('PUBLISH', ARGV[8], ARGV[9])
end
return 1
"#;

/// Claims an answer: the first `SET NX` wins; the winner removes the uuid from the account's
/// pending set and announces the answer to the account's channel, the app's node and the
/// request's node, in the same atomic step. Offering the same answer again (a retry) wins
/// again without announcing twice. Returns `{1, ''}` (won) or `{0, <the answer held>}`.
const CLAIM: &str = r#"
local set = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if not set then
  local held = redis.call('GET', KEYS[1])
  if held == ARGV[1] then return {1, ''} end
  return {0, held or ''}
end
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[4])
local told = {}
told[ARGV[6]] = true
local app = redis.call('GET', KEYS[2])
if app and app ~= '-' and not told[app] then
  told[app] = true
  redis.call('PUBLISH', ARGV[7] .. app, ARGV[4])
end
if ARGV[8] ~= '' and not told[ARGV[8]] then
  redis.call('PUBLISH', ARGV[7] .. ARGV[8], ARGV[4])
end
return {1, ''}
"#;

/// What nodes tell each other.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Note {
    /// A new request for an account (on `has:acct:{account}`).
    Req { from: String, req: Shared },
    /// A request's answer (on the account's channel and the app's and request's nodes').
    Answer {
        from: String,
        uuid: RequestId,
        text: String,
    },
}

/// The `Note::Req` text around a request's JSON, without encoding the frame a second time
/// (`node` is a UUID: nothing to escape).
fn req_note(node: &str, json: &str) -> String {
    format!(r#"{{"t":"req","from":"{node}","req":{json}}}"#)
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
const KEY_SERVER_KEY: &str = "has:server_key";
fn chan_acct(account: &str) -> String {
    format!("has:acct:{account}")
}
const NODE_PREFIX: &str = "has:node:";
fn chan_node(node: &str) -> String {
    format!("{NODE_PREFIX}{node}")
}

/// Milliseconds from now to `expire` (at least 1).
fn ttl_ms(expire: u64) -> u64 {
    expire.saturating_sub(UnixMillis::now().0).max(1)
}

/// A Redis URL with its password (if any) replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
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
    /// The store cannot be joined (another server key, a Redis too old).
    #[error("the cluster store cannot be joined: {0}")]
    Refused(String),
}

fn malformed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed(e.to_string())
}

/// The outcome of offering an answer to the store.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This answer is the request's (and was announced).
    Won,
    /// Another answer came first: this one.
    Lost(String),
}

/// One node's link to the cluster store.
pub struct Cluster {
    /// This node's id (random per start).
    pub node: String,
    client: redis::Client,
    url: String,
    conn: std::sync::Mutex<Option<MultiplexedConnection>>,
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    up: AtomicBool,
    /// Pending requests read from the store for one new registration at most (newest first).
    scan_limit: usize,
    claim: redis::Script,
    store: redis::Script,
    /// A subscription failed while the link stayed up: the heartbeat subscribes every
    /// registered account again.
    resubscribe: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("url", &self.url)
            .field("up", &self.is_up())
            .finish()
    }
}

impl Cluster {
    /// A link to the Redis at `url` (`redis://[:password@]host:port/db`); nothing is
    /// connected yet. A new registration gets at most `scan_limit` pending requests from the
    /// store (the per-account cap).
    pub fn new(url: &str, scan_limit: usize) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("redis URL {}: {e}", redact(url)))?;
        Ok(Cluster {
            node: uuid::Uuid::new_v4().to_string(),
            client,
            url: redact(url),
            conn: std::sync::Mutex::new(None),
            sink: tokio::sync::Mutex::new(None),
            up: AtomicBool::new(false),
            scan_limit: scan_limit.max(1),
            claim: redis::Script::new(CLAIM),
            store: redis::Script::new(STORE),
            resubscribe: AtomicBool::new(false),
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

    /// Runs one store operation with a deadline. A failure does not end the link by itself:
    /// the heartbeat decides (one slow answer must not make a node resubscribe everything).
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let conn = self.conn()?;
        tokio::time::timeout(COMMAND_TIMEOUT, op(conn))
            .await
            .map_err(|_| StoreError::Down)?
    }

    /// Writes a request and announces it to the nodes with a PKSA for its account, in one
    /// transaction (before its `*_wait` leaves): the record, its place in the account's
    /// pending set (not for an `answered` one), and the node holding the app's socket
    /// (`app_here`; an attach made elsewhere meanwhile is kept).
    pub async fn store_request(
        &self,
        r: &Shared,
        app_here: bool,
        answered: bool,
    ) -> Result<(), StoreError> {
        let mut r = r.clone();
        if r.node.is_empty() {
            r.node = self.node.clone();
        }
        let json = serde_json::to_string(&r).map_err(malformed)?;
        let note = req_note(&self.node, &json);
        let now = UnixMillis::now().0;
        let ttl = ttl_ms(r.expire);
        self.run(|mut c| async move {
            self.store
                .key(key_req(&r.uuid))
                .key(key_app(&r.uuid))
                .key(key_pending(&r.account))
                .key(key_reply(&r.uuid))
                .arg(json)
                .arg(ttl)
                .arg(if app_here { self.node.as_str() } else { "-" })
                .arg(if answered { "1" } else { "0" })
                .arg(r.uuid.as_str())
                .arg(r.expire)
                .arg(now)
                .arg(chan_acct(&r.account))
                .arg(note)
                .invoke_async::<i64>(&mut c)
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
        text.map(|t| serde_json::from_str(&t).map_err(malformed))
            .transpose()
    }

    /// A request's answer in the store, if it has one.
    pub async fn answer(&self, uuid: &RequestId) -> Result<Option<String>, StoreError> {
        self.run(|mut c| async move {
            Ok(redis::cmd("GET")
                .arg(key_reply(uuid))
                .query_async(&mut c)
                .await?)
        })
        .await
    }

    /// Offers an answer: the first of the whole cluster wins, and is announced to the nodes
    /// that need it (one Lua script: `SET NX`, then the announcements).
    pub async fn claim(&self, checked: &CheckedReply) -> Result<Claim, StoreError> {
        let ttl = ttl_ms(checked.expire.0);
        let note = serde_json::to_string(&Note::Answer {
            from: self.node.clone(),
            uuid: checked.uuid.clone(),
            text: checked.text.clone(),
        })
        .map_err(malformed)?;
        self.run(|mut c| async move {
            let (won, held): (i64, String) = self
                .claim
                .key(key_reply(&checked.uuid))
                .key(key_app(&checked.uuid))
                .key(key_pending(&checked.account))
                .arg(&checked.text)
                .arg(ttl)
                .arg(checked.uuid.as_str())
                .arg(note)
                .arg(chan_acct(&checked.account))
                .arg(&self.node)
                .arg(NODE_PREFIX)
                .arg(&checked.node)
                .invoke_async(&mut c)
                .await?;
            match (won, held.is_empty()) {
                (1, _) => Ok(Claim::Won),
                (_, false) => Ok(Claim::Lost(held)),
                _ => Err(malformed("the claim script found neither answer")),
            }
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
                let (req, answer): (Option<String>, Option<String>) = redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(key_req(uuid))
                    .cmd("SET")
                    .arg(key_app(uuid))
                    .arg(&self.node)
                    .arg("XX")
                    .arg("KEEPTTL")
                    .ignore()
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
        let shared: Shared = serde_json::from_str(&req).map_err(malformed)?;
        Ok(Some((shared, answer)))
    }

    /// Reads the store's pending requests for an account (newest first, at most the scan
    /// limit and `budget`) and gives them to `only` (or every socket registered for the
    /// account): answers found meanwhile are applied to what this node holds (so a copy that
    /// missed its answer is not given out), frames this node lacks are read. Returns how
    /// many deliveries were made.
    pub async fn scan(
        &self,
        hub: &Hub,
        account: &str,
        only: Option<SocketId>,
        budget: usize,
    ) -> Result<usize, StoreError> {
        let now = UnixMillis::now().0;
        let key = key_pending(account);
        let last = isize::try_from(self.scan_limit.min(budget)).unwrap_or(isize::MAX) - 1;
        if last < 0 {
            return Ok(0);
        }
        let uuids: Vec<String> = self
            .run(|mut c| async move {
                let (uuids,): (Vec<String>,) = redis::pipe()
                    .cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .ignore()
                    .cmd("ZREVRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(last)
                    .query_async(&mut c)
                    .await?;
                Ok(uuids)
            })
            .await?;
        let ids: Vec<(RequestId, bool)> = uuids
            .into_iter()
            .rev()
            .filter_map(|u| RequestId::try_from(u).ok())
            .map(|u| {
                let need = hub.needs_frame(&u);
                (u, need)
            })
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        // Per uuid: its answer, and its record when this node lacks the frame.
        let records: Vec<(RequestId, Option<String>, Option<String>)> = self
            .run(|mut c| async move {
                let mut p = redis::pipe();
                for (u, need) in &ids {
                    p.cmd("GET").arg(key_reply(u));
                    if *need {
                        p.cmd("GET").arg(key_req(u));
                    }
                }
                let v: Vec<redis::Value> = p.query_async(&mut c).await?;
                let mut v = v.into_iter();
                let mut out = vec![];
                for (u, need) in ids {
                    let answer: Option<String> =
                        redis::from_redis_value(v.next().unwrap_or(redis::Value::Nil))
                            .map_err(malformed)?;
                    let req: Option<String> = if need {
                        redis::from_redis_value(v.next().unwrap_or(redis::Value::Nil))
                            .map_err(malformed)?
                    } else {
                        None
                    };
                    out.push((u, answer, req));
                }
                Ok(out)
            })
            .await?;
        let mut delivered = 0;
        for (uuid, answer, req) in records {
            if let Some(text) = answer {
                hub.remote_answer(&uuid, &text);
                continue;
            }
            let n = match req.and_then(|r| serde_json::from_str::<Shared>(&r).ok()) {
                Some(shared) if shared.expire > now => hub.offer(&shared, only),
                Some(_) => 0,
                None => match only {
                    Some(socket) => hub.deliver_to(&uuid, socket),
                    None => 0,
                },
            };
            delivered += n;
        }
        Ok(delivered)
    }

    /// Subscribes to accounts' channels (sockets of this node registered for them).
    pub async fn subscribe(&self, accounts: &[String]) -> Result<(), StoreError> {
        let mut sink = self.sink.lock().await;
        let s = sink.as_mut().ok_or(StoreError::Down)?;
        for batch in accounts.chunks(SUBSCRIBE_BATCH) {
            let channels: Vec<String> = batch.iter().map(|a| chan_acct(a)).collect();
            tokio::time::timeout(COMMAND_TIMEOUT, s.subscribe(channels))
                .await
                .map_err(|_| StoreError::Down)??;
        }
        Ok(())
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

    /// A socket of this node registered for an account (`new`: it was not before): this
    /// node subscribes to the account's announcements first, then gives the socket the
    /// account's pending requests from the store (at most `budget`; each at most once per
    /// socket). Store unreachable: what this node holds instead. Returns how many it gave.
    pub async fn registered(
        &self,
        hub: &Hub,
        socket: SocketId,
        account: &str,
        new: bool,
        budget: usize,
    ) -> usize {
        // This node's requests the store lacks come from memory in any case.
        let mut given = hub.deliver_backlog(socket, account, Backlog::Unstored, budget);
        let budget = budget.saturating_sub(given);
        if !new {
            return given;
        }
        if let Err(e) = self.subscribe(&[account.to_owned()]).await {
            tracing::warn!(error = %e, account, "subscribing failed; retried by the heartbeat");
            self.resubscribe.store(true, Ordering::Relaxed);
        }
        match self.scan(hub, account, Some(socket), budget).await {
            Ok(n) => given += n,
            Err(e) => {
                tracing::warn!(error = %e, account, "reading pending requests failed; giving what this node holds");
                given += hub.deliver_backlog(socket, account, Backlog::All, budget);
            }
        }
        given
    }

    /// Writes what the store lacks of this node: its requests (announced to the other nodes
    /// with them), and the answers it took, announced to their apps' nodes. Err: the store
    /// failed again.
    async fn sync(&self, hub: &Hub) -> Result<(), StoreError> {
        for Unsynced {
            shared,
            request,
            app_here,
            answer,
            answered,
        } in hub.unsynced()
        {
            if request {
                self.store_request(&shared, app_here, answered).await?;
                hub.mark_synced(&shared.uuid, true, false);
            }
            if let Some(text) = answer {
                let checked = CheckedReply {
                    uuid: shared.uuid.clone(),
                    account: shared.account.clone(),
                    text,
                    expire: UnixMillis(shared.expire),
                    node: shared.node.clone(),
                };
                if let Claim::Lost(_) = self.claim(&checked).await? {
                    hub.metrics.count("cluster", "answer_conflict");
                    tracing::warn!(uuid = %shared.uuid, "two answers were taken while the store was unreachable; the store kept the other one");
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

    /// Connects, writes this node's state and serves the node's channels until the store
    /// fails or `stop` fires; then again, with a back-off, until `stop`.
    pub async fn supervise(self: Arc<Self>, hub: Arc<Hub>, mut stop: broadcast::Receiver<()>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::select! {
                r = self.clone().session(hub.clone()) => r,
                _ = stop.recv() => return,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(StoreError::Refused(why)) => {
                    hub.metrics.count("cluster", "join_refused");
                    tracing::error!(error = %why, url = %self.url, "cannot join the cluster store; serving local sockets only");
                }
                Err(e) => {
                    hub.metrics.count("cluster", "connect_failed");
                    tracing::warn!(error = %e, url = %self.url, "cluster store unreachable; serving local sockets only");
                }
            }
            if self.up.swap(false, Ordering::Relaxed) {
                tracing::warn!(url = %self.url, "cluster store lost; serving local sockets only until it is back");
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

    /// Checks the store can be joined: a Redis new enough, holding this relay's key (or
    /// none yet).
    async fn check_store(
        &self,
        conn: &mut MultiplexedConnection,
        hub: &Hub,
    ) -> Result<(), StoreError> {
        let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < REDIS_MAJOR {
            return Err(StoreError::Refused(format!(
                "Redis {version} is too old: cluster mode needs Redis {REDIS_MAJOR}.0 or later"
            )));
        }
        let ours = hub.server_key().public_key().to_string();
        let (held,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(KEY_SERVER_KEY)
            .arg(&ours)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(KEY_SERVER_KEY)
            .query_async(conn)
            .await?;
        if held != ours {
            return Err(StoreError::Refused(format!(
                "the cluster's relays use server key {held}, this one {ours}: every node needs the same key file"
            )));
        }
        Ok(())
    }

    async fn session(self: Arc<Self>, hub: Arc<Hub>) -> Result<(), StoreError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let setup = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            self.check_store(&mut conn, &hub).await?;
            let pubsub = self.client.get_async_pubsub().await?;
            let (mut sink, stream) = pubsub.split();
            sink.subscribe(chan_node(&self.node)).await?;
            Ok::<_, StoreError>((conn, sink, stream))
        };
        let (conn, sink, mut stream) = tokio::time::timeout(COMMAND_TIMEOUT * 2, setup)
            .await
            .map_err(|_| StoreError::Down)??;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        *self.sink.lock().await = Some(sink);
        self.subscribe(&hub.registered_accounts()).await?;
        // The store may have lost what it held (a restart without persistence, a
        // failover): this node's live requests and answers are written again.
        hub.mark_all_unsynced();
        self.sync(&hub).await?;
        // Announcements missed while away: the answers for every unanswered request held
        // here, and the registered accounts' pending requests.
        for chunk in hub.unanswered_ids().chunks(512) {
            let answers: Vec<Option<String>> = self
                .run(|mut c| async move {
                    let mut p = redis::pipe();
                    for u in chunk {
                        p.cmd("GET").arg(key_reply(u));
                    }
                    Ok(p.query_async(&mut c).await?)
                })
                .await?;
            for (uuid, answer) in chunk.iter().zip(answers) {
                if let Some(text) = answer {
                    hub.remote_answer(uuid, &text);
                }
            }
        }
        for account in hub.registered_accounts() {
            self.scan(&hub, &account, None, usize::MAX).await?;
        }
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %self.node, url = %self.url, "cluster store connected");
            hub.metrics.count("cluster", "connected");
        }
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        let mut conn = conn;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(m) => self.deliver(&hub, m),
                    None => return Ok(()),
                },
                _ = heartbeat.tick() => {
                    let pong: Result<String, StoreError> = tokio::time::timeout(
                        COMMAND_TIMEOUT,
                        redis::cmd("PING").query_async(&mut conn),
                    )
                    .await
                    .map_err(|_| StoreError::Down)
                    .and_then(|r| r.map_err(StoreError::from));
                    pong?;
                    if self.resubscribe.swap(false, Ordering::Relaxed)
                        && let Err(e) = self.subscribe(&hub.registered_accounts()).await
                    {
                        self.resubscribe.store(true, Ordering::Relaxed);
                        tracing::warn!(error = %e, "resubscribing failed");
                    }
                    // What a failed write left behind. A refusal by Redis (out of memory,
                    // say) is retried at the next beat; a broken link ends the session.
                    match self.sync(&hub).await {
                        Ok(()) => {}
                        Err(StoreError::Redis(e)) if !(e.is_io_error() || e.is_timeout() || e.is_connection_dropped()) => {
                            hub.metrics.count("cluster", "store_refused");
                            tracing::warn!(error = %e, "the cluster store refused a write; retrying");
                        }
                        Err(e @ (StoreError::Malformed(_) | StoreError::Refused(_))) => {
                            tracing::warn!(error = %e, "writing to the cluster store")
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// A message on one of this node's channels (its own announcements are skipped).
    fn deliver(&self, hub: &Hub, msg: redis::Msg) {
        let Ok(payload) = msg.get_payload::<String>() else {
            return;
        };
        // This node's own announcements (`{"t":…,"from":"<node>",…}`) come back on the
        // channels it subscribes to: skipped without parsing.
        if payload
            .get(..payload.len().min(64))
            .is_some_and(|head| head.contains(self.node.as_str()))
        {
            return;
        }
        match serde_json::from_str::<Note>(&payload) {
            Ok(Note::Req { from, .. } | Note::Answer { from, .. }) if from == self.node => {}
            Ok(Note::Req { req, .. }) => {
                hub.metrics.count("cluster", "request_in");
                hub.offer(&req, None);
            }
            Ok(Note::Answer { uuid, text, .. }) => {
                hub.metrics.count("cluster", "answer_in");
                hub.remote_answer(&uuid, &text);
            }
            Err(e) => {
                hub.metrics.count("cluster", "malformed_note");
                tracing::warn!(error = %e, channel = msg.get_channel_name(), "malformed cluster message");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A node recognises its own announcements from their first 64 bytes.
    #[test]
    fn a_note_names_its_node_within_64_bytes() {
        let node = uuid::Uuid::new_v4().to_string();
        let uuid = RequestId::generate();
        let notes = [
            Note::Req {
                from: node.clone(),
                req: Shared {
                    uuid: uuid.clone(),
                    account: "alice".into(),
                    cmd: "sign_req".into(),
                    expire: 1,
                    relayed: "x".repeat(1000),
                    node: node.clone(),
                },
            },
            Note::Answer {
                from: node.clone(),
                uuid,
                text: "y".repeat(1000),
            },
        ];
        for n in notes {
            let text = serde_json::to_string(&n).unwrap();
            assert!(text[..64].contains(&node), "{text}");
            // The request note is written by hand: it reads back as the same note.
            if let Note::Req { req, .. } = &n {
                let hand = req_note(&node, &serde_json::to_string(req).unwrap());
                assert_eq!(hand, text);
                assert!(matches!(
                    serde_json::from_str::<Note>(&hand).unwrap(),
                    Note::Req { .. }
                ));
            }
        }
    }

    #[test]
    fn redis_passwords_are_redacted() {
        assert_eq!(
            redact("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redact("rediss://user:p@ss@host/"), "rediss://***@host/");
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }
}
