//! One WebSocket connection: greeting, reading and dispatching frames, heartbeat, shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use has_crypto::memo::pok;
use has_protocol::frame::{self, ToRelay};
use has_protocol::messages::*;
use has_protocol::{
    AppToRelay, FrameError, PksaToRelay, ProtocolVersion, RelayToApp, RelayToPksa, RequestId,
    Seconds, UnixMillis,
};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::Ctx;
use crate::cluster::{Claim, Cluster};
use crate::hub::{Backlog, Hub, Outbound, REGISTER_BACKLOG, ReplyRejection, SocketId};

/// Cluster mode: store reads a connection may cause per second (burst 4×): `attach_req`
/// for requests held elsewhere, and replies to requests this node does not hold.
const STORE_READS_PER_SECOND: u32 = 16;

/// How long one frame may take to leave before the socket is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// A token bucket: `rate` tokens per second, at most `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Bucket {
            tokens: rate * 4.0,
            rate,
            burst: rate * 4.0,
            last: Instant::now(),
        }
    }
    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token for a frame, if there is one.
    fn take(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a reply frame may be looked at: replies are paid for after the fact (only
    /// those the relay did not accept), so a socket may run into debt, down to one burst.
    fn in_credit(&mut self) -> bool {
        self.refill();
        self.tokens >= 1.0 - self.burst
    }

    /// Charges a reply the relay did not accept.
    fn charge(&mut self) {
        self.tokens = (self.tokens - 1.0).max(-self.burst);
    }
}

/// What became of a frame.
#[derive(Debug, PartialEq, Eq)]
enum Handled {
    /// A reply the relay accepted and routed.
    Relayed,
    /// Anything else.
    Other,
}

struct Conn {
    id: SocketId,
    ctx: Arc<Ctx>,
    tx: mpsc::Sender<Outbound>,
    last_error: Option<Instant>,
    /// Cluster mode: store reads this connection may cause (attach_req, and replies, for
    /// requests this node does not hold).
    store_reads: Bucket,
}

impl Conn {
    fn send(&self, text: String) {
        let _ = self.tx.try_send(Outbound::Text(text));
    }

    /// Answers a frame that was refused (a request over a limit, a dropped frame): always sent,
    /// one per refused frame, so a client matching answers to requests in order never loses
    /// its place.
    fn refuse(&mut self, message: &str) {
        if let Ok(t) = frame::encode(&RelayToApp::Error(ErrorMsg {
            error: message.to_owned(),
        })) {
            self.send(t);
        }
    }

    /// Sends `{"cmd":"error"}` for garbage; at most one per second per socket (garbage is not
    /// amplified).
    fn error(&mut self, message: &str) {
        if self
            .last_error
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        self.last_error = Some(Instant::now());
        if let Ok(t) = frame::encode(&RelayToApp::Error(ErrorMsg {
            error: message.to_owned(),
        })) {
            self.send(t);
        }
    }

    async fn handle_text(&mut self, text: &str) -> Handled {
        let ctx = self.ctx.clone();
        let m = &ctx.hub.metrics;
        if text.len() > self.ctx.config.max_frame_bytes {
            m.count("frame", "too_large");
            let limit = self.ctx.config.max_frame_bytes;
            self.error(&format!(
                "frame of {} bytes exceeds the {limit} byte limit",
                text.len()
            ));
            return Handled::Other;
        }
        let parsed = frame::parse_to_relay(text);
        match parsed {
            Err(FrameError::Ping) => m.count("ping_text", "ignored"),
            Err(FrameError::Invalid(f)) => {
                m.count(&f.message, "invalid");
                self.error(&format!("invalid payload: {f}"));
            }
            Err(e) => {
                m.count("frame", e.kind());
                self.error(&e.to_string());
            }
            Ok(ToRelay::Unknown(cmd)) => {
                m.count("unknown", "ignored");
                tracing::debug!(socket = self.id, cmd, "ignoring unknown command");
            }
            Ok(ToRelay::App(AppToRelay::AttachReq(a))) => {
                let ok = match &self.ctx.cluster {
                    None => self.ctx.hub.attach(self.id, &a.uuid),
                    Some(cluster) => match self.cluster_attach(cluster.clone(), &a.uuid).await {
                        Some(ok) => ok,
                        None => return Handled::Other,
                    },
                };
                m.count("attach_req", if ok { "ack" } else { "nack" });
            }
            Ok(ToRelay::App(AppToRelay::Unknown)) => m.count("unknown", "ignored"),
            Ok(ToRelay::App(req)) => {
                let cmd = match &req {
                    AppToRelay::AuthReq(_) => "auth_req",
                    AppToRelay::SignReq(_) => "sign_req",
                    _ => "challenge_req",
                };
                match &self.ctx.cluster {
                    None => match self.ctx.hub.new_request(self.id, req) {
                        Ok(_) => m.count(cmd, "accepted"),
                        Err(e) => {
                            m.count(cmd, "refused");
                            self.refuse(&e);
                        }
                    },
                    Some(cluster) => match self.ctx.hub.admit(self.id, req, true) {
                        Ok(admitted) => {
                            m.count(cmd, "accepted");
                            // Written before the wait leaves: a node that stops loses nothing
                            // it acknowledged. Unreachable: served here, written on return.
                            let stored = match cluster
                                .store_request(&admitted.shared, true, false)
                                .await
                            {
                                Ok(()) => true,
                                Err(e) => {
                                    m.count("cluster", "request_not_stored");
                                    tracing::warn!(error = %e, uuid = %admitted.shared.uuid, "request kept on this node until the cluster store is back");
                                    false
                                }
                            };
                            self.ctx.hub.release(self.id, &admitted, stored);
                        }
                        Err(e) => {
                            m.count(cmd, "refused");
                            self.refuse(&e);
                        }
                    },
                }
            }
            Ok(ToRelay::Pksa(PksaToRelay::KeyReq)) => {
                m.count("key_req", "answered");
                let key = self.ctx.hub.server_key().public_key().to_string();
                if let Ok(t) = frame::encode(&RelayToPksa::KeyAck(KeyAck { key })) {
                    self.send(t);
                }
            }
            Ok(ToRelay::Pksa(PksaToRelay::RegisterReq(r))) => self.register(r).await,
            Ok(ToRelay::Pksa(PksaToRelay::Error(e))) => {
                m.count("error", "from_client");
                tracing::debug!(socket = self.id, error = %e.error, "client sent error");
            }
            Ok(ToRelay::Pksa(PksaToRelay::Unknown)) => m.count("unknown", "ignored"),
            Ok(ToRelay::Pksa(reply)) => {
                let cmd = reply_cmd(&reply);
                let outcome = match &self.ctx.cluster {
                    None => self.ctx.hub.reply(self.id, reply),
                    Some(cluster) => self.cluster_reply(cluster.clone(), reply).await,
                };
                match outcome {
                    Ok(uuid) => {
                        m.count(cmd, "relayed");
                        tracing::debug!(socket = self.id, cmd, %uuid, "reply relayed");
                        return Handled::Relayed;
                    }
                    Err((why, uuid)) => {
                        m.count(cmd, why.as_str());
                        let uuid = uuid.map(|u| u.to_string()).unwrap_or_default();
                        tracing::info!(
                            socket = self.id,
                            cmd,
                            uuid,
                            reason = why.as_str(),
                            "reply not relayed"
                        );
                        if why != ReplyRejection::AlreadyAnswered {
                            self.error(&format!("{cmd} for {uuid} not relayed: {}", why.as_str()));
                        }
                    }
                }
            }
        }
        Handled::Other
    }

    /// `attach_req` in cluster mode: the store says whether the request lives (on any
    /// node) and moves its answer's route here. None: refused (the store is unreachable and
    /// this node does not hold the request).
    async fn cluster_attach(&mut self, cluster: Arc<Cluster>, uuid: &RequestId) -> Option<bool> {
        let hub = &self.ctx.hub;
        if !hub.knows(uuid) {
            // This relay's uuids are UUIDs: anything else is unknown without asking the store.
            if uuid::Uuid::parse_str(uuid.as_str()).is_err() {
                return Some(hub.attach(self.id, uuid));
            }
            // A store read costs every node: a connection gets a few per second.
            if !self.store_reads.take() {
                hub.metrics.count("attach_req", "refused_store_budget");
                self.refuse(&format!(
                    "attach_req for {uuid} refused: too many attach_req for requests made elsewhere; try again in a second"
                ));
                return None;
            }
        }
        match cluster.attach(uuid).await {
            Ok(store) => {
                let ok = hub.attach_from(self.id, uuid, store);
                // An answer announced between the store's read and the local binding went
                // by unseen: read it once more.
                if ok
                    && hub.unanswered(uuid)
                    && let Ok(Some(text)) = cluster.answer(uuid).await
                {
                    hub.remote_answer(uuid, &text);
                }
                Some(ok)
            }
            // What this node holds is still served while the store is away.
            Err(_) if hub.knows(uuid) => Some(hub.attach(self.id, uuid)),
            Err(e) => {
                // Not a nack: the request may well be alive elsewhere.
                tracing::warn!(error = %e, "attach_req: the cluster store is unreachable");
                hub.metrics.count("attach_req", "store_unavailable");
                self.refuse(&format!(
                    "attach_req for {uuid}: the relay cannot reach its store right now; try again"
                ));
                None
            }
        }
    }

    /// A reply in cluster mode: the request may be another node's (read from the store, for
    /// a socket registered for its account only), and the store decides which answer wins
    /// and announces it to the nodes that need it.
    async fn cluster_reply(
        &mut self,
        cluster: Arc<Cluster>,
        reply: PksaToRelay,
    ) -> Result<RequestId, (ReplyRejection, Option<RequestId>)> {
        let hub = &self.ctx.hub;
        if let Some(uuid) = Hub::reply_uuid(&reply)
            && !hub.knows(&uuid)
        {
            // A socket registered for nothing cannot answer anything: no store read for it.
            if !hub.socket_registered(self.id, None) {
                return Err((ReplyRejection::NotRegistered, Some(uuid)));
            }
            // Store reads for requests held elsewhere share one budget with attach_req.
            if !self.store_reads.take() {
                return Err((ReplyRejection::StoreBudget, Some(uuid)));
            }
            match cluster.load_request(&uuid).await {
                Ok(Some(shared)) if hub.socket_registered(self.id, Some(&shared.account)) => {
                    hub.remember(&shared)
                }
                Ok(Some(_)) => return Err((ReplyRejection::NotRegistered, Some(uuid))),
                Ok(None) => return Err((ReplyRejection::UnknownRequest, Some(uuid))),
                Err(_) => return Err((ReplyRejection::StoreUnavailable, Some(uuid))),
            }
        }
        let checked = hub.check_reply(self.id, reply)?;
        let uuid = checked.uuid.clone();
        let stored = match cluster.claim(&checked).await {
            Ok(Claim::Lost(held)) => {
                // This node's copy learns the answer that won.
                hub.remote_answer(&uuid, &held);
                return Err((ReplyRejection::AlreadyAnswered, Some(uuid)));
            }
            Ok(Claim::Won) => true,
            Err(e) => {
                hub.metrics.count("cluster", "answer_not_stored");
                tracing::warn!(error = %e, %uuid, "answer kept on this node until the cluster store is back");
                false
            }
        };
        match hub.take_answer(&checked, stored) {
            Ok(()) => Ok(uuid),
            // Won in the store: the answer is the request's even if this node's copy had
            // another meanwhile (two answers taken during a store outage).
            Err(ReplyRejection::AlreadyAnswered) if stored => Ok(uuid),
            Err(why) => Err((why, Some(uuid))),
        }
    }

    async fn register(&mut self, r: RegisterReq) {
        let m = &self.ctx.hub.metrics;
        let names: Vec<String> = r.accounts.iter().map(|a| a.name.to_string()).collect();
        let keys = match self.ctx.directory.lookup(&names).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "account lookup failed");
                m.count("register_req", "lookup_failed");
                self.error("register_req: cannot look up the accounts right now");
                return;
            }
        };
        // Documented rule: every listed account must exist, or none is registered.
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| !keys.contains_key(*n))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            m.count("register_req", "unknown_account");
            self.error(&format!(
                "register_req: unknown account(s): {}",
                unknown.join(", ")
            ));
            return;
        }
        let window = self.ctx.config.pok_time_window.as_millis() as i128;
        // Queued requests this registration may hand out, for all its accounts together.
        let mut backlog = REGISTER_BACKLOG;
        for acct in &r.accounts {
            let Some(account_keys) = keys.get(acct.name.as_str()) else {
                continue;
            };
            let verdict = match acct.proof() {
                None => Err("no pok".to_owned()),
                Some(p) => {
                    match pok::decode(self.ctx.hub.server_key(), self.ctx.hub.pok_cache(), p) {
                        Err(e) => Err(format!("does not decode ({})", e.kind())),
                        Ok(proof) if !account_keys.contains(&proof.from) => {
                            Err("not signed by a key of the account".into())
                        }
                        Ok(proof) => match proof.value.parse::<i128>() {
                            Err(_) => Err("value is not a millisecond timestamp".into()),
                            Ok(t) if (t - i128::from(UnixMillis::now().0)).abs() > window => {
                                Err("timestamp outside the allowed window".into())
                            }
                            Ok(_) => Ok(()),
                        },
                    }
                }
            };
            match verdict {
                Ok(()) => {
                    m.count("register_req", "registered");
                    tracing::info!(socket = self.id, account = %acct.name, app = %r.app, "account registered");
                    let new = self
                        .ctx
                        .hub
                        .register(self.id, &acct.name, account_keys.clone());
                    let given = match &self.ctx.cluster {
                        None => self.ctx.hub.deliver_backlog(
                            self.id,
                            acct.name.as_str(),
                            Backlog::All,
                            backlog,
                        ),
                        Some(cluster) => {
                            cluster
                                .registered(
                                    &self.ctx.hub,
                                    self.id,
                                    acct.name.as_str(),
                                    new,
                                    backlog,
                                )
                                .await
                        }
                    };
                    backlog = backlog.saturating_sub(given);
                }
                Err(why) => {
                    m.count("register_req", "bad_pok");
                    tracing::info!(socket = self.id, account = %acct.name, reason = %why, "registration refused");
                    // Not rate-limited: one answer per refused account.
                    if let Ok(t) = frame::encode(&RelayToPksa::Error(ErrorMsg {
                        error: format!(
                            "register_req: account {}: invalid proof of key: {why}",
                            acct.name
                        ),
                    })) {
                        self.send(t);
                    }
                }
            }
        }
    }
}

/// Whether a frame is a PKSA's reply (`…_ack`, `…_nack`, `…_err`), from its `cmd` alone
/// (within the first 512 bytes). A frame with a second `"cmd"` anywhere is not taken for one:
/// the parser keeps the last duplicate, so a request could otherwise pass for a reply.
fn is_reply_frame(text: &str) -> bool {
    let Some(cmd) = head_field(text, "cmd") else {
        return false;
    };
    let once = text
        .find("\"cmd\"")
        .and_then(|i| text.get(i + 5..))
        .is_some_and(|after| !after.contains("\"cmd\""));
    once && ["auth_", "sign_", "challenge_"].iter().any(|f| {
        ["ack", "nack", "err"]
            .iter()
            .any(|k| cmd.strip_prefix(f) == Some(k))
    })
}

/// A string field among a frame's first 512 bytes, found without parsing the frame (a
/// flood must not cost a parse per frame): the first `"name": "value"` whose value is at
/// most 64 letters, digits, `_` or `-`.
fn head_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let head = text.get(..text.len().min(512)).unwrap_or("");
    let key = format!("\"{name}\"");
    let rest = head.get(head.find(&key)? + key.len()..)?;
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let value = rest.get(..rest.find('"')?)?;
    (value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    .then_some(value)
}

/// What a dropped frame was, from its first bytes without parsing it (a flood must not cost
/// a parse per frame): `sign_req`, `sign_ack for <uuid>`, or `a frame`.
fn describe_frame(text: &str) -> String {
    match (head_field(text, "cmd"), head_field(text, "uuid")) {
        (Some(cmd), Some(uuid)) => format!("{cmd} for {uuid}"),
        (Some(cmd), None) => cmd.to_owned(),
        _ => "a frame".to_owned(),
    }
}

fn reply_cmd(p: &PksaToRelay) -> &'static str {
    match p {
        PksaToRelay::AuthAck(_) => "auth_ack",
        PksaToRelay::AuthNack(_) => "auth_nack",
        PksaToRelay::AuthErr(_) => "auth_err",
        PksaToRelay::SignAck(_) => "sign_ack",
        PksaToRelay::SignNack(_) => "sign_nack",
        PksaToRelay::SignErr(_) => "sign_err",
        PksaToRelay::ChallengeAck(_) => "challenge_ack",
        PksaToRelay::ChallengeNack(_) => "challenge_nack",
        PksaToRelay::ChallengeErr(_) => "challenge_err",
        _ => "other",
    }
}

/// Sends one outbound item. False when the socket is done: the relay closed it (a queue
/// that overflowed), or the peer stopped reading (a peer that stops reading with its buffers
/// full must not hold the task, and its connection slot, for ever).
async fn write_out<S>(
    sink: &mut S,
    out: Option<Outbound>,
    metrics: &crate::metrics::Metrics,
) -> bool
where
    S: futures_util::Sink<Message> + Unpin,
{
    match out {
        Some(Outbound::Text(t)) => {
            match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(t.into()))).await {
                Ok(Ok(())) => true,
                Ok(Err(_)) => false,
                Err(_) => {
                    metrics.count("socket", "send_timeout");
                    false
                }
            }
        }
        Some(Outbound::Close) | None => {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: "closed by relay".into(),
                })))
                .await;
            false
        }
    }
}

/// Serves one socket until it closes, misses pongs, or the relay shuts down.
pub(crate) async fn serve_socket(
    stream: TcpStream,
    peer: SocketAddr,
    id: SocketId,
    ctx: Arc<Ctx>,
    mut stop: broadcast::Receiver<()>,
) {
    let max = ctx.config.max_frame_bytes;
    // tungstenite refuses (and closes on) messages above twice our limit; between the limit
    // and that, we answer an error and keep the socket.
    // A 4 KiB read buffer (tungstenite's default is 128 KiB, allocated eagerly per socket):
    // HAS frames are small, and idle sockets dominate a relay's memory.
    // What a socket may hold unsent is bounded too (tungstenite's default is unbounded): a
    // client that sends pings and never reads gets its pongs coalesced into one once the
    // buffer is full, instead of growing the relay by every pong (5 GB in 20 s once).
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_write_buffer_size(
            (128 * 1024usize)
                .saturating_add(max.saturating_mul(2))
                .saturating_add(64 * 1024),
        )
        .max_message_size(Some(max.saturating_mul(2)))
        .max_frame_size(Some(max.saturating_mul(2)));
    let ws = match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::accept_async_with_config(stream, Some(ws_config)),
    )
    .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "WebSocket handshake timed out");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Outbound>(1024);
    ctx.hub.add_socket(id, tx.clone(), peer.ip());
    tracing::debug!(socket = id, %peer, "socket open");

    let connected = RelayToApp::Connected(Connected {
        server: Some(ctx.config.server_name.clone()),
        socketid: Some(uuid::Uuid::new_v4().to_string()),
        timeout: Some(Seconds(ctx.config.timeout.as_secs())),
        ping_rate: Some(Seconds(ctx.config.ping_rate.as_secs())),
        version: Some(ctx.version.to_owned()),
        protocol: Some(ProtocolVersion::V1),
    });
    let mut conn = Conn {
        id,
        ctx: ctx.clone(),
        tx,
        last_error: None,
        store_reads: Bucket::new(STORE_READS_PER_SECOND),
    };
    if let Ok(t) = frame::encode(&connected)
        && sink.send(Message::Text(t.into())).await.is_err()
    {
        ctx.hub.remove_socket(id);
        return;
    }
    let ping_rate = ctx.config.ping_rate.max(Duration::from_millis(100));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_rate, ping_rate);
    let mut last_pong = Instant::now();
    let mut bucket = Bucket::new(ctx.config.frames_per_second);
    loop {
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    // A PKSA's answers to requests the relay gave it are not rate-limited
                    // (the requests were); any other frame takes a token first.
                    let reply = is_reply_frame(t.as_str());
                    let allowed = if reply { bucket.in_credit() } else { bucket.take() };
                    if !allowed {
                        ctx.hub.metrics.count("frame", "rate_limited");
                        conn.refuse(&format!(
                            "{RATE_LIMITED}: {} dropped",
                            describe_frame(t.as_str())
                        ));
                        continue;
                    }
                    // Frames for this socket keep leaving while the frame is handled (an
                    // account lookup, a cluster store round trip): its outbound queue must not
                    // fill up behind a slow dependency.
                    let mut open = true;
                    let handled = {
                        let handling = conn.handle_text(t.as_str());
                        tokio::pin!(handling);
                        loop {
                            tokio::select! {
                                biased;
                                h = &mut handling => break h,
                                out = rx.recv(), if open => {
                                    open = write_out(&mut sink, out, &ctx.hub.metrics).await;
                                }
                            }
                        }
                    };
                    if handled != Handled::Relayed && reply {
                        bucket.charge();
                    }
                    if !open {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    ctx.hub.metrics.count("frame", "binary");
                    conn.error("binary frames are not part of the HAS protocol");
                }
                Some(Ok(Message::Pong(_))) => last_pong = Instant::now(),
                Some(Ok(Message::Ping(_))) | Some(Ok(Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) => {
                    // RFC 6455 §5.5.1: answer the client's Close (tungstenite queued the
                    // reply), then close. Dropping TCP instead shows the app an abnormal
                    // closure (1006), and some reconnect and replay what they had.
                    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
                    break;
                }
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(socket = id, error = %e, "socket error");
                    break;
                }
            },
            out = rx.recv() => if !write_out(&mut sink, out, &ctx.hub.metrics).await {
                break;
            },
            _ = ping.tick() => {
                if last_pong.elapsed() > ping_rate * 2 + Duration::from_millis(500) {
                    tracing::info!(socket = id, "no pong for two heartbeats: closing");
                    ctx.hub.metrics.count("socket", "ping_timeout");
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "heartbeat timeout".into() }))).await;
                    break;
                }
                if !matches!(
                    tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Ping(Vec::new().into()))).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
            _ = stop.recv() => {
                let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() }))).await;
                let _ = sink.flush().await;
                break;
            }
        }
    }
    let gone = ctx.hub.remove_socket(id);
    if let Some(cluster) = &ctx.cluster {
        for account in gone {
            cluster.unsubscribe(&ctx.hub, &account).await;
        }
    }
    tracing::debug!(socket = id, "socket closed");
}

#[cfg(test)]
mod tests {
    use super::is_reply_frame;

    #[test]
    fn replies_are_told_by_their_one_cmd() {
        assert!(is_reply_frame(
            r#"{"cmd":"sign_ack","uuid":"u","data":"x"}"#
        ));
        assert!(is_reply_frame(r#"{ "cmd" : "challenge_err","uuid":"u"}"#));
        assert!(!is_reply_frame(
            r#"{"cmd":"sign_req","account":"a","data":"x"}"#
        ));
        assert!(!is_reply_frame(r#"{"cmd":"sign_acknowledged"}"#));
        // A request dressed as a reply (the parser keeps the last duplicate).
        assert!(!is_reply_frame(
            r#"{"cmd":"sign_ack","cmd":"sign_req","data":"x"}"#
        ));
        assert!(!is_reply_frame(
            r#"{"x":{"cmd":"sign_ack"},"cmd":"sign_req"}"#
        ));
        assert!(!is_reply_frame("not json"));
    }
}
