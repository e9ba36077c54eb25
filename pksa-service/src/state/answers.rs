//! Stored answers: a re-delivered request (the same uuid, or the same request through another
//! server) gets the answer already given, never a new signature.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, now_ms};

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Request uuid.
    pub uuid: String,
    /// What the request was (command, account, ciphertext), see `decisions::Record`.
    pub data_hash: String,
    /// Which session answered (for re-encrypting nack data).
    pub session_id: Option<i64>,
    /// The outcome (JSON, see `request::Outcome`).
    pub outcome: String,
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Answer> {
    Ok(Answer {
        uuid: r.get(0)?,
        data_hash: r.get(1)?,
        session_id: r.get(2)?,
        outcome: r.get(3)?,
    })
}

/// The answer recorded under this uuid (whatever request it answered: the caller compares
/// `data_hash`), else the answer to the same request under another uuid (through another
/// server).
pub fn find(conn: &Connection, uuid: &str, data_hash: &str) -> Result<Option<Answer>> {
    if let Some(a) = conn
        .prepare_cached("SELECT uuid, data_hash, session_id, outcome FROM answers WHERE uuid = ?1")?
        .query_row([uuid], read)
        .optional()?
    {
        return Ok(Some(a));
    }
    Ok(conn
        .prepare_cached("SELECT uuid, data_hash, session_id, outcome FROM answers WHERE data_hash = ?1 ORDER BY created LIMIT 1")?
        .query_row([data_hash], read)
        .optional()?)
}

/// One answer row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row<'a> {
    /// Request uuid.
    pub uuid: &'a str,
    /// sha256 of the request's command and encrypted data.
    pub data_hash: &'a str,
    /// Account.
    pub account: &'a str,
    /// Command.
    pub cmd: &'a str,
    /// The session that answered.
    pub session_id: Option<i64>,
    /// Outcome JSON.
    pub outcome: &'a str,
    /// The request's expiry (ms).
    pub expire: i64,
    /// The id of the transaction signed, if any.
    pub tx_id: Option<&'a str>,
}

/// Inserts a new answer (a uuid already recorded is left as it is).
pub fn insert(conn: &Connection, a: &Row<'_>) -> Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO answers(uuid, data_hash, account, cmd, session_id, outcome, expire, created, tx_id) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)")?
        .execute(params![a.uuid, a.data_hash, a.account, a.cmd, a.session_id, a.outcome, a.expire, now_ms(), a.tx_id])?;
    Ok(())
}

/// Replaces the outcome of the answer recorded for `uuid` and `data_hash` (a broadcast's
/// result); never another request's.
pub fn set_outcome(conn: &Connection, uuid: &str, data_hash: &str, outcome: &str) -> Result<()> {
    conn.prepare_cached("UPDATE answers SET outcome = ?3 WHERE uuid = ?1 AND data_hash = ?2")?
        .execute(params![uuid, data_hash, outcome])?;
    Ok(())
}

/// Ids of the transactions signed for requests that expired after `since` (ms).
pub fn recent_tx_ids(conn: &Connection, since: i64) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT tx_id FROM answers WHERE expire > ?1 AND tx_id IS NOT NULL")?;
    let rows = stmt.query_map([since], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Removes answers whose request expired more than `keep_ms` ago.
pub fn purge(conn: &Connection, now: i64, keep_ms: i64) -> Result<usize> {
    Ok(conn
        .prepare_cached("DELETE FROM answers WHERE expire < ?1")?
        .execute([now - keep_ms])?)
}
