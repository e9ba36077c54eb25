//! The request path: relayed frame in, reply frame (or silence) out.
//!
//! ```text
//! intake → dedupe → resolve → decide → execute → reply
//! ```
//!
//! * intake ([`Request::from_frame`]): the request id must be an RFC 4122 uuid, refused
//!   before any crypto (the relay chooses it, and every reply's POK is a memo over it).
//! * dedupe: a uuid already answered, or the same request through another server, gets the
//!   stored answer again; nothing is signed or broadcast twice.
//! * resolve ([`crate::sessions`]): the session whose key decrypts the data; identity
//!   (account, app) comes from the session record, never from the request's text.
//! * decide ([`auth::decide`], [`sign::decide`], [`challenge::decide`]): pure functions of
//!   the payload, the session, the settings and the time, returning a plan or a
//!   [`Refusal`].
//! * execute ([`execute`]): the only awaits: head block, signing, the store, the broadcast.
//!   The decision is recorded with the session re-checked in the same transaction
//!   (`state::decisions`): a stale cache can only cause a refusal.
//! * reply ([`reply`]): the one place that turns an outcome or a refusal into a frame.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use has_crypto::{KeyRole, PublicKey, SharedSecretCache};
use has_protocol::{Encrypted, PksaToRelay, RelayToPksa, RequestId, UnixMillis};
use hive_chain::ChainId;
use hive_chain::rpc::{RpcClient, RpcError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::keystore::KeyStore;
use crate::sessions::{CachedSession, Resolved, Sessions};
use crate::state::Store;
use crate::text::Escaped;

pub(crate) mod auth;
pub(crate) mod challenge;
pub(crate) mod execute;
pub(crate) mod reply;
pub(crate) mod sign;

/// Sessions tried in arrival order by the connection task (an app's session is at the front
/// of its account's list once it has been used): a request that none of them decrypts is
/// resolved by its own task, over all the account's sessions, off the connection task.
pub(crate) const PREFLIGHT_TRIALS: usize = 64;

/// A nonce further ahead of the service's clock than this is refused: it could only come
/// from a broken clock, and accepting it would lock the session until the clock gets there.
pub const MAX_NONCE_AHEAD_MS: i64 = 10 * 60 * 1000;

/// What every decision reads besides the request and its session: which keys the service
/// holds for the account, the settings, the chain, the time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) keys: &'a crate::keystore::AccountKeys,
    pub(crate) settings: &'a Settings,
    pub(crate) chain: &'a ChainId,
    pub(crate) now: i64,
}

/// The request families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Auth,
    Sign,
    Challenge,
}

impl Family {
    pub(crate) fn cmd(&self) -> &'static str {
        match self {
            Family::Auth => "auth_req",
            Family::Sign => "sign_req",
            Family::Challenge => "challenge_req",
        }
    }

    /// Whether the operator asked for refusals of this family to be answered (`*_nack`)
    /// rather than ignored.
    pub(crate) fn reject(&self, s: &Settings) -> bool {
        match self {
            Family::Auth => s.auth_req_reject,
            Family::Sign => s.sign_req_reject,
            Family::Challenge => s.challenge_req_reject,
        }
    }
}

/// Whether `s` is an RFC 4122 uuid in its 36-character text form.
pub(crate) fn is_request_id(s: &str) -> bool {
    s.len() == 36
        && uuid::Uuid::try_parse(s)
            .is_ok_and(|u| u.get_variant() == uuid::Variant::RFC4122 && u.get_version_num() >= 1)
}

/// A relayed request, as intake accepted it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) family: Family,
    pub(crate) uuid: RequestId,
    pub(crate) account: String,
    pub(crate) expire: UnixMillis,
    pub(crate) frame: RelayToPksa,
    /// sha256 of the command, the account and the encrypted data (the same request through
    /// another server has another uuid and the same hash).
    pub(crate) hash: String,
}

/// How long past now an answer is kept for re-delivery at most, whatever expiry the relay
/// gave the request (a relay-chosen expiry must not keep rows forever).
const ANSWER_KEPT_AHEAD_MS: i64 = 3_600_000;

impl Request {
    /// The request's expiry as stored with its answer: the relay's, at most an hour ahead.
    pub(crate) fn answer_expire(&self) -> i64 {
        let cap = crate::state::now_ms().saturating_add(ANSWER_KEPT_AHEAD_MS);
        i64::try_from(self.expire.0).unwrap_or(i64::MAX).min(cap)
    }

    /// The request in a frame: None for other frames, Err for a request refused at intake
    /// (its id is not a uuid).
    pub(crate) fn from_frame(frame: RelayToPksa) -> Option<Result<Request, RequestId>> {
        let (family, uuid, account, expire, data) = match &frame {
            RelayToPksa::AuthReq(r) => {
                (Family::Auth, &r.uuid, &r.account, r.expire, r.data.as_str())
            }
            RelayToPksa::SignReq(r) => {
                (Family::Sign, &r.uuid, &r.account, r.expire, r.data.as_str())
            }
            RelayToPksa::ChallengeReq(r) => (
                Family::Challenge,
                &r.uuid,
                &r.account,
                r.expire,
                r.data.as_str(),
            ),
            _ => return None,
        };
        if !is_request_id(uuid.as_str()) {
            return Some(Err(uuid.clone()));
        }
        // The account is part of the request's identity: the same ciphertext relayed under
        // another account name is another request (and, not decrypting with that account's
        // sessions, not ours).
        let hash = hex::encode(
            Sha256::new()
                .chain_update(family.cmd())
                .chain_update([0])
                .chain_update(account.as_str())
                .chain_update([0])
                // Padding is optional on input (as in CryptoJS): the same ciphertext with its
                // `=` removed is the same request, so the hash is over the text without it.
                .chain_update(data.trim_end_matches('='))
                .finalize(),
        );
        Some(Ok(Request {
            family,
            uuid: uuid.clone(),
            account: account.to_string(),
            expire,
            hash,
            frame,
        }))
    }
}

/// Why a request is refused. The kind decides what the app sees ([`reply::refused`]); the
/// detail goes to the audit and the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The policy says no.
    Denied { rule: String, reason: String },
    /// The session is revoked or expired (or, found at commit, gone or not the one decided
    /// for).
    SessionEnded(&'static str),
    /// No enrollment window admits a new session (or it closed meanwhile).
    NoEnrollment(&'static str),
    /// The auth_key belongs to a session of another account.
    KeyInUse,
    /// The nonce was already used.
    Replay(i64),
    /// A nonce is required and absent.
    NonceRequired,
    /// The nonce is too far ahead of the clock.
    NonceAhead(i64),
    /// The payload decrypts but is not valid.
    Invalid(String),
    /// An operation hived would refuse (`op: field: rule`, from hive-chain's validation).
    InvalidOperation(String),
    /// The service holds no key of this role for the account.
    NoKey(KeyRole),
    /// A challenge whose bytes could be the signing data of a transaction.
    Preimage,
    /// The memo of a decrypt challenge does not decrypt.
    Memo(String),
    /// The Hive API could not be reached (head block).
    HiveApi(String),
    /// The transaction could not be built or signed.
    Transaction(String),
    /// The broadcast failed.
    Broadcast {
        kind: hive_chain::rpc::NodeErrorKind,
        detail: String,
    },
    /// The node could not be reached to broadcast.
    BroadcastUnavailable(String),
}

impl Refusal {
    /// For the audit: (decision, rule, reason).
    pub(crate) fn audit(&self) -> (&'static str, String, String) {
        let deny = |rule: &str, reason: String| ("deny", rule.to_owned(), reason);
        let error = |rule: &str, reason: String| ("error", rule.to_owned(), reason);
        match self {
            Refusal::Denied { rule, reason } => deny(rule, reason.clone()),
            Refusal::SessionEnded(why) => deny("sessions", format!("session {why}")),
            Refusal::NoEnrollment(why) => deny("sessions", (*why).to_owned()),
            Refusal::KeyInUse => deny(
                "sessions",
                "the auth_key belongs to a session of another account".into(),
            ),
            Refusal::Replay(n) => deny("nonce", format!("nonce {n} was already used (replay)")),
            Refusal::NonceRequired => error("nonce", "nonce is required".into()),
            Refusal::NonceAhead(n) => error(
                "nonce",
                format!("nonce {n} is more than {MAX_NONCE_AHEAD_MS} ms ahead of the clock"),
            ),
            Refusal::Invalid(m) => error("protocol", m.clone()),
            Refusal::InvalidOperation(m) => error("validation", m.clone()),
            Refusal::NoKey(role) => error("keys", format!("this service holds no {role} key")),
            Refusal::Preimage => deny(
                "builtin",
                "the challenge starts with the chain id: it could be a transaction's signing data"
                    .into(),
            ),
            Refusal::Memo(m) => error("memo", m.clone()),
            Refusal::HiveApi(m) => error("hive_api", m.clone()),
            Refusal::Transaction(m) => error("transaction", m.clone()),
            Refusal::Broadcast { detail, .. } => error("broadcast", detail.clone()),
            Refusal::BroadcastUnavailable(m) => error("broadcast", m.clone()),
        }
    }
}

/// The answer given to a request, stored so a re-delivery (same uuid, or the same request
/// through another server) is answered identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// auth_ack with this encrypted data.
    AuthAck { data: String },
    /// challenge_ack with this encrypted data.
    ChallengeAck { data: String },
    /// sign_ack.
    SignAck { broadcast: bool, data: Value },
    /// Signed and about to be broadcast: a re-delivery re-broadcasts this same transaction.
    Signing { signed: Value, tx_id: String },
    /// `*_nack` (data = the uuid encrypted with the session key).
    Nack,
    /// `*_err` with this ciphertext (an encrypted fixed message).
    Err { error: String },
    /// No reply.
    Silent { reason: String },
}

/// Upper bounds (seconds) of the broadcast latency histogram.
const BROADCAST_BUCKETS: [f64; 8] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0];

/// Counters for /metrics.
#[derive(Debug)]
pub struct Counters {
    /// (command, decision) → count.
    pub decisions: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// Broadcasts that succeeded.
    pub broadcasts_ok: AtomicU64,
    /// Broadcasts that failed.
    pub broadcasts_failed: AtomicU64,
    /// How long successful broadcasts took.
    pub broadcast_latency: has_relay::metrics::Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            decisions: Mutex::default(),
            broadcasts_ok: AtomicU64::new(0),
            broadcasts_failed: AtomicU64::new(0),
            broadcast_latency: has_relay::metrics::Histogram::new(&BROADCAST_BUCKETS),
        }
    }
}

impl Counters {
    /// Counts a decision.
    pub fn decision(&self, cmd: &str, decision: &str) {
        if let Ok(mut m) = self.decisions.lock() {
            *m.entry((cmd.to_owned(), decision.to_owned())).or_insert(0) += 1;
        }
    }
}

/// What the request path shares: keys, store, Hive API, settings, caches.
#[derive(Debug)]
pub struct Core {
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
    pub(crate) sessions: Sessions,
    /// In-flight requests by data hash: the same request through two servers waits for the
    /// first to finish and then re-uses its answer.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Counters.
    pub counters: Counters,
    /// The last head block read, reused for up to a second (TaPoS may reference any recent
    /// block; one node call per transaction would dominate the signing cost).
    head: Mutex<Option<(hive_chain::HeadBlock, Instant)>>,
    /// One head-block fetch at a time; with the time and error of the last failed one.
    head_fetch: tokio::sync::Mutex<Option<(Instant, RpcError)>>,
    /// The transactions built on the current head blocks (see `execute::SignedSet`).
    pub(crate) signed: Mutex<execute::SignedSet>,
}

/// A request being processed; see [`Core::inflight`].
pub(crate) struct Inflight<'a> {
    core: &'a Core,
    hash: String,
    guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut m = self.core.inflight.lock().unwrap_or_else(|p| p.into_inner());
        // Held by the map and the guard only: nobody else waits for it.
        if Arc::strong_count(tokio::sync::OwnedMutexGuard::mutex(&self.guard)) <= 2 {
            m.remove(&self.hash);
        }
    }
}

impl Core {
    /// Builds the shared state.
    pub fn new(
        pksa_name: String,
        keys: KeyStore,
        store: Store,
        rpc: Arc<RpcClient>,
        chain: ChainId,
        settings: Settings,
    ) -> Self {
        Core {
            pksa_name,
            keys,
            store,
            rpc,
            chain,
            settings: RwLock::new(Arc::new(settings)),
            pok_cache: SharedSecretCache::new(4096),
            sessions: Sessions::default(),
            inflight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            head: Mutex::new(None),
            head_fetch: tokio::sync::Mutex::new(None),
            signed: Mutex::new(execute::SignedSet::default()),
        }
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

    /// Loads the sessions of every account and the ids of the transactions signed for
    /// requests that may not have expired yet (so a restart cannot hand out one again).
    pub async fn warm(&self) {
        let accounts: Vec<String> = self.keys.accounts().keys().cloned().collect();
        for account in accounts {
            self.sessions.load(&self.store, &account).await;
        }
        // Requests expire a minute or so after they were made: these were signed lately.
        let now = crate::state::now_ms();
        let since = now - 60_000;
        match self
            .store
            .call(move |c| crate::state::answers::recent_tx_ids(c, since))
            .await
        {
            Ok(ids) => self
                .signed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .seed(ids, now),
            Err(e) => tracing::error!(error = %e, "cannot read the recently signed transactions"),
        }
    }

    /// Serializes the processing of identical requests (the same request through two HAS
    /// servers): the second waits for the first, then finds its stored answer.
    pub(crate) async fn inflight(&self, data_hash: &str) -> Inflight<'_> {
        let lock = {
            let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(data_hash.to_owned()).or_default().clone()
        };
        Inflight {
            core: self,
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
    pub async fn head_block(&self) -> Result<hive_chain::HeadBlock, RpcError> {
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
}

/// What the connection task resolves before handing a request to a concurrent task: the
/// session (cache only) and the nonce reservation, in the order requests arrive, so the
/// concurrent requests of one app are accepted in the order it sent them.
#[derive(Debug)]
pub(crate) enum Preflight {
    Sign(Resolved<has_protocol::payloads::SignReqData>, NonceCheck),
    Challenge(
        Resolved<has_protocol::payloads::ChallengeReqData>,
        NonceCheck,
    ),
}

impl Preflight {
    /// Gives back a nonce reserved for a request that is not decided after all.
    pub(crate) fn release(self) {
        let (session, n) = match self {
            Preflight::Sign(Resolved::Found { session, .. }, n) => (session, n),
            Preflight::Challenge(Resolved::Found { session, .. }, n) => (session, n),
            _ => return,
        };
        if let NonceCheck::Reserved(n) = n {
            session.release(n);
        }
    }
}

/// A request's nonce against its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// No nonce.
    Absent,
    /// Reserved: greater than every nonce of the session so far.
    Reserved(i64),
    /// Used, or not greater than one already accepted.
    Used(i64),
    /// Too far ahead of the clock (not reserved).
    Ahead(i64),
}

impl NonceCheck {
    /// Checks `nonce` against the clock and reserves it in `session` (`in_order`: see
    /// [`CachedSession::reserve`]).
    pub(crate) fn reserve(
        session: &CachedSession,
        nonce: Option<u64>,
        now: i64,
        in_order: bool,
    ) -> NonceCheck {
        let Some(n) = nonce else {
            return NonceCheck::Absent;
        };
        // Nonces are at most 2^53 - 1 (has_protocol::Nonce): they fit.
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if n > now.saturating_add(MAX_NONCE_AHEAD_MS) {
            NonceCheck::Ahead(n)
        } else if session.reserve(n, in_order) {
            NonceCheck::Reserved(n)
        } else {
            NonceCheck::Used(n)
        }
    }

    /// The nonce the decision consumes, or the refusal.
    pub(crate) fn accept(self, required: bool) -> Result<Option<i64>, Refusal> {
        match self {
            NonceCheck::Absent if required => Err(Refusal::NonceRequired),
            NonceCheck::Absent => Ok(None),
            NonceCheck::Reserved(n) => Ok(Some(n)),
            NonceCheck::Used(n) => Err(Refusal::Replay(n)),
            NonceCheck::Ahead(n) => Err(Refusal::NonceAhead(n)),
        }
    }
}

fn found_nonce<T>(
    r: &Resolved<T>,
    nonce: impl Fn(&T) -> Option<u64>,
    now: i64,
    in_order: bool,
) -> NonceCheck {
    match r {
        Resolved::Found { session, payload } => {
            NonceCheck::reserve(session, nonce(payload), now, in_order)
        }
        _ => NonceCheck::Absent,
    }
}

/// Cache-only, synchronous preflight (None when the account's sessions are not cached yet,
/// or no cached session decrypts the request: the handler then resolves it itself).
pub(crate) fn preflight(core: &Core, req: &Request) -> Option<Preflight> {
    let now = crate::state::now_ms();
    // An expired request is not decided: it must not use up a nonce.
    if i64::try_from(req.expire.0).unwrap_or(i64::MAX) <= now {
        return None;
    }
    match &req.frame {
        RelayToPksa::SignReq(r) => {
            let found =
                core.sessions
                    .find(&req.account, &r.data, r.token.as_deref(), PREFLIGHT_TRIALS)?;
            if matches!(found, Resolved::NotOurs) {
                return None;
            }
            let n = found_nonce(&found, |p| p.nonce.map(|n| n.0), now, true);
            Some(Preflight::Sign(found, n))
        }
        RelayToPksa::ChallengeReq(r) => {
            let found =
                core.sessions
                    .find(&req.account, &r.data, r.token.as_deref(), PREFLIGHT_TRIALS)?;
            if matches!(found, Resolved::NotOurs) {
                return None;
            }
            let n = found_nonce(&found, |p| p.nonce.map(|n| n.0), now, true);
            Some(Preflight::Challenge(found, n))
        }
        _ => None,
    }
}

/// Resolves a request's session (preflight result, else the cache and the store) and
/// reserves its nonce.
pub(crate) async fn resolve<T: has_protocol::Payload>(
    core: &Core,
    account: &str,
    data: &Encrypted<T>,
    token: Option<&str>,
    pre: Option<(Resolved<T>, NonceCheck)>,
    nonce: impl Fn(&T) -> Option<u64>,
) -> (Resolved<T>, NonceCheck) {
    if let Some(p) = pre {
        return p;
    }
    let found = core
        .sessions
        .resolve(&core.store, account, data, token)
        .await;
    // Matched in the request's own task: possibly after later requests of the same app.
    let n = found_nonce(&found, nonce, crate::state::now_ms(), false);
    (found, n)
}

/// Handles one relayed request. `server_key` is the key_ack key of the server it came from;
/// `pre` is what [`preflight`] found in arrival order.
pub(crate) async fn handle(
    core: &Core,
    server_key: &PublicKey,
    req: Request,
    pre: Option<Preflight>,
) -> Option<PksaToRelay> {
    let Some(keys) = core.keys.account(&req.account) else {
        tracing::debug!(account = %req.account, uuid = %req.uuid, "request for an account we do not manage: ignored");
        return None;
    };
    if req.expire <= UnixMillis::now() {
        tracing::info!(account = %req.account, uuid = %req.uuid, cmd = req.family.cmd(), "request already expired: ignored");
        core.counters.decision(req.family.cmd(), "expired");
        return None;
    }
    let _inflight = core.inflight(&req.hash).await;
    let (uuid, hash) = (req.uuid.to_string(), req.hash.clone());
    match core
        .store
        .call(move |c| crate::state::answers::find(c, &uuid, &hash))
        .await
    {
        Ok(Some(a)) if a.data_hash != req.hash => {
            // A request id already used for another request (command, account or data): a
            // relay reusing ids. Neither decided nor answered; its nonce is given back.
            tracing::warn!(uuid = %req.uuid, account = %req.account, "request id already used for another request: ignored");
            core.counters.decision(req.family.cmd(), "uuid_reused");
            if let Some(p) = pre {
                p.release();
            }
            return None;
        }
        Ok(Some(a)) => return execute::redeliver(core, server_key, keys, &req, a).await,
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, uuid = %req.uuid, "state store unreadable: refusing (fail closed)");
            return None;
        }
    }
    let settings = core.settings();
    let answered = match req.family {
        Family::Auth => execute::auth(core, keys, &req, &settings).await,
        Family::Sign => {
            let pre = match pre {
                Some(Preflight::Sign(r, n)) => Some((r, n)),
                _ => None,
            };
            execute::sign(core, keys, &req, &settings, pre).await
        }
        Family::Challenge => {
            let pre = match pre {
                Some(Preflight::Challenge(r, n)) => Some((r, n)),
                _ => None,
            };
            execute::challenge(core, keys, &req, &settings, pre).await
        }
    }?;
    reply::frame(
        core,
        server_key,
        keys,
        req.family,
        &req.uuid,
        &answered.outcome,
        answered.key.as_ref(),
    )
}

/// The audit row of a request (app "?" until a session is known).
pub(crate) fn audit_entry(req: &Request, app: &str) -> crate::state::audit::Entry {
    crate::state::audit::Entry {
        uuid: req.uuid.to_string(),
        account: req.account.clone(),
        app: app.to_owned(),
        cmd: req.family.cmd().into(),
        ..Default::default()
    }
}

/// Logs and counts a recorded decision (peer text escaped).
pub(crate) fn log_decision(core: &Core, e: &crate::state::audit::Entry) {
    core.counters.decision(&e.cmd, &e.decision);
    tracing::info!(
        account = %e.account, app = %Escaped(&e.app), cmd = %e.cmd, uuid = %e.uuid,
        decision = %e.decision, rule = %Escaped(&e.rule), reason = %Escaped(&e.reason),
        tx_id = e.tx_id.as_deref().unwrap_or(""),
        "decision"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_rfc_4122_uuids() {
        assert!(is_request_id("9b0e2dc3-f574-4766-abdd-c429dce11284"));
        assert!(is_request_id("9B0E2DC3-F574-4766-ABDD-C429DCE11284"));
        for bad in [
            "",
            "alice pays the relay 1000 HIVE",
            "9b0e2dc3f5744766abddc429dce11284",
            "{9b0e2dc3-f574-4766-abdd-c429dce11284}",
            "urn:uuid:9b0e2dc3-f574-4766-abdd-c429dce11284",
            "9b0e2dc3-f574-4766-cbdd-c429dce11284",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert!(!is_request_id(bad), "{bad}");
        }
    }

    #[test]
    fn nonces_are_reserved_in_order_and_never_far_ahead() {
        let row = crate::state::SessionRow {
            id: 1,
            account: "alice".into(),
            app: "app".into(),
            expire: i64::MAX,
            max_expire: i64::MAX,
            last_nonce: 100,
            created: 0,
            last_used: None,
            revoked: false,
            origin: "operator".into(),
            token: None,
        };
        let s = CachedSession::for_test(&row);
        let now = 1_000_000;
        let r = |n: u64, in_order: bool| NonceCheck::reserve(&s, Some(n), now, in_order);
        assert_eq!(r(100, true), NonceCheck::Used(100));
        assert_eq!(r(200, true), NonceCheck::Reserved(200));
        assert_eq!(
            r(150, true),
            NonceCheck::Used(150),
            "in order: older than the last"
        );
        let far = (now + MAX_NONCE_AHEAD_MS + 1) as u64;
        assert_eq!(r(far, true), NonceCheck::Ahead(far as i64));
        // A refused far nonce does not lock the session.
        assert_eq!(r(300, true), NonceCheck::Reserved(300));
        // Out of order (matched in its own task): an unused nonce is fine, a used one not,
        // nor one at or below the store's last when loaded.
        assert_eq!(r(150, false), NonceCheck::Reserved(150));
        assert_eq!(r(150, false), NonceCheck::Used(150));
        assert_eq!(r(300, false), NonceCheck::Used(300));
        assert_eq!(r(100, false), NonceCheck::Used(100));
        // A released reservation can be made again (a request id that was reused).
        s.release(300);
        assert_eq!(r(300, true), NonceCheck::Reserved(300));
        assert_eq!(NonceCheck::Absent.accept(true), Err(Refusal::NonceRequired));
        assert_eq!(NonceCheck::Absent.accept(false), Ok(None));
        assert_eq!(NonceCheck::Used(5).accept(false), Err(Refusal::Replay(5)));
    }
}
