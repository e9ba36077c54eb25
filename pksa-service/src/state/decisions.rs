//! Recording a decision: the one write of the request path.
//!
//! In one transaction: the session the decision was made for is re-checked against its row
//! (account, app, expiry, revocation, nonce); the decision's effect is applied (spend
//! counted against its limits, a session created from an enrollment window, renewed or
//! revived); the answer and the audit row are written. If the authoritative state refuses
//! (a [`Conflict`](super::Conflict)), nothing of it is written and the caller records a refusal instead: a
//! stale cache can only turn a decision into a refusal, never into a signature.

use rusqlite::Connection;

use super::audit::{self, Entry};
use super::sessions::{self, Guard, NewSession};
use super::spend::{self, Spend};
use super::{Result, Sealer, answers, enrollments};

/// What a decision changes besides its answer.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Nothing.
    None,
    /// A refused request's nonce is used up (when its session is live).
    ConsumeNonce {
        /// Session id.
        id: i64,
        /// The nonce.
        nonce: i64,
    },
    /// A refused sign request without a nonce: its data is used up all the same (it cannot
    /// be sent again later, when it might be approved).
    ConsumeData {
        /// Session id.
        id: i64,
        /// The request's data hash.
        data_hash: String,
    },
    /// Amounts counted against spend limits (fails when one would be exceeded).
    Spend(Vec<Spend>),
    /// A new session, using one session of an open enrollment window for its account and app.
    Create(Box<NewSession>),
    /// A live session renewed to this expiry.
    Renew {
        /// Session id.
        id: i64,
        /// New expiry (never shorter than the current one).
        expire: i64,
    },
    /// An expired session brought back, using one session of an enrollment window.
    Revive {
        /// Session id.
        id: i64,
        /// Account (for the window).
        account: String,
        /// App (for the window).
        app: String,
        /// New expiry.
        expire: i64,
        /// New renewal cap.
        max_expire: i64,
        /// 0.8 token.
        token: Option<String>,
    },
}

/// One decision to record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Request uuid.
    pub uuid: String,
    /// sha256 of the command, the account and the encrypted data.
    pub data_hash: String,
    /// Account.
    pub account: String,
    /// Command.
    pub cmd: &'static str,
    /// The request's expiry (ms).
    pub expire: i64,
    /// The session that answers (for re-delivery).
    pub session_id: Option<i64>,
    /// Outcome JSON.
    pub outcome: String,
    /// The id of the transaction signed, if any.
    pub tx_id: Option<String>,
    /// The audit row.
    pub audit: Entry,
    /// The session re-checked in this transaction (None: nothing to check).
    pub guard: Option<Guard>,
    /// The effect.
    pub effect: Effect,
}

/// Records `r` (see the module docs) and returns the session that answers (a new session's
/// id when one was created); a [`super::Conflict`] leaves nothing written.
pub fn record(conn: &Connection, sealer: &Sealer, r: &Record, now: i64) -> Result<Option<i64>> {
    if let Some(g) = &r.guard {
        sessions::check_and_use(conn, g, now)?;
    }
    let mut session_id = r.session_id;
    match &r.effect {
        Effect::None => {}
        Effect::ConsumeNonce { id, nonce } => sessions::consume_nonce(conn, *id, *nonce, now)?,
        // Used already or not, it is used now.
        Effect::ConsumeData { id, data_hash } => {
            sessions::consume_data(conn, *id, data_hash)?;
        }
        Effect::Spend(s) => spend::check_and_record(conn, &r.account, &r.uuid, s)?,
        Effect::Create(s) => {
            enrollments::consume(conn, &s.account, &s.app, now)?;
            session_id = Some(sessions::insert(conn, sealer, s)?);
        }
        Effect::Renew { id, expire } => sessions::renew(conn, *id, *expire, now)?,
        Effect::Revive {
            id,
            account,
            app,
            expire,
            max_expire,
            token,
        } => {
            enrollments::consume(conn, account, app, now)?;
            sessions::revive(
                conn,
                *id,
                account,
                *expire,
                *max_expire,
                token.as_deref(),
                now,
            )?;
        }
    }
    answers::insert(
        conn,
        &answers::Row {
            uuid: &r.uuid,
            data_hash: &r.data_hash,
            account: &r.account,
            cmd: r.cmd,
            session_id,
            outcome: &r.outcome,
            expire: r.expire,
            tx_id: r.tx_id.as_deref(),
        },
    )?;
    audit::append(conn, sealer, &r.audit)?;
    Ok(session_id)
}

/// Records under a new uuid the answer already given to the same request through another
/// server (nothing is decided again).
pub fn record_copy(conn: &Connection, r: &Record) -> Result<()> {
    answers::insert(
        conn,
        &answers::Row {
            uuid: &r.uuid,
            data_hash: &r.data_hash,
            account: &r.account,
            cmd: r.cmd,
            session_id: r.session_id,
            outcome: &r.outcome,
            expire: r.expire,
            tx_id: r.tx_id.as_deref(),
        },
    )
}
