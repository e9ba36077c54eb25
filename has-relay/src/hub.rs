//! The routing state shared by all connections: registrations, pending requests, answers.
//!
//! Every method takes the lock briefly and never awaits; frames to other sockets go through
//! their bounded outbound channels (`try_send`: a socket too slow to drain its queue is
//! closed rather than allowed to stall the relay).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use has_crypto::{PrivateKey, PublicKey, SharedSecretCache, memo::pok};
use has_protocol::messages::*;
use has_protocol::{
    AccountName, PksaToRelay, RelayToApp, RelayToPksa, RequestId, UnixMillis, frame,
};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Id of a socket inside this relay.
pub type SocketId = u64;

/// What a connection task is told to do.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Send this text frame.
    Text(String),
    /// Close the socket.
    Close,
}

#[derive(Debug)]
struct Socket {
    tx: mpsc::Sender<Outbound>,
    /// The peer's address.
    ip: IpAddr,
    /// account → that account's public keys (from registration), for reply POK checks.
    registered: HashMap<String, std::collections::HashSet<PublicKey>>,
}

#[derive(Debug)]
struct Request {
    account: String,
    family: Family,
    /// The relayed frame for PKSAs.
    relayed: String,
    app_socket: Option<SocketId>,
    /// The socket and address that made it (for the pending caps; `app_socket` may change
    /// with `attach_req`).
    origin: (SocketId, IpAddr),
    /// Counted in its account's pending requests (a request that gave way to another
    /// connection's stays routable but no longer counts there).
    counted: bool,
    expire: UnixMillis,
    created: Instant,
    answer: Option<String>,
    delivered_to: HashSet<SocketId>,
    /// Bytes held for it (the relayed frame while pending, then the kept answer), counted
    /// against its origin address and the relay's total.
    held: usize,
}

#[derive(Debug, Default)]
struct State {
    sockets: HashMap<SocketId, Socket>,
    /// account → sockets registered for it.
    registrations: HashMap<String, HashSet<SocketId>>,
    requests: HashMap<RequestId, Request>,
    /// account → requests not yet answered (kept exact on answer and purge).
    pending: HashMap<String, usize>,
    /// Sum of `pending`.
    pending_total: u64,
    /// Bytes held for every request (relayed frames while pending, answers until expiry):
    /// the relay's memory that strangers can fill, in total and per origin address.
    held_bytes: usize,
    held_by_ip: HashMap<IpAddr, usize>,
    /// Unanswered requests per originating socket and per address.
    pending_by_socket: HashMap<SocketId, usize>,
    pending_by_ip: HashMap<IpAddr, usize>,
    /// account → its requests, oldest first (answered ones are skipped and dropped lazily).
    queue: HashMap<String, VecDeque<RequestId>>,
}

/// The request command of a family.
fn family_cmd(f: Family) -> &'static str {
    match f {
        Family::Auth => "auth_req",
        Family::Sign => "sign_req",
        Family::Challenge => "challenge_req",
    }
}

fn decrement<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = m.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(k);
        }
    }
}

impl State {
    /// `add` bytes more (or `sub` fewer) held for a request from `ip`.
    fn hold(&mut self, ip: IpAddr, add: usize, sub: usize) {
        self.held_bytes = self.held_bytes.saturating_add(add).saturating_sub(sub);
        let e = self.held_by_ip.entry(ip).or_insert(0);
        *e = e.saturating_add(add).saturating_sub(sub);
        if *e == 0 {
            self.held_by_ip.remove(&ip);
        }
    }

    /// A request stops being pending (answered or expired).
    fn pending_done(&mut self, account: &str, origin: (SocketId, IpAddr), counted: bool) {
        if counted {
            decrement(&mut self.pending, &account.to_owned());
        }
        decrement(&mut self.pending_by_socket, &origin.0);
        decrement(&mut self.pending_by_ip, &origin.1);
        self.pending_total = self.pending_total.saturating_sub(1);
    }

    /// For a full account: the oldest counted request of the address (then, within an
    /// address, the connection) holding the most of the account's counted requests, if that
    /// holds more than the newcomer's `(ip, socket)` does.
    fn heaviest_oldest(
        &mut self,
        account: &str,
        ip: IpAddr,
        socket: SocketId,
    ) -> Option<RequestId> {
        let requests = &self.requests;
        let q = self.queue.get_mut(account)?;
        q.retain(|u| requests.get(u).is_some_and(|r| r.answer.is_none()));
        let counted = || {
            q.iter()
                .filter_map(|u| requests.get(u).map(|r| (u, r)))
                .filter(|(_, r)| r.counted)
        };
        let mut by_ip: HashMap<IpAddr, usize> = HashMap::new();
        let mut by_socket: HashMap<SocketId, usize> = HashMap::new();
        for (_, r) in counted() {
            *by_ip.entry(r.origin.1).or_default() += 1;
            *by_socket.entry(r.origin.0).or_default() += 1;
        }
        let (heavy_ip, n) = by_ip
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(i, n)| (*i, *n))?;
        let mine_ip = by_ip.get(&ip).copied().unwrap_or(0);
        if heavy_ip != ip {
            if n <= mine_ip + 1 {
                return None;
            }
            // The heaviest address's busiest connection gives way.
            let (heavy_socket, _) = by_socket
                .iter()
                .filter(|(s, _)| counted().any(|(_, r)| r.origin == (**s, heavy_ip)))
                .max_by_key(|(_, n)| **n)?;
            let heavy_socket = *heavy_socket;
            return counted()
                .find(|(_, r)| r.origin.0 == heavy_socket)
                .map(|(u, _)| u.clone());
        }
        // Same address (or the heaviest is this address): fair share between its connections.
        let mine = by_socket.get(&socket).copied().unwrap_or(0);
        let (heavy_socket, m) = by_socket
            .iter()
            .filter(|(s, _)| counted().any(|(_, r)| r.origin == (**s, ip)))
            .max_by_key(|(_, n)| **n)
            .map(|(s, n)| (*s, *n))?;
        if m <= mine + 1 {
            return None;
        }
        counted()
            .find(|(_, r)| r.origin.0 == heavy_socket)
            .map(|(u, _)| u.clone())
    }
}

/// Why a reply was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyRejection {
    /// No such request (unknown or already purged).
    UnknownRequest,
    /// The request expired.
    Expired,
    /// Another PKSA answered first.
    AlreadyAnswered,
    /// The sender is not registered for the request's account.
    NotRegistered,
    /// The reply's command does not match the request (e.g. sign_ack for an auth_req).
    WrongFamily,
    /// No `pok` and replies without one are not accepted.
    MissingPok,
    /// The `pok` does not decode to the uuid from one of the account's keys.
    BadPok,
}

impl ReplyRejection {
    /// Stable name (metrics, logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplyRejection::UnknownRequest => "unknown_request",
            ReplyRejection::Expired => "expired",
            ReplyRejection::AlreadyAnswered => "already_answered",
            ReplyRejection::NotRegistered => "not_registered",
            ReplyRejection::WrongFamily => "wrong_family",
            ReplyRejection::MissingPok => "missing_pok",
            ReplyRejection::BadPok => "bad_pok",
        }
    }
}

/// The shared routing state.
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    server_key: PrivateKey,
    pok_cache: SharedSecretCache,
    timeout_ms: u64,
    limits: Limits,
    allow_replies_without_pok: bool,
    /// Metrics.
    pub metrics: Metrics,
}

/// Caps on unanswered requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per account. When an account is full, the oldest request of the connection with the
    /// most pending requests for it gives way to a connection with fewer (fair share): one
    /// connection, however busy, cannot shut an account's other apps out.
    pub per_account: usize,
    /// Per connection.
    pub per_socket: usize,
    /// Per client address (all its connections).
    pub per_ip: usize,
    /// Bytes held for requests together (relayed frames while pending, answers until
    /// expiry), whoever sent them; one address (an IPv6 /64) may hold a sixteenth of it.
    pub total_bytes: usize,
}

/// The address a connection counts under: IPv4 as is, IPv6 by its /64 (one host usually
/// has a whole /64 to pick addresses from).
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Hub {
    /// A hub with the server key and limits.
    pub fn new(
        server_key: PrivateKey,
        timeout_ms: u64,
        limits: Limits,
        allow_replies_without_pok: bool,
    ) -> Self {
        Hub {
            state: Mutex::new(State::default()),
            server_key,
            pok_cache: SharedSecretCache::new(4096),
            timeout_ms,
            limits,
            allow_replies_without_pok,
            metrics: Metrics::default(),
        }
    }

    /// The server key (for `key_ack` and POK decoding).
    pub fn server_key(&self) -> &PrivateKey {
        &self.server_key
    }

    /// The shared-secret cache for POK decoding.
    pub fn pok_cache(&self) -> &SharedSecretCache {
        &self.pok_cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the data is still consistent
        // enough to keep routing (every mutation is a single insert/remove).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(state: &State, socket: SocketId, text: String) -> bool {
        match state.sockets.get(&socket) {
            Some(s) => match s.tx.try_send(Outbound::Text(text)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(socket, "outbound queue full: closing the slow socket");
                    let _ = s.tx.try_send(Outbound::Close);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
            None => false,
        }
    }

    /// A new socket.
    pub fn add_socket(&self, id: SocketId, tx: mpsc::Sender<Outbound>, ip: IpAddr) {
        self.lock().sockets.insert(
            id,
            Socket {
                tx,
                // The per-address caps count an IPv6 /64 as one address.
                ip: address_group(ip),
                registered: HashMap::new(),
            },
        );
        self.metrics
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A socket went away: its registrations end; requests it made stay for `attach_req`.
    pub fn remove_socket(&self, id: SocketId) {
        let mut st = self.lock();
        if let Some(sock) = st.sockets.remove(&id) {
            for account in sock.registered.keys() {
                if let Some(set) = st.registrations.get_mut(account) {
                    set.remove(&id);
                    if set.is_empty() {
                        st.registrations.remove(account);
                    }
                }
            }
        }
        for r in st.requests.values_mut() {
            if r.app_socket == Some(id) {
                r.app_socket = None;
            }
        }
        self.metrics
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics.registered_accounts.store(
            st.registrations.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Every socket's outbound channel (for shutdown).
    pub fn all_senders(&self) -> Vec<mpsc::Sender<Outbound>> {
        self.lock().sockets.values().map(|s| s.tx.clone()).collect()
    }

    /// Accepts an app request: assigns uuid and expiry, answers `*_wait`, forwards to every
    /// PKSA registered for the account or queues it. Returns the wait frame, or an error text.
    pub fn new_request(&self, from: SocketId, req: AppToRelay) -> Result<String, String> {
        let now = UnixMillis::now();
        let uuid = RequestId::generate();
        let expire = now.plus_millis(self.timeout_ms);
        let (account, family, relayed, wait) = match req {
            AppToRelay::AuthReq(r) => {
                let relayed = RelayToPksa::AuthReq(RelayedAuthReq {
                    account: r.account.clone(),
                    data: r.data,
                    uuid: uuid.clone(),
                    expire,
                    auth_key: r.auth_key,
                    token: r.token,
                });
                let wait = RelayToApp::AuthWait(Wait {
                    uuid: uuid.clone(),
                    expire,
                    account: Some(r.account.clone()),
                });
                (r.account, Family::Auth, relayed, wait)
            }
            AppToRelay::SignReq(r) => {
                let relayed = RelayToPksa::SignReq(RelayedSignReq {
                    account: r.account.clone(),
                    data: r.data,
                    uuid: uuid.clone(),
                    expire,
                    token: r.token,
                });
                let wait = RelayToApp::SignWait(Wait {
                    uuid: uuid.clone(),
                    expire,
                    account: Some(r.account.clone()),
                });
                (r.account, Family::Sign, relayed, wait)
            }
            AppToRelay::ChallengeReq(r) => {
                let relayed = RelayToPksa::ChallengeReq(RelayedChallengeReq {
                    account: r.account.clone(),
                    data: r.data,
                    uuid: uuid.clone(),
                    expire,
                    token: r.token,
                });
                let wait = RelayToApp::ChallengeWait(Wait {
                    uuid: uuid.clone(),
                    expire,
                    account: Some(r.account.clone()),
                });
                (r.account, Family::Challenge, relayed, wait)
            }
            _ => return Err("not a request".into()),
        };
        let relayed = frame::encode(&relayed).map_err(|e| e.to_string())?;
        let wait = frame::encode(&wait).map_err(|e| e.to_string())?;
        let mut st = self.lock();
        let Some(ip) = st.sockets.get(&from).map(|s| s.ip) else {
            return Err("connection closed".into());
        };
        let cmd = family_cmd(family);
        if st.pending_by_socket.get(&from).copied().unwrap_or(0) >= self.limits.per_socket {
            self.metrics.count(cmd, "refused_socket_limit");
            return Err(format!(
                "{cmd} refused: too many pending requests on this connection"
            ));
        }
        if st.pending_by_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip {
            self.metrics.count(cmd, "refused_ip_limit");
            return Err(format!(
                "{cmd} refused: too many pending requests from this address"
            ));
        }
        let per_address = self.limits.total_bytes / 16;
        if st
            .held_by_ip
            .get(&ip)
            .copied()
            .unwrap_or(0)
            .saturating_add(relayed.len())
            > per_address
        {
            self.metrics.count(cmd, "refused_ip_bytes");
            return Err(format!(
                "{cmd} refused: too many pending bytes from this address"
            ));
        }
        if st.held_bytes.saturating_add(relayed.len()) > self.limits.total_bytes {
            self.metrics.count(cmd, "refused_relay_bytes");
            return Err(format!(
                "{cmd} refused: the relay holds too many pending bytes; try again later"
            ));
        }
        if st.pending.get(account.as_str()).copied().unwrap_or(0) >= self.limits.per_account {
            match st.heaviest_oldest(account.as_str(), ip, from) {
                Some(old) => self.give_way(&mut st, &old),
                None => {
                    self.metrics.count(cmd, "refused_account_limit");
                    return Err(format!(
                        "{cmd} refused: too many pending requests for {account}"
                    ));
                }
            }
        }
        let targets: Vec<SocketId> = st
            .registrations
            .get(account.as_str())
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        // The wait goes out before the relayed request can be answered.
        Self::send(&st, from, wait.clone());
        let mut delivered = HashSet::new();
        for t in targets {
            if Self::send(&st, t, relayed.clone()) {
                delivered.insert(t);
            }
        }
        let held = relayed.len();
        st.hold(ip, held, 0);
        st.requests.insert(
            uuid.clone(),
            Request {
                account: account.to_string(),
                family,
                relayed,
                app_socket: Some(from),
                expire,
                created: Instant::now(),
                answer: None,
                delivered_to: delivered,
                origin: (from, ip),
                counted: true,
                held,
            },
        );
        st.queue
            .entry(account.to_string())
            .or_default()
            .push_back(uuid.clone());
        *st.pending.entry(account.to_string()).or_insert(0) += 1;
        *st.pending_by_socket.entry(from).or_insert(0) += 1;
        *st.pending_by_ip.entry(ip).or_insert(0) += 1;
        st.pending_total += 1;
        self.metrics
            .queue_depth
            .store(st.pending_total, std::sync::atomic::Ordering::Relaxed);
        Ok(wait)
    }

    /// A pending request stops counting in its account's pending requests, to make room for
    /// a connection holding fewer (fair share). It is not dropped: it may already be with a
    /// PKSA, which may still sign it, and its app still gets the answer (telling the app it
    /// was dropped could make it send, and sign, the same thing twice). Its connection and
    /// address caps still count it.
    fn give_way(&self, st: &mut State, uuid: &RequestId) {
        let Some(r) = st.requests.get_mut(uuid) else {
            return;
        };
        if !r.counted {
            return;
        }
        r.counted = false;
        let (account, family) = (r.account.clone(), r.family);
        decrement(&mut st.pending, &account);
        self.metrics
            .count(family_cmd(family), "gave_way_fair_share");
    }

    /// Registers `socket` for `account` (its keys already verified) and delivers the
    /// requests queued for it.
    pub fn register(
        &self,
        socket: SocketId,
        account: &AccountName,
        keys: std::collections::HashSet<PublicKey>,
    ) {
        let now = UnixMillis::now();
        let mut st = self.lock();
        let Some(sock) = st.sockets.get_mut(&socket) else {
            return;
        };
        sock.registered.insert(account.to_string(), keys);
        st.registrations
            .entry(account.to_string())
            .or_default()
            .insert(socket);
        let ack = frame::encode(&RelayToPksa::RegisterAck(RegisterAck {
            account: account.clone(),
        }));
        if let Ok(ack) = ack {
            Self::send(&st, socket, ack);
        }
        let queued: Vec<(RequestId, String)> = st
            .requests
            .iter()
            .filter(|(_, r)| {
                r.account == account.as_str()
                    && r.answer.is_none()
                    && r.expire > now
                    && !r.delivered_to.contains(&socket)
            })
            .map(|(u, r)| (u.clone(), r.relayed.clone()))
            .collect();
        for (uuid, text) in queued {
            if Self::send(&st, socket, text)
                && let Some(r) = st.requests.get_mut(&uuid)
            {
                r.delivered_to.insert(socket);
            }
        }
        self.metrics.registered_accounts.store(
            st.registrations.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Routes a PKSA reply to its app (first terminal reply wins; `pok` stripped).
    pub fn reply(
        &self,
        from: SocketId,
        reply: PksaToRelay,
    ) -> Result<RequestId, (ReplyRejection, Option<RequestId>)> {
        let Some((family, uuid, pok_text)) = reply
            .reply_parts()
            .map(|(f, u, p)| (f, u.clone(), p.map(str::to_owned)))
        else {
            return Err((ReplyRejection::UnknownRequest, None));
        };
        let now = UnixMillis::now();
        // Checks under the lock; the POK (base58, ECDH from the cache, AES) and the encoding
        // outside it, so one socket's proof does not stall every other socket's routing.
        let (account, keys) = {
            let st = self.lock();
            let (account, expired, answered, req_family) = match st.requests.get(&uuid) {
                None => return Err((ReplyRejection::UnknownRequest, Some(uuid))),
                Some(r) => (
                    r.account.clone(),
                    r.expire <= now,
                    r.answer.is_some(),
                    r.family,
                ),
            };
            if expired {
                return Err((ReplyRejection::Expired, Some(uuid)));
            }
            if answered {
                return Err((ReplyRejection::AlreadyAnswered, Some(uuid)));
            }
            if req_family != family {
                return Err((ReplyRejection::WrongFamily, Some(uuid)));
            }
            let Some(keys) = st
                .sockets
                .get(&from)
                .and_then(|s| s.registered.get(&account))
                .cloned()
            else {
                return Err((ReplyRejection::NotRegistered, Some(uuid)));
            };
            (account, keys)
        };
        match pok_text {
            Some(p) => match pok::decode(&self.server_key, &self.pok_cache, &p) {
                Ok(proof) if proof.value == uuid.as_str() && keys.contains(&proof.from) => {}
                _ => return Err((ReplyRejection::BadPok, Some(uuid))),
            },
            None if self.allow_replies_without_pok => {}
            None => return Err((ReplyRejection::MissingPok, Some(uuid))),
        }
        let Some(app_frame) = reply.into_app_reply() else {
            return Err((ReplyRejection::UnknownRequest, Some(uuid)));
        };
        let text = frame::encode(&app_frame)
            .map_err(|_| (ReplyRejection::UnknownRequest, Some(uuid.clone())))?;
        let mut st = self.lock();
        // Re-checked: another PKSA may have answered (or the socket unregistered) meanwhile;
        // the first terminal reply to get here wins.
        let Some(r) = st.requests.get_mut(&uuid) else {
            return Err((ReplyRejection::UnknownRequest, Some(uuid)));
        };
        if r.answer.is_some() {
            return Err((ReplyRejection::AlreadyAnswered, Some(uuid)));
        }
        r.answer = Some(text.clone());
        self.metrics.observe_latency(r.created.elapsed());
        let (app, origin, counted) = (r.app_socket, r.origin, r.counted);
        // Answered: what PKSAs were sent is no longer needed; the answer is kept (and
        // counted) until the request expires.
        let relayed = std::mem::take(&mut r.relayed).len();
        r.held = r.held.saturating_sub(relayed).saturating_add(text.len());
        st.hold(origin.1, text.len(), relayed);
        st.pending_done(&account, origin, counted);
        if let Some(app) = app {
            Self::send(&st, app, text);
        }
        self.metrics
            .queue_depth
            .store(st.pending_total, std::sync::atomic::Ordering::Relaxed);
        Ok(uuid)
    }

    /// `attach_req`: re-binds the request to `socket`; `attach_ack` then the stored answer, or
    /// `attach_nack` when the request (or its answer) expired.
    pub fn attach(&self, socket: SocketId, uuid: &RequestId) -> bool {
        let now = UnixMillis::now();
        let mut st = self.lock();
        let live = st.requests.get(uuid).is_some_and(|r| r.expire > now);
        let attach = Attach { uuid: uuid.clone() };
        if !live {
            if let Ok(t) = frame::encode(&RelayToApp::AttachNack(attach)) {
                Self::send(&st, socket, t);
            }
            return false;
        }
        let answer = st.requests.get_mut(uuid).and_then(|r| {
            r.app_socket = Some(socket);
            r.answer.clone()
        });
        if let Ok(t) = frame::encode(&RelayToApp::AttachAck(attach)) {
            Self::send(&st, socket, t);
        }
        if let Some(a) = answer {
            Self::send(&st, socket, a);
        }
        true
    }

    /// Drops requests (and kept answers) whose expiry passed. Returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = UnixMillis::now();
        let mut st = self.lock();
        let expired: Vec<RequestId> = st
            .requests
            .iter()
            .filter(|(_, r)| r.expire <= now)
            .map(|(u, _)| u.clone())
            .collect();
        for uuid in &expired {
            if let Some(r) = st.requests.remove(uuid) {
                st.hold(r.origin.1, 0, r.held);
                if r.answer.is_none() {
                    st.pending_done(&r.account, r.origin, r.counted);
                }
            }
        }
        let mut queue = std::mem::take(&mut st.queue);
        queue.retain(|_, q| {
            q.retain(|u| st.requests.get(u).is_some_and(|r| r.answer.is_none()));
            !q.is_empty()
        });
        st.queue = queue;
        self.metrics
            .queue_depth
            .store(st.pending_total, std::sync::atomic::Ordering::Relaxed);
        expired.len()
    }

    /// Number of requests held (pending and answered).
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }
}
