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

/// Queued requests a socket gets when it registers, at most, for all the accounts of one
/// `register_req` together (the newest; a socket's outbound queue holds 1,024 frames).
pub const REGISTER_BACKLOG: usize = 512;

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
    /// Made on this node (it counts in this node's caps). False for a copy of another
    /// node's request (cluster mode), kept so that this node's PKSAs can answer it and an app
    /// that re-attaches here gets its answer.
    local: bool,
    /// Cluster mode: admitted but not yet given to PKSAs (it is written to the store first).
    held_back: bool,
    /// Cluster mode: written to the store. A request made while the store was unreachable
    /// is written when it comes back.
    stored: bool,
    /// Cluster mode: the answer was claimed in the store. An answer taken while the store was
    /// unreachable is claimed (and routed to its app's node) when it comes back.
    answer_stored: bool,
    /// Cluster mode: the node that made it (empty: this one).
    node: String,
}

/// A request as the cluster store and other nodes see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shared {
    /// Its uuid.
    pub uuid: RequestId,
    /// The account it is for.
    pub account: String,
    /// Its request command (`auth_req`, `sign_req`, `challenge_req`).
    pub cmd: String,
    /// Expiry, Unix milliseconds.
    pub expire: u64,
    /// The frame PKSAs get (empty once answered).
    pub relayed: String,
    /// The node that made it (set by the cluster link when it writes the request).
    #[serde(default)]
    pub node: String,
}

impl Shared {
    fn family(&self) -> Option<Family> {
        match self.cmd.as_str() {
            "auth_req" => Some(Family::Auth),
            "sign_req" => Some(Family::Sign),
            "challenge_req" => Some(Family::Challenge),
            _ => None,
        }
    }
}

/// A request admitted on this node, as `new_request` made it.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// What the store and other nodes get (cluster mode; alone, without the frame).
    pub shared: Shared,
    /// The `*_wait` frame for the app.
    pub wait: String,
}

/// A reply that passed every check, ready to be taken as the answer.
#[derive(Debug, Clone)]
pub struct CheckedReply {
    /// The request's uuid.
    pub uuid: RequestId,
    /// The request's account.
    pub account: String,
    /// The frame for the app (`pok` stripped).
    pub text: String,
    /// The request's expiry.
    pub expire: UnixMillis,
    /// Cluster mode: the node that made the request (empty: this one).
    pub node: String,
}

/// A local request the cluster store has not seen yet (or whose answer it has not).
#[derive(Debug, Clone)]
pub struct Unsynced {
    /// The request.
    pub shared: Shared,
    /// Not yet written (a local request made while the store was unreachable).
    pub request: bool,
    /// Its app's socket is on this node.
    pub app_here: bool,
    /// An answer taken while the store was unreachable.
    pub answer: Option<String>,
    /// It has an answer (written or not): it is no longer pending in the store.
    pub answered: bool,
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
    /// Cluster mode: bytes held for copies of other nodes' requests (their frames, then
    /// their answers), capped at the relay's byte cap.
    copy_bytes: usize,
    /// Cluster mode: uuids answered elsewhere that this node did not hold when it heard
    /// (newest last, bounded): a copy read from the store just before is not given out.
    answered_elsewhere: VecDeque<(RequestId, Instant)>,
    answered_elsewhere_set: HashSet<RequestId>,
}

/// Uuids answered elsewhere remembered at most (cluster mode).
const ANSWERED_ELSEWHERE: usize = 4096;

/// Which queued requests a registering socket gets from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Every unanswered request for the account this node holds (one node alone, or a
    /// cluster node whose store is unreachable).
    All,
    /// Only this node's requests the store does not have (cluster mode: the store's pending
    /// set gives the rest, and says which copies were answered meanwhile).
    Unstored,
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

    /// A request stops being pending (answered or expired). Only local requests count.
    fn pending_done(
        &mut self,
        account: &str,
        origin: (SocketId, IpAddr),
        counted: bool,
        local: bool,
    ) {
        if !local {
            return;
        }
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
                .filter(|(_, r)| r.counted && r.local)
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
    /// Cluster mode: the request is not known on this node and the store is unreachable.
    StoreUnavailable,
    /// Cluster mode: the connection used up its store reads for this second.
    StoreBudget,
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
            ReplyRejection::StoreUnavailable => "store_unavailable",
            ReplyRejection::StoreBudget => "store_budget",
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
    /// Returns the accounts that no socket of this relay is registered for any more.
    pub fn remove_socket(&self, id: SocketId) -> Vec<String> {
        let mut st = self.lock();
        let mut gone = vec![];
        if let Some(sock) = st.sockets.remove(&id) {
            for account in sock.registered.keys() {
                if let Some(set) = st.registrations.get_mut(account) {
                    set.remove(&id);
                    if set.is_empty() {
                        st.registrations.remove(account);
                        gone.push(account.clone());
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
        gone
    }

    /// Every socket's outbound channel (for shutdown).
    pub fn all_senders(&self) -> Vec<mpsc::Sender<Outbound>> {
        self.lock().sockets.values().map(|s| s.tx.clone()).collect()
    }

    /// Accepts an app request: assigns uuid and expiry, answers `*_wait`, forwards to every
    /// PKSA registered for the account or queues it. Returns the wait frame, or an error text.
    pub fn new_request(&self, from: SocketId, req: AppToRelay) -> Result<String, String> {
        self.admit(from, req, false).map(|a| a.wait)
    }

    /// As [`Hub::new_request`]; with `hold_back` (cluster mode) nothing is sent yet: the
    /// caller writes the request to the store, then calls [`Hub::release`].
    pub fn admit(
        &self,
        from: SocketId,
        req: AppToRelay,
        hold_back: bool,
    ) -> Result<Admitted, String> {
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
        let mut delivered = HashSet::new();
        if !hold_back {
            // The wait goes out before the relayed request can be answered.
            Self::send(&st, from, wait.clone());
            for t in targets {
                if Self::send(&st, t, relayed.clone()) {
                    delivered.insert(t);
                }
            }
        }
        let shared = Shared {
            uuid: uuid.clone(),
            account: account.to_string(),
            cmd: cmd.to_owned(),
            expire: expire.0,
            // Only cluster mode writes the frame to the store: no copy alone.
            relayed: if hold_back {
                relayed.clone()
            } else {
                String::new()
            },
            node: String::new(),
        };
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
                local: true,
                held_back: hold_back,
                stored: false,
                answer_stored: true,
                node: String::new(),
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
        Ok(Admitted { shared, wait })
    }

    /// Cluster mode, after the store write (or its failure): sends the app its `*_wait`, then
    /// gives the request to this node's PKSAs. `stored` says whether the store has it.
    pub fn release(&self, from: SocketId, admitted: &Admitted, stored: bool) {
        let uuid = &admitted.shared.uuid;
        let mut st = self.lock();
        Self::send(&st, from, admitted.wait.clone());
        let Some(r) = st.requests.get_mut(uuid) else {
            return;
        };
        r.held_back = false;
        r.stored = stored;
        if let Some(answer) = r.answer.clone() {
            // Answered on another node before its wait left: the answer follows the wait.
            Self::send(&st, from, answer);
            return;
        }
        let account = r.account.clone();
        self.deliver(&mut st, uuid, &account, None);
    }

    /// Records `text` as the request's answer, unless it has one: `None` then (or when the
    /// request is unknown). `Some(app)`: the socket to send it to now, if any (none while
    /// the request is held back: [`Hub::release`] sends it after the wait).
    fn set_answer(
        &self,
        st: &mut State,
        uuid: &RequestId,
        text: &str,
        stored: bool,
    ) -> Option<Option<SocketId>> {
        let r = st.requests.get_mut(uuid)?;
        if r.answer.is_some() {
            return None;
        }
        if r.local {
            // Request to answer, once per request: on the node that made it.
            self.metrics.observe_latency(r.created.elapsed());
        }
        r.answer = Some(text.to_owned());
        r.answer_stored = stored;
        // Answered: what PKSAs were sent is no longer needed; the answer is kept (and
        // counted) until the request expires.
        let relayed = std::mem::take(&mut r.relayed).len();
        r.held = r.held.saturating_sub(relayed).saturating_add(text.len());
        let (app, origin, counted, local, held_back) =
            (r.app_socket, r.origin, r.counted, r.local, r.held_back);
        let account = r.account.clone();
        if local {
            st.hold(origin.1, text.len(), relayed);
        } else {
            st.copy_bytes = st
                .copy_bytes
                .saturating_add(text.len())
                .saturating_sub(relayed);
        }
        st.pending_done(&account, origin, counted, local);
        self.metrics
            .queue_depth
            .store(st.pending_total, std::sync::atomic::Ordering::Relaxed);
        Some(if held_back { None } else { app })
    }

    /// Gives a pending request to this node's sockets registered for `account` (or to
    /// `only`), each at most once.
    fn deliver(
        &self,
        st: &mut State,
        uuid: &RequestId,
        account: &str,
        only: Option<SocketId>,
    ) -> usize {
        let now = UnixMillis::now();
        let Some(r) = st.requests.get(uuid) else {
            return 0;
        };
        if r.answer.is_some()
            || r.held_back
            || r.expire <= now
            || r.relayed.is_empty()
            || st.answered_elsewhere_set.contains(uuid)
        {
            return 0;
        }
        let targets: Vec<SocketId> = st
            .registrations
            .get(account)
            .map(|s| s.iter().copied())
            .into_iter()
            .flatten()
            .filter(|t| only.is_none_or(|o| o == *t) && !r.delivered_to.contains(t))
            .collect();
        let text = r.relayed.clone();
        let mut delivered = vec![];
        for t in targets {
            if Self::send(st, t, text.clone()) {
                delivered.push(t);
            }
        }
        let n = delivered.len();
        if let Some(r) = st.requests.get_mut(uuid) {
            r.delivered_to.extend(delivered);
        }
        n
    }

    /// Cluster mode: another node's request (from the store or its announcement). Kept as a
    /// copy unless this node has it already, and given to this node's sockets registered for
    /// its account (or to `only`), each at most once. An expired one is ignored.
    /// Returns how many sockets got it.
    pub fn offer(&self, shared: &Shared, only: Option<SocketId>) -> usize {
        let mut st = self.lock();
        if st.answered_elsewhere_set.contains(&shared.uuid)
            || !self.insert_copy(&mut st, shared, true)
        {
            return 0;
        }
        self.deliver(&mut st, &shared.uuid, &shared.account, only)
    }

    /// Cluster mode: gives a request this node holds to `socket` (at most once).
    pub fn deliver_to(&self, uuid: &RequestId, socket: SocketId) -> usize {
        let mut st = self.lock();
        let Some(account) = st.requests.get(uuid).map(|r| r.account.clone()) else {
            return 0;
        };
        self.deliver(&mut st, uuid, &account, Some(socket))
    }

    /// Keeps a copy of another node's request (no-op when known). With `frame`, the frame
    /// PKSAs get is kept too (counted against the copies' byte cap: over it, nothing is
    /// kept); without, a stub that lets a reply or an attach find the request. False when it
    /// expired, names no request family, or the cap refused it.
    fn insert_copy(&self, st: &mut State, shared: &Shared, frame: bool) -> bool {
        let held = if frame { shared.relayed.len() } else { 0 };
        if let Some(r) = st.requests.get(&shared.uuid) {
            // A stub gains its frame when a PKSA here needs it.
            if frame && !r.local && r.relayed.is_empty() && r.answer.is_none() && held > 0 {
                if st.copy_bytes.saturating_add(held) > self.limits.total_bytes {
                    self.metrics.count("cluster", "copy_refused_bytes");
                    return false;
                }
                st.copy_bytes = st.copy_bytes.saturating_add(held);
                if let Some(r) = st.requests.get_mut(&shared.uuid) {
                    r.relayed = shared.relayed.clone();
                    r.held = r.held.saturating_add(held);
                }
            }
            return true;
        }
        let Some(family) = shared.family() else {
            return false;
        };
        if shared.expire <= UnixMillis::now().0 {
            return false;
        }
        if st.copy_bytes.saturating_add(held) > self.limits.total_bytes {
            self.metrics.count("cluster", "copy_refused_bytes");
            return false;
        }
        st.copy_bytes = st.copy_bytes.saturating_add(held);
        st.requests.insert(
            shared.uuid.clone(),
            Request {
                account: shared.account.clone(),
                family,
                relayed: if frame {
                    shared.relayed.clone()
                } else {
                    String::new()
                },
                app_socket: None,
                origin: (0, IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                counted: false,
                expire: UnixMillis(shared.expire),
                created: Instant::now(),
                answer: None,
                delivered_to: HashSet::new(),
                held,
                local: false,
                held_back: false,
                stored: true,
                answer_stored: true,
                node: shared.node.clone(),
            },
        );
        true
    }

    /// Whether this node holds the request (its own or a copy).
    pub fn knows(&self, uuid: &RequestId) -> bool {
        self.lock().requests.contains_key(uuid)
    }

    /// Cluster mode: keeps a copy of another node's request without giving it to anyone
    /// (a reply or an attach for it arrived here first).
    pub fn remember(&self, shared: &Shared) {
        let mut st = self.lock();
        self.insert_copy(&mut st, shared, false);
    }

    /// Cluster mode: the answer another node took. It is kept, and sent to the app when its
    /// socket is here and has not had it (an app that attached here may have had it from
    /// the store already).
    pub fn remote_answer(&self, uuid: &RequestId, text: &str) {
        let mut st = self.lock();
        if !st.requests.contains_key(uuid) {
            // Not held here (yet): a copy read from the store a moment ago must not be
            // given to a PKSA.
            let now = Instant::now();
            let keep = std::time::Duration::from_millis(self.timeout_ms.saturating_mul(2));
            while st
                .answered_elsewhere
                .front()
                .is_some_and(|(_, t)| now.duration_since(*t) > keep)
                || st.answered_elsewhere.len() >= ANSWERED_ELSEWHERE
            {
                if let Some((u, _)) = st.answered_elsewhere.pop_front() {
                    st.answered_elsewhere_set.remove(&u);
                }
            }
            if st.answered_elsewhere_set.insert(uuid.clone()) {
                st.answered_elsewhere.push_back((uuid.clone(), now));
            }
            return;
        }
        if let Some(Some(app)) = self.set_answer(&mut st, uuid, text, true) {
            Self::send(&st, app, text.to_owned());
        }
    }

    /// Cluster mode: every live request held here without an answer (after a store outage,
    /// answers announced meanwhile are read back for them).
    pub fn unanswered_ids(&self) -> Vec<RequestId> {
        let now = UnixMillis::now();
        self.lock()
            .requests
            .iter()
            .filter(|(_, r)| r.answer.is_none() && !r.held_back && r.expire > now)
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Cluster mode: whether this node lacks the frame PKSAs get for a request (it does not
    /// hold the request, or holds a stub without its frame).
    pub fn needs_frame(&self, uuid: &RequestId) -> bool {
        self.lock()
            .requests
            .get(uuid)
            .is_none_or(|r| !r.local && r.relayed.is_empty() && r.answer.is_none())
    }

    /// Whether the request is known here and has no answer yet.
    pub fn unanswered(&self, uuid: &RequestId) -> bool {
        self.lock()
            .requests
            .get(uuid)
            .is_some_and(|r| r.answer.is_none())
    }

    /// Cluster mode, after (re)connecting: the store may have lost what it had (a restart
    /// without persistence, a failover), so every live local request and answer is written
    /// again (the writes are idempotent).
    pub fn mark_all_unsynced(&self) {
        for r in self.lock().requests.values_mut() {
            if r.local && !r.held_back {
                r.stored = false;
                if r.answer.is_some() {
                    r.answer_stored = false;
                }
            }
        }
    }

    /// Whether `socket` is registered for `account` (None: for any account).
    pub fn socket_registered(&self, socket: SocketId, account: Option<&str>) -> bool {
        self.lock()
            .sockets
            .get(&socket)
            .is_some_and(|s| match account {
                Some(a) => s.registered.contains_key(a),
                None => !s.registered.is_empty(),
            })
    }

    /// Cluster mode: what the store must be told after it was unreachable (local requests
    /// not written, answers not claimed), with what it needs to route them.
    pub fn unsynced(&self) -> Vec<Unsynced> {
        let now = UnixMillis::now();
        let st = self.lock();
        st.requests
            .iter()
            .filter(|(_, r)| r.expire > now && !r.held_back)
            .filter(|(_, r)| (r.local && !r.stored) || !r.answer_stored)
            .map(|(u, r)| Unsynced {
                shared: Shared {
                    uuid: u.clone(),
                    account: r.account.clone(),
                    cmd: family_cmd(r.family).to_owned(),
                    expire: r.expire.0,
                    relayed: r.relayed.clone(),
                    node: r.node.clone(),
                },
                request: r.local && !r.stored,
                app_here: r.app_socket.is_some(),
                answer: if r.answer_stored {
                    None
                } else {
                    r.answer.clone()
                },
                answered: r.answer.is_some(),
            })
            .collect()
    }

    /// Cluster mode: the store now has the request (`request`) and/or its answer (`answer`).
    pub fn mark_synced(&self, uuid: &RequestId, request: bool, answer: bool) {
        if let Some(r) = self.lock().requests.get_mut(uuid) {
            r.stored |= request;
            r.answer_stored |= answer;
        }
    }

    /// The accounts this node has registered sockets for.
    pub fn registered_accounts(&self) -> Vec<String> {
        self.lock().registrations.keys().cloned().collect()
    }

    /// Whether a socket of this node is registered for `account`.
    pub fn is_registered_here(&self, account: &str) -> bool {
        self.lock().registrations.contains_key(account)
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

    /// Registers `socket` for `account` (its keys already verified) and answers
    /// `register_ack`; [`Hub::deliver_backlog`] gives it the queued requests. True when the
    /// socket was not registered for it before.
    pub fn register(
        &self,
        socket: SocketId,
        account: &AccountName,
        keys: std::collections::HashSet<PublicKey>,
    ) -> bool {
        let mut st = self.lock();
        let Some(sock) = st.sockets.get_mut(&socket) else {
            return false;
        };
        let new = sock.registered.insert(account.to_string(), keys).is_none();
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
        self.metrics.registered_accounts.store(
            st.registrations.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        new
    }

    /// Gives a registered socket the account's queued requests it has not had: the newest
    /// `budget` at most, oldest first (more would overflow the socket's outbound queue, which
    /// closes it: a flood must not keep a PKSA from registering). Returns how many.
    pub fn deliver_backlog(
        &self,
        socket: SocketId,
        account: &str,
        which: Backlog,
        budget: usize,
    ) -> usize {
        let now = UnixMillis::now();
        let mut st = self.lock();
        let mut queued: Vec<(UnixMillis, RequestId)> = st
            .requests
            .iter()
            .filter(|(_, r)| {
                r.account == account
                    && (which == Backlog::All || (r.local && !r.stored))
                    && r.answer.is_none()
                    && !r.held_back
                    && r.expire > now
                    && !r.delivered_to.contains(&socket)
            })
            .map(|(u, r)| (r.expire, u.clone()))
            .collect();
        queued.sort_by_key(|q| std::cmp::Reverse(q.0));
        queued.truncate(budget);
        queued.reverse();
        let mut n = 0;
        for (_, uuid) in queued {
            n += self.deliver(&mut st, &uuid, account, Some(socket));
        }
        n
    }

    /// Routes a PKSA reply to its app (first terminal reply wins; `pok` stripped).
    pub fn reply(
        &self,
        from: SocketId,
        reply: PksaToRelay,
    ) -> Result<RequestId, (ReplyRejection, Option<RequestId>)> {
        let checked = self.check_reply(from, reply)?;
        self.take_answer(&checked, true)
            .map_err(|why| (why, Some(checked.uuid.clone())))?;
        Ok(checked.uuid)
    }

    /// The uuid a reply frame answers, if it is a reply.
    pub fn reply_uuid(reply: &PksaToRelay) -> Option<RequestId> {
        reply.reply_parts().map(|(_, u, _)| u.clone())
    }

    /// Every check of a reply (known, live, unanswered, right family, sender registered for
    /// the account, POK), without taking it.
    pub fn check_reply(
        &self,
        from: SocketId,
        reply: PksaToRelay,
    ) -> Result<CheckedReply, (ReplyRejection, Option<RequestId>)> {
        let Some((family, uuid, pok_text)) = reply
            .reply_parts()
            .map(|(f, u, p)| (f, u.clone(), p.map(str::to_owned)))
        else {
            return Err((ReplyRejection::UnknownRequest, None));
        };
        let now = UnixMillis::now();
        // Checks under the lock; the POK (base58, ECDH from the cache, AES) and the encoding
        // outside it, so one socket's proof does not stall every other socket's routing.
        let (keys, expire, account, node) = {
            let st = self.lock();
            let (account, expired, answered, req_family, expire, node) =
                match st.requests.get(&uuid) {
                    None => return Err((ReplyRejection::UnknownRequest, Some(uuid))),
                    Some(r) => (
                        r.account.clone(),
                        r.expire <= now,
                        r.answer.is_some(),
                        r.family,
                        r.expire,
                        r.node.clone(),
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
            (keys, expire, account, node)
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
        Ok(CheckedReply {
            uuid,
            account,
            text,
            expire,
            node,
        })
    }

    /// Takes a checked reply as the request's answer and sends it to the app's socket when
    /// it is on this node. `stored`: the cluster store has it (always true alone). The first
    /// answer to get here wins (in cluster mode the store decided already).
    pub fn take_answer(&self, checked: &CheckedReply, stored: bool) -> Result<(), ReplyRejection> {
        let mut st = self.lock();
        // Re-checked: another PKSA may have answered (or the socket unregistered) meanwhile;
        // the first terminal reply to get here wins.
        match self.set_answer(&mut st, &checked.uuid, &checked.text, stored) {
            None if st.requests.contains_key(&checked.uuid) => Err(ReplyRejection::AlreadyAnswered),
            None => Err(ReplyRejection::UnknownRequest),
            Some(app) => {
                if let Some(app) = app {
                    Self::send(&st, app, checked.text.clone());
                }
                Ok(())
            }
        }
    }

    /// `attach_req`: re-binds the request to `socket`; `attach_ack` then the stored answer, or
    /// `attach_nack` when the request (or its answer) expired.
    pub fn attach(&self, socket: SocketId, uuid: &RequestId) -> bool {
        self.attach_from(socket, uuid, None)
    }

    /// As [`Hub::attach`], in cluster mode with what the store holds for the uuid (the
    /// request and its answer, if any).
    pub fn attach_from(
        &self,
        socket: SocketId,
        uuid: &RequestId,
        store: Option<(Shared, Option<String>)>,
    ) -> bool {
        let now = UnixMillis::now();
        let mut st = self.lock();
        if let Some((shared, answer)) = store
            && self.insert_copy(&mut st, &shared, false)
            && let Some(answer) = answer
        {
            // Answered on another node: this node's copy (or its own request, whose answer
            // had not reached it) takes that answer; attach sends it below.
            self.set_answer(&mut st, uuid, &answer, true);
        }
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
                if r.local {
                    st.hold(r.origin.1, 0, r.held);
                } else {
                    st.copy_bytes = st.copy_bytes.saturating_sub(r.held);
                }
                if r.answer.is_none() {
                    st.pending_done(&r.account, r.origin, r.counted, r.local);
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
