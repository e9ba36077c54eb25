//! The awaits of the request path: reading the authoritative state, the head block, signing,
//! recording the decision (with the session re-checked in the same transaction), and the
//! broadcast. Every decision itself is made by the pure functions of `auth`, `sign` and
//! `challenge`; every reply is built by `reply`.

use std::collections::{HashMap, HashSet};

use has_crypto::{PrivateKey, PublicKey, memo};
use has_protocol::payloads::*;
use has_protocol::{AuthKey, Encrypted, PayloadError, PksaToRelay, RelayToPksa};
use hive_chain::rpc::{NodeErrorKind, RpcError};
use hive_chain::{HeadBlock, Operation, Transaction};
use serde_json::Value;

use super::{Core, Family, NonceCheck, Outcome, Refusal, Request, audit_entry, log_decision};
use crate::config::Settings;
use crate::keystore::AccountKeys;
use crate::sessions::{CachedSession, Resolved};
use crate::state::audit::{self, Entry};
use crate::state::decisions::{self, Effect, Record};
use crate::state::sessions::{Guard, NewSession};
use crate::state::{Conflict, StoreError, now_ms};

/// What a request got.
#[derive(Debug)]
pub(crate) struct Answered {
    pub(crate) outcome: Outcome,
    /// The key nack data is encrypted with.
    pub(crate) key: Option<AuthKey>,
}

/// A decision ready to be recorded.
struct Decided {
    outcome: Outcome,
    audit: Entry,
    guard: Option<Guard>,
    effect: Effect,
    session_id: Option<i64>,
    tx_id: Option<String>,
}

fn record_of(req: &Request, d: &Decided) -> Record {
    Record {
        uuid: req.uuid.to_string(),
        data_hash: req.hash.clone(),
        account: req.account.clone(),
        cmd: req.family.cmd(),
        expire: req.answer_expire(),
        session_id: d.session_id,
        outcome: serde_json::to_string(&d.outcome).unwrap_or_default(),
        tx_id: d.tx_id.clone(),
        audit: d.audit.clone(),
        guard: d.guard.clone(),
        effect: d.effect.clone(),
    }
}

/// The refusal a conflict with the authoritative state turns a decision into.
fn conflict_refusal(c: Conflict, nonce: Option<i64>) -> Refusal {
    match c {
        Conflict::Session(why) => Refusal::SessionEnded(why),
        Conflict::NonceUsed => Refusal::Replay(nonce.unwrap_or_default()),
        Conflict::SpendLimit(reason) => Refusal::Denied {
            rule: "limits".into(),
            reason,
        },
        Conflict::WindowClosed => Refusal::NoEnrollment("the enrollment window closed"),
        Conflict::KeyInUse => Refusal::KeyInUse,
    }
}

/// Whose request it is, for refusals.
#[derive(Clone, Copy)]
struct Who<'a> {
    key: &'a AuthKey,
    app: &'a str,
    session: Option<&'a CachedSession>,
    /// A nonce reserved for this request (consumed even when it is refused).
    nonce: Option<i64>,
}

/// Records `d`; if the authoritative state refuses it, records and returns the refusal
/// instead. None: nothing could be recorded, nothing is sent (fail closed).
async fn conclude(
    core: &Core,
    req: &Request,
    settings: &Settings,
    who: Who<'_>,
    d: Decided,
) -> Option<(Answered, Option<i64>)> {
    let rec = record_of(req, &d);
    let sealer = core.store.sealer().clone();
    let guard_nonce = d.guard.as_ref().and_then(|g| g.nonce);
    let r = core
        .store
        .call(move |c| decisions::record(c, &sealer, &rec, now_ms()))
        .await;
    match r {
        Ok(id) => {
            log_decision(core, &d.audit);
            Some((
                Answered {
                    outcome: d.outcome,
                    key: Some(who.key.clone()),
                },
                id,
            ))
        }
        Err(StoreError::Conflict(c)) => {
            if matches!(c, Conflict::Session(_))
                && let Some(s) = who.session
            {
                s.mark_ended();
            }
            let refusal = conflict_refusal(c, guard_nonce);
            let who = Who {
                nonce: if matches!(refusal, Refusal::Replay(_)) {
                    None
                } else {
                    who.nonce
                },
                ..who
            };
            refuse(core, req, settings, who, refusal, d.audit)
                .await
                .map(|a| (a, None))
        }
        Err(e) => {
            tracing::error!(error = %e, uuid = %req.uuid, "cannot record the decision: no reply (fail closed)");
            core.counters.decision(req.family.cmd(), "store_error");
            None
        }
    }
}

/// Records a refusal (its audit row built on `base`) and returns what the app gets.
async fn refuse(
    core: &Core,
    req: &Request,
    settings: &Settings,
    who: Who<'_>,
    r: Refusal,
    base: Entry,
) -> Option<Answered> {
    let (decision, rule, reason) = r.audit();
    let audit = Entry {
        app: who.app.to_owned(),
        decision: decision.into(),
        rule,
        reason,
        tx_id: None,
        ..base
    };
    let session_id = who.session.map(|s| s.id);
    let effect = match (session_id, who.nonce) {
        (Some(id), Some(nonce)) => Effect::ConsumeNonce { id, nonce },
        // A sign request without a nonce, refused: its data is used up, so a relay keeping
        // it cannot have it decided again later (when a spend window has passed, say).
        (Some(id), None) if req.family == super::Family::Sign => Effect::ConsumeData {
            id,
            data_hash: req.hash.clone(),
        },
        _ => Effect::None,
    };
    let d = Decided {
        outcome: super::reply::refused(&r, req.family, settings, who.key),
        audit,
        guard: None,
        effect,
        session_id,
        tx_id: None,
    };
    let rec = record_of(req, &d);
    let sealer = core.store.sealer().clone();
    match core
        .store
        .call(move |c| decisions::record(c, &sealer, &rec, now_ms()))
        .await
    {
        Ok(_) => {
            log_decision(core, &d.audit);
            Some(Answered {
                outcome: d.outcome,
                key: Some(who.key.clone()),
            })
        }
        Err(e) => {
            tracing::error!(error = %e, uuid = %req.uuid, "cannot record the refusal: no reply (fail closed)");
            core.counters.decision(req.family.cmd(), "store_error");
            None
        }
    }
}

/// A request no key of ours decrypts: counted, not stored, not answered.
fn not_ours(core: &Core, req: &Request) -> Option<Answered> {
    tracing::debug!(account = %req.account, uuid = %req.uuid, cmd = req.family.cmd(), "not decryptable with our secret or sessions: ignored");
    core.counters.decision(req.family.cmd(), "undecryptable");
    None
}

fn reserved(n: NonceCheck) -> Option<i64> {
    match n {
        NonceCheck::Reserved(n) => Some(n),
        _ => None,
    }
}

/// A request whose payload decrypts with `session`'s key but is invalid.
async fn invalid(
    core: &Core,
    req: &Request,
    settings: &Settings,
    session: &CachedSession,
    message: String,
) -> Option<Answered> {
    let view = session.view();
    let r = match view.ended(now_ms()) {
        Some(why) => Refusal::SessionEnded(why),
        None => Refusal::Invalid(message),
    };
    let who = Who {
        key: &session.key,
        app: &view.app,
        session: Some(session),
        nonce: None,
    };
    refuse(core, req, settings, who, r, audit_entry(req, &view.app)).await
}

// ---------------------------------------------------------------------------------- auth

/// auth_req.
pub(crate) async fn auth(
    core: &Core,
    keys: &AccountKeys,
    req: &Request,
    settings: &Settings,
) -> Option<Answered> {
    let RelayToPksa::AuthReq(r) = &req.frame else {
        return None;
    };
    let via_secret = match (&r.auth_key, &settings.auth_req_secret) {
        (Some(enc), Some(secret)) => enc.decrypt(secret).ok(),
        _ => None,
    };
    let (key, data, origin) = match via_secret {
        Some(k) => match r.data.decrypt(&k) {
            Ok(d) => (k, d, super::auth::KeyOrigin::Secret),
            Err(PayloadError::Invalid(m)) => {
                let who = Who {
                    key: &k,
                    app: "?",
                    session: None,
                    nonce: None,
                };
                return refuse(
                    core,
                    req,
                    settings,
                    who,
                    Refusal::Invalid(m),
                    audit_entry(req, "?"),
                )
                .await;
            }
            Err(_) => return not_ours(core, req),
        },
        None => match core
            .sessions
            .resolve(&core.store, &req.account, &r.data, r.token.as_deref())
            .await
        {
            Resolved::Found { session, payload } => {
                (session.key.clone(), payload, super::auth::KeyOrigin::Stored)
            }
            Resolved::Invalid { session, message } => {
                return invalid(core, req, settings, &session, message).await;
            }
            Resolved::NotOurs => return not_ours(core, req),
        },
    };
    // The authoritative state: the session holding this key (any account) and the windows.
    let (sealer, k2, acct) = (
        core.store.sealer().clone(),
        key.clone(),
        req.account.clone(),
    );
    let now = now_ms();
    let state = core
        .store
        .call(move |c| {
            let existing = crate::state::sessions::by_key(c, &sealer, &k2)?;
            let windows: Vec<_> = crate::state::enrollments::list_open(c, now)?
                .into_iter()
                .filter(|w| w.account == acct)
                .collect();
            Ok((existing, windows))
        })
        .await;
    let (existing, windows) = match state {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, uuid = %req.uuid, "state store unreadable: refusing (fail closed)");
            return None;
        }
    };
    let token = uuid::Uuid::new_v4().to_string();
    let plan = super::auth::decide(
        &super::auth::Input {
            account: &req.account,
            data: &data,
            existing: existing.as_ref(),
            windows: &windows,
            origin,
            new_token: &token,
        },
        &super::Ctx {
            keys,
            settings,
            chain: &core.chain,
            now,
        },
    );
    let own = existing.as_ref().filter(|e| e.account == req.account);
    let app = own.map_or(data.app.name.as_str(), |e| e.app.as_str());
    let mut e = audit_entry(req, app);
    if let Some(spec) = &data.challenge {
        e.ops_digest = audit::digest(&spec.challenge);
    }
    let cached = own.and_then(|o| core.sessions.by_id(&req.account, o.id));
    let plan = match plan {
        Ok(p) => p,
        Err(r) => {
            let who = Who {
                key: &key,
                app,
                session: cached.as_ref(),
                nonce: None,
            };
            return refuse(core, req, settings, who, r, e).await;
        }
    };
    let prefix = core.chain.address_prefix();
    let challenge = match &plan.challenge {
        Some(super::auth::Challenge::Sign { role, text }) => {
            let k = keys.get(*role)?;
            Some(AuthChallengeAnswer::Signed(ChallengeAckData {
                pubkey: k.public_key().to_string_with_prefix(prefix),
                challenge: k.sign_buffer(text.as_bytes()).to_hex(),
            }))
        }
        Some(super::auth::Challenge::KeychainMemo { target }) => {
            let k = keys.get(has_crypto::KeyRole::Posting)?;
            Some(AuthChallengeAnswer::Memo(
                memo::MemoChannel::new(k, target).encode(&format!("#{}", req.account)),
            ))
        }
        None => None,
    };
    let ack = AuthAckData {
        expire: has_protocol::UnixMillis(u64::try_from(plan.expire).unwrap_or_default()),
        challenge,
        token: plan.token.clone(),
    };
    let origin_name = match origin {
        super::auth::KeyOrigin::Secret => "secret",
        super::auth::KeyOrigin::Stored => "stored",
    };
    let (guard, effect, session_id) = match plan.change {
        super::auth::Change::Create { max_expire } => (
            None,
            Effect::Create(Box::new(NewSession {
                account: req.account.clone(),
                app: plan.app.clone(),
                key: key.clone(),
                expire: plan.expire,
                max_expire,
                origin: origin_name,
                token: plan.token.clone(),
                nonce_floor: 0,
            })),
            None,
        ),
        super::auth::Change::Renew { id } => (
            Some(Guard {
                id,
                account: req.account.clone(),
                app: plan.app.clone(),
                nonce: None,
                once: None,
            }),
            Effect::Renew {
                id,
                expire: plan.expire,
            },
            Some(id),
        ),
        super::auth::Change::Revive { id, max_expire } => (
            None,
            Effect::Revive {
                id,
                account: req.account.clone(),
                app: plan.app.clone(),
                expire: plan.expire,
                max_expire,
                token: plan.token.clone(),
            },
            Some(id),
        ),
    };
    e.app = plan.app.clone();
    e.decision = "approve".into();
    e.rule = "sessions".into();
    e.reason = plan.reason.clone();
    let d = Decided {
        outcome: Outcome::AuthAck {
            data: Encrypted::encrypt(&ack, &key).as_str().to_owned(),
        },
        audit: e,
        guard,
        effect,
        session_id,
        tx_id: None,
    };
    let who = Who {
        key: &key,
        app: &plan.app,
        session: cached.as_ref(),
        nonce: None,
    };
    let (answered, _) = conclude(core, req, settings, who, d).await?;
    if matches!(answered.outcome, Outcome::AuthAck { .. }) {
        // The app may send its next request right after this ack: have the new or renewed
        // session in the cache before the ack leaves.
        core.sessions
            .cache_one(&core.store, &req.account, &key)
            .await;
    }
    Some(answered)
}

// ----------------------------------------------------------------------------- challenge

/// challenge_req.
pub(crate) async fn challenge(
    core: &Core,
    keys: &AccountKeys,
    req: &Request,
    settings: &Settings,
    pre: Option<(Resolved<ChallengeReqData>, NonceCheck)>,
) -> Option<Answered> {
    let RelayToPksa::ChallengeReq(r) = &req.frame else {
        return None;
    };
    let (found, nonce) =
        super::resolve(core, &req.account, &r.data, r.token.as_deref(), pre, |p| {
            p.nonce.map(|n| n.0)
        })
        .await;
    let (session, data) = match found {
        Resolved::Found { session, payload } => (session, payload),
        Resolved::Invalid { session, message } => {
            return invalid(core, req, settings, &session, message).await;
        }
        Resolved::NotOurs => return not_ours(core, req),
    };
    let view = session.view();
    let now = now_ms();
    let mut e = audit_entry(req, &view.app);
    e.ops_digest = audit::digest(&data.challenge);
    e.op_types = if data.decrypt == Some(true) {
        "decrypt".into()
    } else {
        "sign".into()
    };
    let who = Who {
        key: &session.key,
        app: &view.app,
        session: Some(&session),
        nonce: reserved(nonce),
    };
    let plan = match super::challenge::decide(
        &data,
        &view,
        nonce,
        &super::Ctx {
            keys,
            settings,
            chain: &core.chain,
            now,
        },
    ) {
        Ok(p) => p,
        Err(r) => return refuse(core, req, settings, who, r, e).await,
    };
    let k = keys.get(plan.role)?;
    let answer = if plan.decrypt {
        match memo::decode(k, &plan.text) {
            Ok(m) if m.keys.is_some() => m.text.expose_secret().to_owned(),
            // Plain text comes back unchanged from memo::decode (as from hive-js): a
            // decrypt request must carry an encrypted memo.
            Ok(_) => {
                let r = Refusal::Memo("cannot decrypt the memo: not an encrypted memo".into());
                return refuse(core, req, settings, who, r, e).await;
            }
            Err(x) => {
                let r = Refusal::Memo(format!("cannot decrypt the memo: {}", x.kind()));
                return refuse(core, req, settings, who, r, e).await;
            }
        }
    } else {
        k.sign_buffer(plan.text.as_bytes()).to_hex()
    };
    let ack = ChallengeAckData {
        pubkey: k
            .public_key()
            .to_string_with_prefix(core.chain.address_prefix()),
        challenge: answer,
    };
    e.decision = "approve".into();
    e.rule = plan.rule.clone();
    e.reason = plan.reason.clone();
    let d = Decided {
        outcome: Outcome::ChallengeAck {
            data: Encrypted::encrypt(&ack, &session.key).as_str().to_owned(),
        },
        audit: e,
        guard: Some(Guard {
            id: view.id,
            account: view.account.clone(),
            app: view.app.clone(),
            nonce: plan.nonce,
            once: None,
        }),
        effect: Effect::None,
        session_id: Some(view.id),
        tx_id: None,
    };
    conclude(core, req, settings, who, d).await.map(|(a, _)| a)
}

// ---------------------------------------------------------------------------------- sign

/// The transactions built on the current head blocks: a new request never gets a
/// transaction another request already got.
///
/// Two requests with the same operations built on the same head block with the same
/// expiration are the same transaction: the node would refuse the second as a duplicate, and
/// both apps would be told theirs went through. Only transactions of the same reference
/// block can be equal, so the set keeps, for the last two head blocks, the next free
/// expiration of each transaction built (keyed by its id at the configured expiration): the
/// n-th identical request is built once, a second later than the one before. For a minute
/// after start, the ids recorded just before it are avoided too.
#[derive(Debug, Default)]
pub(crate) struct SignedSet {
    by_ref: HashMap<(u16, u32), HashMap<u32, u32>>,
    order: Vec<(u16, u32)>,
    seeded: HashSet<String>,
    seeded_until: i64,
}

/// The first 4 bytes of a transaction id: a key, not a proof (two different transactions
/// with the same key only cost one of them a second of expiration), small because the map
/// holds every transaction of the last two head blocks (about 8 bytes each).
fn id_key(id: &str) -> u32 {
    let mut b = [0u8; 4];
    if let Ok(bytes) = hex::decode(id.get(..8).unwrap_or_default()) {
        for (o, i) in b.iter_mut().zip(bytes) {
            *o = i;
        }
    }
    u32::from_le_bytes(b)
}

impl SignedSet {
    /// Ids recorded before a restart, avoided whatever their reference block for a minute.
    pub(crate) fn seed(&mut self, ids: Vec<String>, now: i64) {
        self.seeded = ids.into_iter().collect();
        self.seeded_until = now + 60_000;
    }

    /// The expiration to use for a transaction whose id at the base expiration is `base_id`
    /// (and reserves it).
    fn next(&mut self, r: (u16, u32), base_id: &str, base: u32) -> u32 {
        if !self.by_ref.contains_key(&r) {
            self.order.push(r);
            while self.order.len() > 2 {
                let old = self.order.remove(0);
                self.by_ref.remove(&old);
            }
        }
        let slot = self
            .by_ref
            .entry(r)
            .or_default()
            .entry(id_key(base_id))
            .or_insert(base);
        let secs = *slot;
        *slot = secs.saturating_add(1);
        secs
    }

    fn seeded(&self, id: &str, now: i64) -> bool {
        now < self.seeded_until && self.seeded.contains(id)
    }
}

/// A transaction of `ops` on `head` that no other request got: identical operations get an
/// expiration a second later each (never beyond hived's maximum: then an honest error).
fn distinct_transaction(
    core: &Core,
    head: &HeadBlock,
    ops: Vec<Operation>,
    expire_secs: u32,
) -> Result<(Transaction, String), String> {
    let base = Transaction::new(head, ops, expire_secs).map_err(|e| e.to_string())?;
    let base_id = base.id().map_err(|e| e.to_string())?;
    let r = (base.ref_block_num, base.ref_block_prefix);
    let now = now_ms();
    let mut tx = base;
    let mut id = base_id.clone();
    // Built outside the lock; a few rounds at most (a restart's seeded ids).
    for _ in 0..16 {
        let secs =
            core.signed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .next(r, &base_id, expire_secs);
        if secs > hive_chain::tx::MAX_EXPIRATION_SECS {
            return Err(
                "too many identical transactions on this head block: every expiration up to the maximum is taken"
                    .into(),
            );
        }
        if secs != expire_secs || id != base_id {
            tx.expiration = hive_chain::TimePointSec(head.time.0.saturating_add(secs));
            id = tx.id().map_err(|e| e.to_string())?;
        }
        let seeded = core
            .signed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seeded(&id, now);
        if !seeded {
            return Ok((tx, id));
        }
    }
    Err("no distinct expiration found".into())
}

/// sign_req.
pub(crate) async fn sign(
    core: &Core,
    keys: &AccountKeys,
    req: &Request,
    settings: &Settings,
    pre: Option<(Resolved<SignReqData>, NonceCheck)>,
) -> Option<Answered> {
    let RelayToPksa::SignReq(r) = &req.frame else {
        return None;
    };
    let (found, nonce) =
        super::resolve(core, &req.account, &r.data, r.token.as_deref(), pre, |p| {
            p.nonce.map(|n| n.0)
        })
        .await;
    let (session, data) = match found {
        Resolved::Found { session, payload } => (session, payload),
        Resolved::Invalid { session, message } => {
            return invalid(core, req, settings, &session, message).await;
        }
        Resolved::NotOurs => return not_ours(core, req),
    };
    let view = session.view();
    let now = now_ms();
    let mut e = audit_entry(req, &view.app);
    e.ops_digest = audit::digest(&Value::Array(data.ops.clone()).to_string());
    let ops = Operation::list_from_json(&data.ops).map_err(|x| x.to_string());
    if let Ok(ops) = &ops {
        e.op_types = ops
            .iter()
            .map(Operation::name)
            .collect::<Vec<_>>()
            .join(",");
    }
    let who = Who {
        key: &session.key,
        app: &view.app,
        session: Some(&session),
        nonce: reserved(nonce),
    };
    let plan = match super::sign::decide(
        &data,
        ops,
        &view,
        nonce,
        &super::Ctx {
            keys,
            settings,
            chain: &core.chain,
            now,
        },
    ) {
        Ok(p) => p,
        Err(r) => return refuse(core, req, settings, who, r, e).await,
    };
    let head = match core.head_block().await {
        Ok(h) => h,
        Err(x) => {
            return refuse(core, req, settings, who, Refusal::HiveApi(x.to_string()), e).await;
        }
    };
    let signing_keys: Vec<&PrivateKey> = plan.roles.iter().filter_map(|r| keys.get(*r)).collect();
    let expire_secs = u32::try_from(settings.expiration.as_secs()).unwrap_or(60);
    let built = distinct_transaction(core, &head, plan.ops, expire_secs).and_then(|(tx, id)| {
        let signed = tx
            .sign(&core.chain, &signing_keys)
            .map_err(|x| x.to_string())?;
        let json = signed.to_json().map_err(|x| x.to_string())?;
        Ok((json, id))
    });
    let (tx_json, tx_id) = match built {
        Ok(x) => x,
        Err(m) => return refuse(core, req, settings, who, Refusal::Transaction(m), e).await,
    };
    e.tx_id = Some(tx_id.clone());
    e.decision = "approve".into();
    e.rule = plan.rule.clone();
    e.reason = plan.reason.clone();
    let first = if plan.broadcast {
        Outcome::Signing {
            signed: tx_json.clone(),
            tx_id: tx_id.clone(),
        }
    } else {
        // The app gets its operations back as it wrote them (members in its order, its
        // number and asset spellings): what was signed is their binary form, the same.
        let mut answer = tx_json.clone();
        if let Some(ops) = answer.get_mut("operations") {
            *ops = Value::Array(data.ops.clone());
        }
        Outcome::SignAck {
            broadcast: false,
            data: answer,
        }
    };
    let d = Decided {
        outcome: first,
        audit: e,
        guard: Some(Guard {
            id: view.id,
            account: view.account.clone(),
            app: view.app.clone(),
            nonce: plan.nonce,
            // Without a nonce, the same data is signed once in the session's life.
            once: plan.nonce.is_none().then(|| req.hash.clone()),
        }),
        effect: Effect::Spend(plan.spend),
        session_id: Some(view.id),
        tx_id: Some(tx_id.clone()),
    };
    let (answered, _) = conclude(core, req, settings, who, d).await?;
    if !matches!(answered.outcome, Outcome::Signing { .. }) {
        // Sign-only, or refused when recorded (session ended, spend limit, nonce).
        return Some(answered);
    }
    // The signed transaction is recorded: broadcast it, then record the result.
    let outcome = broadcast_signed(
        core,
        &tx_json,
        &tx_id,
        Some(&session.key),
        req.family,
        settings,
    )
    .await;
    update(core, req, &outcome).await?;
    Some(Answered {
        outcome,
        key: Some(session.key.clone()),
    })
}

/// Replaces a recorded answer with a broadcast's result.
async fn update(core: &Core, req: &Request, outcome: &Outcome) -> Option<()> {
    let (uuid, hash) = (req.uuid.to_string(), req.hash.clone());
    let json = serde_json::to_string(outcome).unwrap_or_default();
    match core
        .store
        .call(move |c| crate::state::answers::set_outcome(c, &uuid, &hash, &json))
        .await
    {
        Ok(()) => Some(()),
        Err(e) => {
            tracing::error!(error = %e, uuid = %req.uuid, "cannot record the broadcast result");
            None
        }
    }
}

/// Records a re-broadcast's result on the answer it re-delivers (and on this uuid's copy).
async fn update_as(
    core: &Core,
    req: &Request,
    a: &crate::state::answers::Answer,
    outcome: &Outcome,
) -> Option<()> {
    let json = serde_json::to_string(outcome).unwrap_or_default();
    let (first, hash, uuid) = (a.uuid.clone(), a.data_hash.clone(), req.uuid.to_string());
    match core
        .store
        .call(move |c| {
            crate::state::answers::set_outcome(c, &first, &hash, &json)?;
            crate::state::answers::set_outcome(c, &uuid, &hash, &json)
        })
        .await
    {
        Ok(()) => Some(()),
        Err(e) => {
            tracing::error!(error = %e, uuid = %req.uuid, "cannot record the broadcast result");
            None
        }
    }
}

/// Broadcasts a recorded signed transaction; the app's answer (an error in fixed text).
async fn broadcast_signed(
    core: &Core,
    signed: &Value,
    tx_id: &str,
    key: Option<&AuthKey>,
    family: Family,
    settings: &Settings,
) -> Outcome {
    use std::sync::atomic::Ordering::Relaxed;
    let fail = |r: Refusal| match key {
        Some(k) => super::reply::refused(&r, family, settings, k),
        None => Outcome::Silent {
            reason: r.audit().2,
        },
    };
    let tx = match <hive_chain::SignedTransaction as serde::Deserialize>::deserialize(signed) {
        Ok(t) => t,
        Err(e) => {
            return fail(Refusal::Transaction(format!(
                "stored transaction unreadable: {e}"
            )));
        }
    };
    let t0 = std::time::Instant::now();
    match core.rpc.broadcast(&tx).await {
        Ok(b) => {
            core.counters.broadcasts_ok.fetch_add(1, Relaxed);
            core.counters.broadcast_latency.observe(t0.elapsed());
            Outcome::SignAck {
                broadcast: true,
                data: Value::String(b.id),
            }
        }
        // Ours went through already (a retry on another node, or a re-delivery after a
        // crash): new requests never share a transaction, so a duplicate is this one.
        Err(RpcError::Node {
            kind: NodeErrorKind::Duplicate,
            ..
        }) => {
            core.counters.broadcasts_ok.fetch_add(1, Relaxed);
            Outcome::SignAck {
                broadcast: true,
                data: Value::String(tx_id.to_owned()),
            }
        }
        Err(e) => {
            core.counters.broadcasts_failed.fetch_add(1, Relaxed);
            tracing::warn!(error = %crate::text::Escaped(&e.to_string()), tx_id, "broadcast failed");
            fail(match e {
                RpcError::Node { kind, .. } => Refusal::Broadcast {
                    kind,
                    detail: e.to_string(),
                },
                RpcError::Unavailable { .. } => Refusal::BroadcastUnavailable(e.to_string()),
                _ => Refusal::Broadcast {
                    kind: NodeErrorKind::Other,
                    detail: e.to_string(),
                },
            })
        }
    }
}

// ----------------------------------------------------------------------------- redelivery

/// A request answered before (this uuid, or the same request through another server): the
/// same answer again, with a POK over this uuid. A signed transaction whose broadcast never
/// finished (a crash, a failover) is broadcast again: the same one, never a new one.
pub(crate) async fn redeliver(
    core: &Core,
    server_key: &PublicKey,
    keys: &AccountKeys,
    req: &Request,
    a: crate::state::answers::Answer,
) -> Option<PksaToRelay> {
    let outcome: Outcome = serde_json::from_str(&a.outcome).ok()?;
    tracing::info!(uuid = %req.uuid, first_uuid = %a.uuid, "re-delivered request: answering with the stored answer");
    core.counters.decision(req.family.cmd(), "redelivered");
    let key = match a.session_id {
        Some(id) => {
            core.sessions.ensure(&core.store, &req.account, false).await;
            core.sessions.by_id(&req.account, id).map(|s| s.key.clone())
        }
        None => None,
    };
    let settings = core.settings();
    if let Outcome::Signing { signed, tx_id } = &outcome {
        let fin = broadcast_signed(core, signed, tx_id, key.as_ref(), req.family, &settings).await;
        update_as(core, req, &a, &fin).await?;
        return super::reply::frame(
            core,
            server_key,
            keys,
            req.family,
            &req.uuid,
            &fin,
            key.as_ref(),
        );
    }
    if a.uuid != req.uuid.as_str() {
        // The same request through another server: recorded under this uuid too.
        let rec = Record {
            uuid: req.uuid.to_string(),
            data_hash: req.hash.clone(),
            account: req.account.clone(),
            cmd: req.family.cmd(),
            expire: req.answer_expire(),
            session_id: a.session_id,
            outcome: a.outcome.clone(),
            tx_id: None,
            audit: Entry::default(),
            guard: None,
            effect: Effect::None,
        };
        let _ = core
            .store
            .call(move |c| decisions::record_copy(c, &rec))
            .await;
    }
    super::reply::frame(
        core,
        server_key,
        keys,
        req.family,
        &req.uuid,
        &outcome,
        key.as_ref(),
    )
}
