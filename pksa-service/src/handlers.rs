//! Request handling: relayed request in, reply frame (or silence) out.
//!
//! decrypt → decide (session, nonce, policy) → sign → store (answer, nonce, session, spend,
//! audit in one commit) → reply. A uuid already answered, or the same encrypted request
//! arriving through another server, gets the stored answer again: nothing is signed or
//! broadcast twice. Requests for accounts we do not manage, requests we cannot decrypt and
//! expired requests get silence (never an oracle, never an error for other PKSAs' traffic).

use std::sync::Arc;

use has_crypto::{KeyRole, PrivateKey, PublicKey, memo, memo::pok};
use has_protocol::messages::*;
use has_protocol::payloads::*;
use has_protocol::{
    AuthKey, Encrypted, Payload, PayloadError, PksaToRelay, RelayToPksa, RequestId, UnixMillis,
};
use hive_chain::{Operation, Transaction};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit;
use crate::keystore::AccountKeys;
use crate::policy::Decision;
use crate::service::{CachedSession, Service};
use crate::store::{self, answers, enrollments, now_ms, sessions};

/// A decided answer, stored as JSON so a re-delivery (same uuid, or the same request through
/// another server with another uuid) can be answered identically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// auth_ack with this encrypted data.
    AuthAck {
        /// Ciphertext of auth_ack_data.
        data: String,
    },
    /// challenge_ack with this encrypted data.
    ChallengeAck {
        /// Ciphertext of challenge_ack_data.
        data: String,
    },
    /// sign_ack.
    SignAck {
        /// Whether it was broadcast.
        broadcast: bool,
        /// Tx id or signed transaction.
        data: Value,
    },
    /// Signed and about to be broadcast: a re-delivery re-broadcasts this same transaction.
    Signing {
        /// The signed transaction JSON.
        signed: Value,
        /// Its id.
        tx_id: String,
    },
    /// *_nack (data = the uuid encrypted with the session key).
    Nack,
    /// *_err with this ciphertext (encrypted message).
    Err {
        /// Ciphertext of the message.
        error: String,
    },
    /// No reply.
    Silent {
        /// Why (for logs).
        reason: String,
    },
}

/// Which request family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// auth_req
    Auth,
    /// sign_req
    Sign,
    /// challenge_req
    Challenge,
}

impl Kind {
    fn cmd(&self) -> &'static str {
        match self {
            Kind::Auth => "auth_req",
            Kind::Sign => "sign_req",
            Kind::Challenge => "challenge_req",
        }
    }
}

/// What the connection task needs to answer.
#[derive(Debug)]
pub struct Answer {
    /// The reply, or None for silence.
    pub reply: Option<PksaToRelay>,
}

struct Incoming {
    kind: Kind,
    uuid: RequestId,
    account: String,
    expire: UnixMillis,
    data: String,
}

fn incoming(req: &RelayToPksa) -> Option<Incoming> {
    let (kind, uuid, account, expire, data) = match req {
        RelayToPksa::AuthReq(r) => (Kind::Auth, &r.uuid, &r.account, r.expire, r.data.as_str()),
        RelayToPksa::SignReq(r) => (Kind::Sign, &r.uuid, &r.account, r.expire, r.data.as_str()),
        RelayToPksa::ChallengeReq(r) => (
            Kind::Challenge,
            &r.uuid,
            &r.account,
            r.expire,
            r.data.as_str(),
        ),
        _ => return None,
    };
    Some(Incoming {
        kind,
        uuid: uuid.clone(),
        account: account.to_string(),
        expire,
        data: data.to_owned(),
    })
}

fn data_hash(kind: Kind, data: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(kind.cmd())
            .chain_update(data)
            .finalize(),
    )
}

/// Extra writes committed with a decision.
type Writes = Box<dyn FnOnce(&Connection) -> store::Result<()> + Send>;

/// A decision ready to be committed.
struct Decided {
    outcome: Outcome,
    session: Option<(i64, AuthKey)>,
    audit: audit::Entry,
    /// Extra writes in the same transaction (session changes, nonce, spend).
    writes: Option<Writes>,
}

impl Decided {
    fn silent(audit: audit::Entry, reason: &str) -> Self {
        Decided {
            outcome: Outcome::Silent {
                reason: reason.into(),
            },
            session: None,
            audit,
            writes: None,
        }
    }
}

/// Which session a request belongs to.
#[derive(Debug)]
pub enum Resolved<T> {
    /// Decrypted with this session's key.
    Found {
        /// The session.
        session: CachedSession,
        /// The payload.
        payload: T,
    },
    /// Decrypted, but the payload is invalid.
    Invalid {
        /// Session id.
        id: i64,
        /// Its key.
        key: AuthKey,
        /// What is wrong.
        message: String,
    },
    /// No session of ours decrypts it.
    NotOurs,
}

/// Finds the session whose key decrypts `data` (strict decryption: no false positives).
async fn resolve<T: Payload>(svc: &Service, account: &str, data: &Encrypted<T>) -> Resolved<T> {
    for refresh in [false, true] {
        svc.ensure_sessions(account, refresh).await;
        match svc.find_session(account, data) {
            Some(Resolved::NotOurs) | None => continue,
            Some(found) => return found,
        }
    }
    Resolved::NotOurs
}

/// The part of a request's handling that must follow the order requests arrive in: finding
/// its session in the cache (no store access) and reserving its nonce. The connection task
/// runs it before handing the request to a concurrent handler.
#[derive(Debug)]
pub enum Preflight {
    /// A sign request: its session, and whether its nonce was reserved (None: no nonce).
    Sign(Resolved<SignReqData>, Option<bool>),
    /// A challenge request: likewise.
    Challenge(Resolved<ChallengeReqData>, Option<bool>),
}

fn reserve(resolved: &Resolved<impl HasNonce>) -> Option<bool> {
    match resolved {
        Resolved::Found { session, payload } => payload.nonce().map(|n| session.reserve(n)),
        _ => None,
    }
}

trait HasNonce {
    fn nonce(&self) -> Option<i64>;
}
impl HasNonce for SignReqData {
    fn nonce(&self) -> Option<i64> {
        self.nonce.map(|n| n.0 as i64)
    }
}
impl HasNonce for ChallengeReqData {
    fn nonce(&self) -> Option<i64> {
        self.nonce.map(|n| n.0 as i64)
    }
}

/// Synchronous, cache-only preflight (None when the account's sessions are not cached yet
/// or no cached session decrypts the request: the handler then resolves it itself).
pub fn preflight(svc: &Service, req: &RelayToPksa) -> Option<Preflight> {
    match req {
        RelayToPksa::SignReq(r) => {
            let resolved = svc.find_session(r.account.as_str(), &r.data)?;
            if matches!(resolved, Resolved::NotOurs) {
                return None;
            }
            let reserved = reserve(&resolved);
            Some(Preflight::Sign(resolved, reserved))
        }
        RelayToPksa::ChallengeReq(r) => {
            let resolved = svc.find_session(r.account.as_str(), &r.data)?;
            if matches!(resolved, Resolved::NotOurs) {
                return None;
            }
            let reserved = reserve(&resolved);
            Some(Preflight::Challenge(resolved, reserved))
        }
        _ => None,
    }
}

fn encrypted_error(message: &str, key: &AuthKey) -> Outcome {
    Outcome::Err {
        error: Encrypted::encrypt(&ErrorText(message.to_owned()), key)
            .as_str()
            .to_owned(),
    }
}

fn entry(inc: &Incoming, app: &str) -> audit::Entry {
    audit::Entry {
        uuid: inc.uuid.to_string(),
        account: inc.account.clone(),
        app: app.to_owned(),
        cmd: inc.kind.cmd().into(),
        ..Default::default()
    }
}

fn with_decision(mut e: audit::Entry, decision: &str, rule: &str, reason: &str) -> audit::Entry {
    e.decision = decision.into();
    e.rule = rule.into();
    e.reason = reason.into();
    e
}

/// Handles one relayed request. `server_key` is the key_ack key of the server it came from.
/// `pre` is the result of [`preflight`] run in arrival order (None: resolve here).
pub async fn handle(
    svc: &Arc<Service>,
    server_key: &PublicKey,
    req: RelayToPksa,
    pre: Option<Preflight>,
) -> Answer {
    let Some(inc) = incoming(&req) else {
        return Answer { reply: None };
    };
    let Some(keys) = svc.keys.account(&inc.account) else {
        tracing::debug!(account = %inc.account, uuid = %inc.uuid, "request for an account we do not manage: ignored");
        return Answer { reply: None };
    };
    if inc.expire <= UnixMillis::now() {
        tracing::info!(account = %inc.account, uuid = %inc.uuid, cmd = inc.kind.cmd(), "request already expired: ignored");
        svc.counters.decision(inc.kind.cmd(), "expired");
        return Answer { reply: None };
    }
    let hash = data_hash(inc.kind, &inc.data);
    let _inflight = svc.inflight(&hash).await;

    // Re-delivery: this uuid, or this exact request through another server.
    let (uuid_s, hash_s) = (inc.uuid.to_string(), hash.clone());
    let stored = svc
        .store
        .call(move |c| Ok(answers::get(c, &uuid_s)?.or(answers::by_data(c, &hash_s)?)))
        .await;
    match stored {
        Ok(Some(a)) => return redeliver(svc, server_key, keys, &inc, &hash, a).await,
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, uuid = %inc.uuid, "state store unreadable: refusing (fail closed)");
            return Answer { reply: None };
        }
    }

    let decided = match (&req, inc.kind) {
        (RelayToPksa::AuthReq(r), _) => auth(svc, keys, &inc, r).await,
        (RelayToPksa::SignReq(r), _) => {
            let pre = match pre {
                Some(Preflight::Sign(res, reserved)) => Some((res, reserved)),
                _ => None,
            };
            return sign(svc, server_key, keys, &inc, &hash, r, pre).await;
        }
        (RelayToPksa::ChallengeReq(r), _) => {
            let pre = match pre {
                Some(Preflight::Challenge(res, reserved)) => Some((res, reserved)),
                _ => None,
            };
            challenge(svc, keys, &inc, r, pre).await
        }
        _ => return Answer { reply: None },
    };
    commit_and_reply(svc, server_key, keys, &inc, &hash, decided).await
}

/// Records a decision (answer, audit, extra writes) in one commit. A conflict in the extra
/// writes (a spend limit reached, a nonce overtaken by a concurrent request) turns the
/// decision into a recorded refusal. Returns the outcome actually recorded, or None when
/// nothing could be recorded (then nothing is sent: fail closed).
async fn commit(
    svc: &Service,
    inc: &Incoming,
    hash: &str,
    d: Decided,
) -> Option<(Outcome, Option<(i64, AuthKey)>)> {
    let outcome_json = serde_json::to_string(&d.outcome).unwrap_or_default();
    let (uuid, hash_s, account, cmd) = (
        inc.uuid.to_string(),
        hash.to_owned(),
        inc.account.clone(),
        inc.kind.cmd(),
    );
    let session_id = d.session.as_ref().map(|(id, _)| *id).filter(|id| *id > 0);
    let expire = inc.expire.0 as i64;
    let audit_entry = d.audit.clone();
    let writes = d.writes;
    let r = svc
        .store
        .call(move |c| {
            if let Some(w) = writes {
                w(c)?;
            }
            answers::put(
                c,
                &uuid,
                &hash_s,
                &account,
                cmd,
                session_id,
                &outcome_json,
                expire,
            )?;
            audit::append(c, &audit_entry)?;
            Ok(())
        })
        .await;
    match r {
        Ok(()) => {
            log_decision(svc, inc, &d.audit);
            Some((d.outcome, d.session))
        }
        Err(store::StoreError::Conflict(reason)) => {
            let reject = match inc.kind {
                Kind::Auth => svc.settings().auth_req_reject,
                Kind::Sign => svc.settings().sign_req_reject,
                Kind::Challenge => svc.settings().challenge_req_reject,
            };
            let mut e = with_decision(d.audit, "deny", "limits", &reason);
            e.tx_id = None;
            let outcome = if reject {
                Outcome::Nack
            } else {
                Outcome::Silent {
                    reason: reason.clone(),
                }
            };
            let refusal = Decided {
                outcome,
                session: d.session,
                audit: e,
                writes: None,
            };
            Box::pin(commit(svc, inc, hash, refusal)).await
        }
        Err(e) => {
            tracing::error!(error = %e, uuid = %inc.uuid, "cannot record the decision: no reply (fail closed)");
            svc.counters.decision(inc.kind.cmd(), "store_error");
            None
        }
    }
}

async fn commit_and_reply(
    svc: &Service,
    server_key: &PublicKey,
    keys: &AccountKeys,
    inc: &Incoming,
    hash: &str,
    d: Decided,
) -> Answer {
    let auth_ack = inc.kind == Kind::Auth && matches!(d.outcome, Outcome::AuthAck { .. });
    match commit(svc, inc, hash, d).await {
        Some((outcome, session)) => {
            if auth_ack && let Some((_, key)) = &session {
                // The app may send its next request right after this ack: have the new or
                // renewed session in the cache before the ack leaves.
                svc.cache_session(&inc.account, key).await;
            }
            Answer {
                reply: frame(
                    svc,
                    server_key,
                    keys,
                    inc.kind,
                    &inc.uuid,
                    &outcome,
                    session.as_ref().map(|(_, k)| k),
                ),
            }
        }
        None => Answer { reply: None },
    }
}

fn log_decision(svc: &Service, inc: &Incoming, e: &audit::Entry) {
    svc.counters.decision(inc.kind.cmd(), &e.decision);
    tracing::info!(
        account = %e.account, app = %e.app, cmd = %e.cmd, uuid = %e.uuid,
        decision = %e.decision, rule = %e.rule, reason = %e.reason,
        tx_id = e.tx_id.as_deref().unwrap_or(""),
        "decision"
    );
}

/// Builds the reply frame for an outcome (with a fresh POK over this uuid).
fn frame(
    svc: &Service,
    server_key: &PublicKey,
    keys: &AccountKeys,
    kind: Kind,
    uuid: &RequestId,
    outcome: &Outcome,
    key: Option<&AuthKey>,
) -> Option<PksaToRelay> {
    let pok = keys
        .lowest()
        .map(|k| pok::encode(&svc.pok_cache.channel(k, server_key), uuid.as_str()));
    let uuid = uuid.clone();
    Some(match (kind, outcome) {
        (_, Outcome::Silent { .. }) | (_, Outcome::Signing { .. }) => return None,
        (Kind::Auth, Outcome::AuthAck { data }) => PksaToRelay::AuthAck(AuthAck {
            uuid,
            data: Encrypted::from_ciphertext(data.clone()),
            pok,
        }),
        (Kind::Challenge, Outcome::ChallengeAck { data }) => {
            PksaToRelay::ChallengeAck(ChallengeAck {
                uuid,
                data: Encrypted::from_ciphertext(data.clone()),
                pok,
            })
        }
        (Kind::Sign, Outcome::SignAck { broadcast, data }) => {
            let data = match data {
                Value::String(s) => SignAckData::TxId(s.clone()),
                Value::Object(o) => SignAckData::Transaction(o.clone()),
                _ => return None,
            };
            PksaToRelay::SignAck(SignAck {
                uuid,
                broadcast: Some(*broadcast),
                data,
                pok,
            })
        }
        (k, Outcome::Nack) => {
            let key = key?;
            let n = Nack::new(uuid, key, pok);
            match k {
                Kind::Auth => PksaToRelay::AuthNack(n),
                Kind::Sign => PksaToRelay::SignNack(n),
                Kind::Challenge => PksaToRelay::ChallengeNack(n),
            }
        }
        (k, Outcome::Err { error }) => {
            let e = ReplyError {
                uuid,
                error: error.clone(),
                pok,
            };
            match k {
                Kind::Auth => PksaToRelay::AuthErr(e),
                Kind::Sign => PksaToRelay::SignErr(e),
                Kind::Challenge => PksaToRelay::ChallengeErr(e),
            }
        }
        _ => return None,
    })
}

async fn redeliver(
    svc: &Arc<Service>,
    server_key: &PublicKey,
    keys: &AccountKeys,
    inc: &Incoming,
    hash: &str,
    a: answers::Answer,
) -> Answer {
    let outcome: Outcome = match serde_json::from_str(&a.outcome) {
        Ok(o) => o,
        Err(_) => return Answer { reply: None },
    };
    tracing::info!(uuid = %inc.uuid, first_uuid = %a.uuid, "re-delivered request: answering with the stored answer");
    svc.counters.decision(inc.kind.cmd(), "redelivered");
    let key = match a.session_id {
        Some(id) => svc
            .session_keys(&inc.account, false)
            .await
            .into_iter()
            .find(|s| s.id == id)
            .map(|s| s.key.clone()),
        None => None,
    };
    if let Outcome::Signing { signed, tx_id } = &outcome {
        // Signed before a crash or a failover: broadcast that same transaction again (a
        // node answers "duplicate" if it went through), never a new one.
        let final_outcome = broadcast_signed(svc, signed, tx_id, key.as_ref()).await;
        let (uuid, hash_s, account, json) = (
            inc.uuid.to_string(),
            hash.to_owned(),
            inc.account.clone(),
            serde_json::to_string(&final_outcome).unwrap_or_default(),
        );
        let (sid, expire) = (a.session_id, inc.expire.0 as i64);
        if svc
            .store
            .call(move |c| {
                answers::put(c, &uuid, &hash_s, &account, "sign_req", sid, &json, expire)
            })
            .await
            .is_err()
        {
            return Answer { reply: None };
        }
        return Answer {
            reply: frame(
                svc,
                server_key,
                keys,
                inc.kind,
                &inc.uuid,
                &final_outcome,
                key.as_ref(),
            ),
        };
    }
    if a.uuid != inc.uuid.as_str() {
        // Same request through another server: record the answer under this uuid too.
        let (uuid, hash_s, account, cmd, json) = (
            inc.uuid.to_string(),
            hash.to_owned(),
            inc.account.clone(),
            inc.kind.cmd(),
            a.outcome.clone(),
        );
        let (sid, expire) = (a.session_id, inc.expire.0 as i64);
        let _ = svc
            .store
            .call(move |c| answers::put(c, &uuid, &hash_s, &account, cmd, sid, &json, expire))
            .await;
    }
    Answer {
        reply: frame(
            svc,
            server_key,
            keys,
            inc.kind,
            &inc.uuid,
            &outcome,
            key.as_ref(),
        ),
    }
}

async fn broadcast_signed(
    svc: &Service,
    signed: &Value,
    tx_id: &str,
    key: Option<&AuthKey>,
) -> Outcome {
    let err = |m: String| match key {
        Some(k) => encrypted_error(&m, k),
        None => Outcome::Silent { reason: m },
    };
    let tx = match <hive_chain::SignedTransaction as serde::Deserialize>::deserialize(signed) {
        Ok(t) => t,
        Err(e) => return err(format!("stored transaction unreadable: {e}")),
    };
    let t0 = std::time::Instant::now();
    match svc.rpc.broadcast(&tx).await {
        Ok(b) => {
            svc.counters
                .broadcasts_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            svc.counters.broadcast_latency_us.fetch_add(
                t0.elapsed().as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            Outcome::SignAck {
                broadcast: true,
                data: Value::String(b.id),
            }
        }
        Err(hive_chain::rpc::RpcError::Node {
            kind: hive_chain::rpc::NodeErrorKind::Duplicate,
            ..
        }) => {
            svc.counters
                .broadcasts_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Outcome::SignAck {
                broadcast: true,
                data: Value::String(tx_id.to_owned()),
            }
        }
        Err(e) => {
            svc.counters
                .broadcasts_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error = %e, tx_id, "broadcast failed");
            err(format!("broadcast failed: {e}"))
        }
    }
}

// ---------------------------------------------------------------------------------- auth

async fn auth(svc: &Service, keys: &AccountKeys, inc: &Incoming, r: &RelayedAuthReq) -> Decided {
    let settings = svc.settings();
    let e0 = entry(inc, "?");
    // The auth_key: from the pre-shared secret, else a stored session whose key decrypts.
    let via_secret = match (&r.auth_key, &settings.auth_req_secret) {
        (Some(enc), Some(secret)) => enc.decrypt(secret).ok(),
        _ => None,
    };
    let (key, data) = match via_secret {
        Some(k) => match r.data.decrypt(&k) {
            Ok(d) => (k, d),
            Err(PayloadError::Invalid(m)) => {
                let o = encrypted_error(&format!("invalid request: {m}"), &k);
                return Decided {
                    outcome: o,
                    session: None,
                    audit: with_decision(e0, "error", "protocol", &m),
                    writes: None,
                };
            }
            Err(_) => {
                return Decided::silent(
                    with_decision(
                        e0,
                        "silent",
                        "protocol",
                        "auth_key does not decrypt the data",
                    ),
                    "undecryptable",
                );
            }
        },
        None => match resolve(svc, &inc.account, &r.data).await {
            Resolved::Found { session, payload } => (session.key.clone(), payload),
            Resolved::Invalid { id, key, message } => {
                let o = encrypted_error(&format!("invalid request: {message}"), &key);
                return Decided {
                    outcome: o,
                    session: Some((id, key)),
                    audit: with_decision(e0, "error", "protocol", &message),
                    writes: None,
                };
            }
            Resolved::NotOurs => {
                return Decided::silent(
                    with_decision(
                        e0,
                        "silent",
                        "protocol",
                        "not decryptable with our secret or sessions",
                    ),
                    "undecryptable",
                );
            }
        },
    };
    let app = data.app.name.clone();
    let mut e = entry(inc, &app);
    let now = now_ms();
    let sealer = svc.store.sealer().clone();
    let key_for_lookup = key.clone();
    let existing = svc
        .store
        .call(move |c| sessions::by_key(c, &sealer, &key_for_lookup))
        .await;
    let existing = match existing {
        Ok(x) => x,
        Err(err) => {
            tracing::error!(error = %err, "state store unreadable");
            return Decided::silent(
                with_decision(e, "silent", "store", "state store unreadable"),
                "store",
            );
        }
    };
    let lifetime = settings.session_lifetime.as_millis() as i64;
    let refuse = |e: audit::Entry, reason: &str, key: &AuthKey, id: Option<i64>| {
        let e = with_decision(e, "deny", "sessions", reason);
        let outcome = if settings.auth_req_reject {
            Outcome::Nack
        } else {
            Outcome::Silent {
                reason: reason.into(),
            }
        };
        Decided {
            outcome,
            session: Some((id.unwrap_or(0), key.clone())),
            audit: e,
            writes: None,
        }
    };
    // Session: renew a live one, or create one inside an enrollment window.
    let (session_id, expire, token, creating) = match existing {
        Some(row) if row.revoked => return refuse(e, "session revoked", &key, Some(row.id)),
        Some(row) if row.expire > now => {
            let expire = (now + lifetime).min(row.max_expire).max(row.expire);
            (Some(row.id), expire, row.token.clone(), false)
        }
        other => {
            let (acct, app_s) = (inc.account.clone(), app.clone());
            let open = svc
                .store
                .call(move |c| enrollments::is_open(c, &acct, &app_s, now))
                .await
                .unwrap_or(false);
            if !open {
                let reason = if other.is_some() {
                    "session expired and no enrollment window is open"
                } else {
                    "no enrollment window is open for this account"
                };
                return refuse(e, reason, &key, other.map(|r| r.id));
            }
            (
                other.map(|r| r.id),
                now + lifetime,
                Some(uuid::Uuid::new_v4().to_string()),
                true,
            )
        }
    };
    // Challenge (signed with the requested key) or Keychain's app.pubkey extension.
    let prefix = svc.chain.address_prefix();
    let challenge = match &data.challenge {
        Some(spec) => {
            let d =
                settings
                    .policy
                    .decide_challenge(&inc.account, &app, spec.key_type, false, false);
            if !d.approve {
                e = with_decision(e, "deny", &d.rule, &d.reason);
                return Decided {
                    outcome: encrypted_error(&d.reason, &key),
                    session: session_id.map(|i| (i, key.clone())),
                    audit: e,
                    writes: None,
                };
            }
            let Some(k) = keys.get(spec.key_type.role()) else {
                let m = format!(
                    "this PKSA holds no {} key for {}",
                    spec.key_type, inc.account
                );
                e = with_decision(e, "error", "keys", &m);
                return Decided {
                    outcome: encrypted_error(&m, &key),
                    session: session_id.map(|i| (i, key.clone())),
                    audit: e,
                    writes: None,
                };
            };
            e.ops_digest = audit::digest(&spec.challenge);
            let sig = k.sign_buffer(spec.challenge.as_bytes());
            Some(AuthChallengeAnswer::Signed(ChallengeAckData {
                pubkey: k.public_key().to_string_with_prefix(prefix),
                challenge: sig.to_hex(),
            }))
        }
        None => data.app.pubkey.as_deref().and_then(|pk| {
            let target = PublicKey::from_str_with_prefix(pk, "STM")
                .or_else(|_| PublicKey::from_str_with_prefix(pk, "TST"))
                .ok()?;
            let k = keys.get(KeyRole::Posting)?;
            Some(AuthChallengeAnswer::Memo(
                memo::MemoChannel::new(k, &target).encode(&format!("#{}", inc.account)),
            ))
        }),
    };
    let ack = AuthAckData {
        expire: UnixMillis(expire as u64),
        challenge,
        token: token.clone(),
    };
    let outcome = Outcome::AuthAck {
        data: Encrypted::encrypt(&ack, &key).as_str().to_owned(),
    };
    let reason = if creating {
        "new session (enrollment window open)"
    } else {
        "session renewed"
    };
    e = with_decision(e, "approve", "sessions", reason);
    // Writes: create or renew the session.
    let sealer = svc.store.sealer().clone();
    let (acct, app_s, k2, max_exp) = (
        inc.account.clone(),
        app.clone(),
        key.clone(),
        now + settings.session_max_lifetime.as_millis() as i64,
    );
    let origin = if via_secret_used(&r.auth_key, &settings.auth_req_secret) {
        "secret"
    } else {
        "stored"
    };
    let writes: Writes = match session_id {
        Some(id) if !creating => Box::new(move |c| sessions::touch(c, id, expire)),
        Some(id) => Box::new(move |c| {
            // Re-enrolled expired session: extend it.
            c.prepare_cached("UPDATE sessions SET expire = ?2, max_expire = ?3, token = COALESCE(token, ?4) WHERE id = ?1")?.execute(rusqlite::params![id, expire, max_exp, token])?;
            Ok(())
        }),
        None => Box::new(move |c| {
            sessions::insert(
                c,
                &sealer,
                &acct,
                &app_s,
                &k2,
                expire,
                max_exp,
                origin,
                token.as_deref(),
                0,
            )?;
            Ok(())
        }),
    };
    Decided {
        outcome,
        session: session_id.map(|i| (i, key.clone())).or(Some((0, key))),
        audit: e,
        writes: Some(writes),
    }
}

fn via_secret_used(
    k: &Option<Encrypted<AuthKey>>,
    s: &Option<has_protocol::AuthReqSecret>,
) -> bool {
    k.is_some() && s.is_some()
}

// ------------------------------------------------------------------------------ challenge

async fn challenge(
    svc: &Service,
    keys: &AccountKeys,
    inc: &Incoming,
    r: &RelayedChallengeReq,
    pre: Option<(Resolved<ChallengeReqData>, Option<bool>)>,
) -> Decided {
    let settings = svc.settings();
    let e0 = entry(inc, "?");
    let (resolved, reserved) = match pre {
        Some(p) => p,
        None => {
            let r = resolve(svc, &inc.account, &r.data).await;
            let res = reserve(&r);
            (r, res)
        }
    };
    let (session, data) = match resolved {
        Resolved::Found { session, payload } => (session, payload),
        Resolved::Invalid { id, key, message } => {
            return Decided {
                outcome: encrypted_error(&format!("invalid request: {message}"), &key),
                session: Some((id, key)),
                audit: with_decision(e0, "error", "protocol", &message),
                writes: None,
            };
        }
        Resolved::NotOurs => {
            return Decided::silent(
                with_decision(
                    e0,
                    "silent",
                    "protocol",
                    "not decryptable with our sessions",
                ),
                "undecryptable",
            );
        }
    };
    let (id, key, app) = (session.id, session.key.clone(), session.app.clone());
    let mut e = entry(inc, &app);
    e.ops_digest = audit::digest(&data.challenge);
    e.op_types = if data.decrypt == Some(true) {
        "decrypt".into()
    } else {
        "sign".into()
    };
    let err = |e: audit::Entry, decision: &str, rule: &str, m: &str| Decided {
        outcome: encrypted_error(m, &key),
        session: Some((id, key.clone())),
        audit: with_decision(e, decision, rule, m),
        writes: None,
    };
    // Nonce: checked when present (and required if configured).
    let nonce = data.nonce.map(|n| n.0 as i64);
    if nonce.is_none() && settings.challenge_nonce_required {
        return err(e, "error", "nonce", "nonce is required");
    }
    if let Some(n) = nonce
        && reserved != Some(true)
    {
        return err(
            e,
            "deny",
            "nonce",
            &format!("nonce {n} was already used (replay)"),
        );
    }
    let decrypt = data.decrypt.unwrap_or(false);
    let d: Decision = settings.policy.decide_challenge(
        &inc.account,
        &app,
        data.key_type,
        decrypt,
        settings.challenge_decrypt,
    );
    let nonce_write = move |c: &Connection| -> store::Result<()> {
        if let Some(n) = nonce {
            sessions::record_nonce(c, id, n)?;
        }
        Ok(())
    };
    if !d.approve {
        let e = with_decision(e, "deny", &d.rule, &d.reason);
        let outcome = if settings.challenge_req_reject {
            Outcome::Nack
        } else {
            Outcome::Silent {
                reason: d.reason.clone(),
            }
        };
        return Decided {
            outcome,
            session: Some((id, key)),
            audit: e,
            writes: Some(Box::new(nonce_write)),
        };
    }
    let Some(k) = keys.get(data.key_type.role()) else {
        return err(
            e,
            "error",
            "keys",
            &format!(
                "this PKSA holds no {} key for {}",
                data.key_type, inc.account
            ),
        );
    };
    let answer = if decrypt {
        match memo::decode(k, &data.challenge) {
            Ok(m) => m.text.expose_secret().to_owned(),
            Err(x) => {
                return err(
                    e,
                    "error",
                    "memo",
                    &format!("cannot decrypt the memo: {}", x.kind()),
                );
            }
        }
    } else {
        k.sign_buffer(data.challenge.as_bytes()).to_hex()
    };
    let ack = ChallengeAckData {
        pubkey: k
            .public_key()
            .to_string_with_prefix(svc.chain.address_prefix()),
        challenge: answer,
    };
    e = with_decision(e, "approve", &d.rule, &d.reason);
    Decided {
        outcome: Outcome::ChallengeAck {
            data: Encrypted::encrypt(&ack, &key).as_str().to_owned(),
        },
        session: Some((id, key)),
        audit: e,
        writes: Some(Box::new(nonce_write)),
    }
}

// ----------------------------------------------------------------------------------- sign

fn role_key(keys: &AccountKeys, level: hive_chain::Level) -> Option<&PrivateKey> {
    match level {
        hive_chain::Level::Posting => keys.get(KeyRole::Posting),
        hive_chain::Level::Active => keys.get(KeyRole::Active),
        hive_chain::Level::Owner => None,
    }
}

async fn sign(
    svc: &Arc<Service>,
    server_key: &PublicKey,
    keys: &AccountKeys,
    inc: &Incoming,
    hash: &str,
    r: &RelayedSignReq,
    pre: Option<(Resolved<SignReqData>, Option<bool>)>,
) -> Answer {
    let settings = svc.settings();
    let e0 = entry(inc, "?");
    let (resolved, reserved) = match pre {
        Some(p) => p,
        None => {
            let r = resolve(svc, &inc.account, &r.data).await;
            let res = reserve(&r);
            (r, res)
        }
    };
    let (session, data) = match resolved {
        Resolved::Found { session, payload } => (session, payload),
        Resolved::Invalid { id, key, message } => {
            let d = Decided {
                outcome: encrypted_error(&format!("invalid request: {message}"), &key),
                session: Some((id, key)),
                audit: with_decision(e0, "error", "protocol", &message),
                writes: None,
            };
            return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
        }
        Resolved::NotOurs => {
            let d = Decided::silent(
                with_decision(
                    e0,
                    "silent",
                    "protocol",
                    "not decryptable with our sessions",
                ),
                "undecryptable",
            );
            return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
        }
    };
    let (id, key, app) = (session.id, session.key.clone(), session.app.clone());
    let mut e = entry(inc, &app);
    let ops_json = Value::Array(data.ops.clone()).to_string();
    e.ops_digest = audit::digest(&ops_json);
    let fail = |e: audit::Entry, decision: &str, rule: &str, m: String, nonce: Option<i64>| {
        let writes: Option<Writes> = nonce
            .map(|n| Box::new(move |c: &Connection| sessions::record_nonce(c, id, n)) as Writes);
        Decided {
            outcome: encrypted_error(&m, &key),
            session: Some((id, key.clone())),
            audit: with_decision(e, decision, rule, &m),
            writes,
        }
    };
    // Nonce: required, strictly greater than the session's last one.
    let Some(nonce) = data.nonce.map(|n| n.0 as i64) else {
        let d = fail(e, "error", "nonce", "nonce is required".into(), None);
        return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
    };
    if reserved != Some(true) {
        let d = fail(
            e,
            "deny",
            "nonce",
            format!("nonce {nonce} was already used (replay)"),
            None,
        );
        return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
    }
    // Operations → required authorities (key_type is only a hint) → policy.
    let ops = match Operation::list_from_json(&data.ops) {
        Ok(o) => o,
        Err(err) => {
            let d = fail(
                e,
                "error",
                "operations",
                format!("invalid operations: {err}"),
                Some(nonce),
            );
            return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
        }
    };
    e.op_types = ops
        .iter()
        .map(Operation::name)
        .collect::<Vec<_>>()
        .join(",");
    let probe = Transaction {
        ref_block_num: 0,
        ref_block_prefix: 0,
        expiration: hive_chain::TimePointSec(0),
        operations: ops.clone(),
        extensions: Default::default(),
    };
    let required = probe.required();
    let decision = settings
        .policy
        .decide_sign(&inc.account, &app, &ops, &required, data.broadcast);
    if !decision.approve {
        let e = with_decision(e, "deny", &decision.rule, &decision.reason);
        let outcome = if settings.sign_req_reject {
            Outcome::Nack
        } else {
            Outcome::Silent {
                reason: decision.reason.clone(),
            }
        };
        let d = Decided {
            outcome,
            session: Some((id, key)),
            audit: e,
            writes: Some(Box::new(move |c: &Connection| {
                sessions::record_nonce(c, id, nonce)
            })),
        };
        return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
    }
    let mut signing_keys = vec![];
    for level in required
        .accounts
        .iter()
        .map(|(_, l)| *l)
        .collect::<std::collections::BTreeSet<_>>()
    {
        match role_key(keys, level) {
            Some(k) => signing_keys.push(k),
            None => {
                let d = fail(
                    e,
                    "error",
                    "keys",
                    format!("this PKSA holds no {level} key for {}", inc.account),
                    Some(nonce),
                );
                return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
            }
        }
    }
    let head = match svc.head_block().await {
        Ok(h) => h,
        Err(err) => {
            let d = fail(
                e,
                "error",
                "hive_api",
                format!("Hive API unavailable: {err}"),
                Some(nonce),
            );
            return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
        }
    };
    let signed =
        match Transaction::new(&head, ops, settings.expiration.as_secs() as u32).and_then(|t| {
            let id = t.id()?;
            Ok((t.sign(&svc.chain, &signing_keys)?, id))
        }) {
            Ok(x) => x,
            Err(err) => {
                let d = fail(
                    e,
                    "error",
                    "transaction",
                    format!("cannot build the transaction: {err}"),
                    Some(nonce),
                );
                return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
            }
        };
    let (tx, tx_id) = signed;
    let tx_json = match tx.to_json() {
        Ok(j) => j,
        Err(err) => {
            let d = fail(e, "error", "transaction", err.to_string(), Some(nonce));
            return commit_and_reply(svc, server_key, keys, inc, hash, d).await;
        }
    };
    e.tx_id = Some(tx_id.clone());
    let e = with_decision(e, "approve", &decision.rule, &decision.reason);
    // Spend limits are checked and counted in the same transaction as the nonce and answer.
    let spends = decision.spend.clone();
    let (acct, uuid_s) = (inc.account.clone(), inc.uuid.to_string());
    let writes = move |c: &Connection| -> store::Result<()> {
        sessions::record_nonce(c, id, nonce)?;
        crate::spend::check_and_record(c, &acct, &uuid_s, &spends)?;
        Ok(())
    };
    let first = if data.broadcast {
        Outcome::Signing {
            signed: tx_json.clone(),
            tx_id: tx_id.clone(),
        }
    } else {
        Outcome::SignAck {
            broadcast: false,
            data: tx_json.clone(),
        }
    };
    let d = Decided {
        outcome: first,
        session: Some((id, key.clone())),
        audit: e,
        writes: Some(Box::new(writes)),
    };
    let Some((recorded, session)) = commit(svc, inc, hash, d).await else {
        return Answer { reply: None };
    };
    if !matches!(recorded, Outcome::Signing { .. }) {
        // Sign-only, or refused at commit time (spend limit, nonce race).
        return Answer {
            reply: frame(
                svc,
                server_key,
                keys,
                inc.kind,
                &inc.uuid,
                &recorded,
                session.as_ref().map(|(_, k)| k),
            ),
        };
    }
    // The signed transaction is recorded: broadcast it, then record the result.
    let final_outcome = broadcast_signed(svc, &tx_json, &tx_id, Some(&key)).await;
    let (uuid, hash_s, account, json, expire) = (
        inc.uuid.to_string(),
        hash.to_owned(),
        inc.account.clone(),
        serde_json::to_string(&final_outcome).unwrap_or_default(),
        inc.expire.0 as i64,
    );
    if let Err(err) = svc
        .store
        .call(move |c| {
            answers::put(
                c,
                &uuid,
                &hash_s,
                &account,
                "sign_req",
                Some(id),
                &json,
                expire,
            )
        })
        .await
    {
        tracing::error!(error = %err, "cannot record the broadcast result");
    }
    Answer {
        reply: frame(
            svc,
            server_key,
            keys,
            inc.kind,
            &inc.uuid,
            &final_outcome,
            Some(&key),
        ),
    }
}
