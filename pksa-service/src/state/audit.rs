//! The audit chain: every decision appended to the store, each row hashed with the previous
//! row's hash, so an edited, inserted or deleted row is detected by [`verify`].

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Result, StoreError, now_ms};

/// What is recorded for one decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Request uuid.
    pub uuid: String,
    /// Account.
    pub account: String,
    /// App name (or "?" when no session was found).
    pub app: String,
    /// Command (auth_req, sign_req, challenge_req).
    pub cmd: String,
    /// Operation types, comma-separated (sign_req).
    pub op_types: String,
    /// sha256 of the operations JSON (or of the challenge text).
    pub ops_digest: String,
    /// approve / deny / error / silent.
    pub decision: String,
    /// Rule id.
    pub rule: String,
    /// Reason.
    pub reason: String,
    /// Transaction id when one was signed.
    pub tx_id: Option<String>,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Row id.
    pub id: i64,
    /// Time (ms).
    pub time: i64,
    /// The entry.
    pub entry: Entry,
    /// Previous row's hash.
    pub prev_hash: String,
    /// This row's hash.
    pub hash: String,
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn row_hash(id: i64, time: i64, e: &Entry, prev: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        id.to_string().as_str(),
        time.to_string().as_str(),
        &e.uuid,
        &e.account,
        &e.app,
        &e.cmd,
        &e.op_types,
        &e.ops_digest,
        &e.decision,
        &e.rule,
        &e.reason,
        e.tx_id.as_deref().unwrap_or(""),
        prev,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends an entry (inside the caller's transaction).
pub fn append(conn: &Connection, e: &Entry) -> Result<i64> {
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (id, prev) = match last {
        Some((id, h)) => (id + 1, h),
        None => (1, GENESIS.to_owned()),
    };
    let time = now_ms();
    let hash = row_hash(id, time, e, &prev);
    conn.prepare_cached("INSERT INTO audit(id, time, uuid, account, app, cmd, op_types, ops_digest, decision, rule, reason, tx_id, prev_hash, hash)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)")?.execute(params![id, time, e.uuid, e.account, e.app, e.cmd, e.op_types, e.ops_digest, e.decision, e.rule, e.reason, e.tx_id, prev, hash])?;
    Ok(id)
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        time: r.get(1)?,
        entry: Entry {
            uuid: r.get(2)?,
            account: r.get(3)?,
            app: r.get(4)?,
            cmd: r.get(5)?,
            op_types: r.get(6)?,
            ops_digest: r.get(7)?,
            decision: r.get(8)?,
            rule: r.get(9)?,
            reason: r.get(10)?,
            tx_id: r.get(11)?,
        },
        prev_hash: r.get(12)?,
        hash: r.get(13)?,
    })
}

const COLS: &str = "id, time, uuid, account, app, cmd, op_types, ops_digest, decision, rule, reason, tx_id, prev_hash, hash";

/// Rows filtered by account, app and time (ms), oldest first.
pub fn list(
    conn: &Connection,
    account: Option<&str>,
    app: Option<&str>,
    since: Option<i64>,
) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM audit WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR app = ?2) AND (?3 IS NULL OR time >= ?3) ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![account, app, since], read_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The chain is intact.
    Intact {
        /// Rows checked.
        rows: usize,
    },
    /// The first broken row and why.
    Broken {
        /// Row id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
}

/// Re-hashes the whole chain: an edited row fails its own hash; an inserted or deleted row
/// breaks the id sequence or the link to the previous hash.
pub fn verify(conn: &Connection) -> Result<Verdict> {
    let mut stmt = conn.prepare(&format!("SELECT {COLS} FROM audit ORDER BY id"))?;
    let rows = stmt.query_map([], read_row)?;
    let mut prev = GENESIS.to_owned();
    let mut n = 0;
    for (expected_id, row) in (1i64..).zip(rows) {
        let row = row.map_err(StoreError::from)?;
        if row.id != expected_id {
            return Ok(Verdict::Broken {
                id: row.id,
                reason: format!("row {expected_id} is missing (deleted) or ids were changed"),
            });
        }
        if row.prev_hash != prev {
            return Ok(Verdict::Broken { id: row.id, reason: "does not link to the previous row (a row before it was deleted, inserted or edited)".into() });
        }
        if row_hash(row.id, row.time, &row.entry, &row.prev_hash) != row.hash {
            return Ok(Verdict::Broken {
                id: row.id,
                reason: "its content does not match its hash (edited)".into(),
            });
        }
        prev = row.hash;
        n += 1;
    }
    Ok(Verdict::Intact { rows: n })
}

/// sha256 hex of some text (the operations digest).
pub fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, uuid TEXT NOT NULL, account TEXT NOT NULL, app TEXT NOT NULL, cmd TEXT NOT NULL, op_types TEXT NOT NULL, ops_digest TEXT NOT NULL, decision TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL, tx_id TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);",
        )
        .unwrap();
        c
    }

    fn entry(i: u32) -> Entry {
        Entry {
            uuid: format!("u{i}"),
            account: "alice".into(),
            app: "app".into(),
            cmd: "sign_req".into(),
            decision: "approve".into(),
            rule: "default".into(),
            reason: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn tampering_is_detected() {
        let c = conn();
        for i in 0..5 {
            append(&c, &entry(i)).unwrap();
        }
        assert_eq!(verify(&c).unwrap(), Verdict::Intact { rows: 5 });
        c.execute("UPDATE audit SET decision = 'deny' WHERE id = 3", [])
            .unwrap();
        assert!(matches!(verify(&c).unwrap(), Verdict::Broken { id: 3, .. }));
        c.execute("UPDATE audit SET decision = 'approve' WHERE id = 3", [])
            .unwrap();
        c.execute("DELETE FROM audit WHERE id = 2", []).unwrap();
        assert!(matches!(verify(&c).unwrap(), Verdict::Broken { id: 3, .. }));
        // Deleting the last row is only detectable against an external anchor; a deleted
        // middle row and an inserted row are caught.
        let c = conn();
        for i in 0..3 {
            append(&c, &entry(i)).unwrap();
        }
        c.execute("INSERT INTO audit SELECT 10, time, uuid, account, app, cmd, op_types, ops_digest, decision, rule, reason, tx_id, prev_hash, hash FROM audit WHERE id = 3", []).unwrap();
        assert!(matches!(
            verify(&c).unwrap(),
            Verdict::Broken { id: 10, .. }
        ));
    }
}
