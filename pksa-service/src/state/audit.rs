//! The audit chain: every decision appended to the store, each row hashed with the previous
//! row's hash, so an edited, inserted or deleted row is detected by [`verify`].
//!
//! The newest row is recorded apart from the table, as the chain's head sealed with the
//! keystore's state key (`meta.audit_head`): deleting the newest rows, which leaves a chain
//! that links, shows as a head the table no longer reaches, and a head rewritten to match
//! needs the state key. Pruning old rows ([`prune`]) keeps the last pruned row's id and hash,
//! sealed likewise, as the anchor the remaining chain starts from.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Result, Sealer, StoreError, now_ms};

const HEAD: &str = "audit_head";
const ANCHOR: &str = "audit_anchor";

/// A sealed (id, hash) mark: `id:hash:mac`.
fn mark(sealer: &Sealer, key: &str, id: i64, hash: &str) -> String {
    let body = format!("{id}:{hash}");
    let mac = sealer.mac(key, &body);
    format!("{body}:{mac}")
}

/// A mark as stored: None when absent; Some(Err) when it does not verify.
fn read_mark(
    conn: &Connection,
    sealer: &Sealer,
    key: &str,
) -> Result<Option<std::result::Result<(i64, String), ()>>> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?;
    Ok(v.map(|v| {
        let mut parts = v.splitn(3, ':');
        let (Some(id), Some(hash), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(());
        };
        let id: i64 = id.parse().map_err(|_| ())?;
        if sealer.mac(key, &format!("{id}:{hash}")) != mac {
            return Err(());
        }
        Ok((id, hash.to_owned()))
    }))
}

fn write_mark(conn: &Connection, sealer: &Sealer, key: &str, id: i64, hash: &str) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?
        .execute(params![key, mark(sealer, key, id, hash)])?;
    Ok(())
}

/// Records the newest row as the head if no head is recorded yet. Called once, when a store
/// from before heads were kept is upgraded (its chain is trusted as it is found then); after
/// that a missing head is a broken chain.
pub fn adopt_head(conn: &Connection, sealer: &Sealer) -> Result<()> {
    if read_mark(conn, sealer, HEAD)?.is_some() {
        return Ok(());
    }
    let last: Option<(i64, String)> = conn
        .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((id, hash)) = last {
        write_mark(conn, sealer, HEAD, id, &hash)?;
    }
    Ok(())
}

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

/// Appends an entry (inside the caller's transaction) and moves the head to it.
pub fn append(conn: &Connection, sealer: &Sealer, e: &Entry) -> Result<i64> {
    append_at(conn, sealer, e, now_ms())
}

fn append_at(conn: &Connection, sealer: &Sealer, e: &Entry, time: i64) -> Result<i64> {
    // The chain goes on from its sealed head, not from whatever row is last in the table:
    // rows deleted after the head stay a visible gap instead of being sealed over.
    let (id, prev) = match read_mark(conn, sealer, HEAD)? {
        Some(Ok((id, h))) => (id + 1, h),
        _ => {
            let last: Option<(i64, String)> = conn
                .prepare_cached("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            match last {
                Some((id, h)) => (id + 1, h),
                None => match read_mark(conn, sealer, ANCHOR)? {
                    Some(Ok((id, h))) => (id + 1, h),
                    _ => (1, GENESIS.to_owned()),
                },
            }
        }
    };
    let hash = row_hash(id, time, e, &prev);
    conn.prepare_cached("INSERT INTO audit(id, time, uuid, account, app, cmd, op_types, ops_digest, decision, rule, reason, tx_id, prev_hash, hash)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)")?.execute(params![id, time, e.uuid, e.account, e.app, e.cmd, e.op_types, e.ops_digest, e.decision, e.rule, e.reason, e.tx_id, prev, hash])?;
    write_mark(conn, sealer, HEAD, id, &hash)?;
    Ok(id)
}

/// Deletes the oldest rows, up to the first one written at or after `before` (ms), keeping
/// the last deleted row's id and hash as the sealed anchor the chain then starts from. Reads
/// only the rows it deletes (and one more); a clock that stepped back cannot make it delete
/// past a newer row. Returns how many rows went.
pub fn prune(conn: &Connection, sealer: &Sealer, before: i64) -> Result<usize> {
    let mut last: Option<(i64, String)> = None;
    {
        let mut stmt = conn.prepare_cached("SELECT id, hash, time FROM audit ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let time: i64 = r.get(2)?;
            if time >= before {
                break;
            }
            last = Some((r.get(0)?, r.get(1)?));
        }
    }
    let Some((id, hash)) = last else {
        return Ok(0);
    };
    let n = conn
        .prepare_cached("DELETE FROM audit WHERE id <= ?1")?
        .execute([id])?;
    write_mark(conn, sealer, ANCHOR, id, &hash)?;
    Ok(n)
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

/// Re-hashes the whole chain from its start (the anchor after pruning): an edited row fails
/// its own hash; an inserted or deleted row breaks the id sequence or the link to the previous
/// hash; deleted newest rows leave the sealed head out of reach.
pub fn verify(conn: &Connection, sealer: &Sealer) -> Result<Verdict> {
    let (mut prev, first) = match read_mark(conn, sealer, ANCHOR)? {
        None => (GENESIS.to_owned(), 1),
        Some(Ok((id, hash))) => (hash, id + 1),
        Some(Err(())) => {
            return Ok(Verdict::Broken {
                id: 0,
                reason: "the anchor of the pruned chain was altered".into(),
            });
        }
    };
    let mut stmt = conn.prepare(&format!("SELECT {COLS} FROM audit ORDER BY id"))?;
    let rows = stmt.query_map([], read_row)?;
    let mut n = 0;
    let mut last_id = first - 1;
    for (expected_id, row) in (first..).zip(rows) {
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
        last_id = row.id;
        n += 1;
    }
    match read_mark(conn, sealer, HEAD)? {
        None if n == 0 => {}
        None => {
            return Ok(Verdict::Broken {
                id: last_id,
                reason: "the chain's sealed head is missing (deleted)".into(),
            });
        }
        Some(Err(())) => {
            return Ok(Verdict::Broken {
                id: last_id,
                reason: "the chain's sealed head was altered".into(),
            });
        }
        Some(Ok((id, hash))) => {
            if id > last_id {
                return Ok(Verdict::Broken {
                    id: last_id + 1,
                    reason: format!(
                        "the newest rows ({} to {id}) were deleted: the sealed head is row {id}",
                        last_id + 1
                    ),
                });
            }
            if id != last_id || hash != prev {
                return Ok(Verdict::Broken {
                    id: last_id,
                    reason: "the newest row is not the sealed head (rows added or edited)".into(),
                });
            }
        }
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
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, uuid TEXT NOT NULL, account TEXT NOT NULL, app TEXT NOT NULL, cmd TEXT NOT NULL, op_types TEXT NOT NULL, ops_digest TEXT NOT NULL, decision TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL, tx_id TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);",
        )
        .unwrap();
        c
    }

    fn sealer() -> Sealer {
        Sealer::new(has_crypto::SecretBytes::new(vec![5; 32]))
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

    fn broken(v: Verdict) -> (i64, String) {
        match v {
            Verdict::Broken { id, reason } => (id, reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tampering_is_detected() {
        let (c, k) = (conn(), sealer());
        for i in 0..5 {
            append(&c, &k, &entry(i)).unwrap();
        }
        assert_eq!(verify(&c, &k).unwrap(), Verdict::Intact { rows: 5 });
        c.execute("UPDATE audit SET decision = 'deny' WHERE id = 3", [])
            .unwrap();
        assert_eq!(broken(verify(&c, &k).unwrap()).0, 3);
        c.execute("UPDATE audit SET decision = 'approve' WHERE id = 3", [])
            .unwrap();
        c.execute("DELETE FROM audit WHERE id = 2", []).unwrap();
        assert_eq!(broken(verify(&c, &k).unwrap()).0, 3);
        // An inserted row is caught.
        let c = conn();
        for i in 0..3 {
            append(&c, &k, &entry(i)).unwrap();
        }
        c.execute("INSERT INTO audit SELECT 10, time, uuid, account, app, cmd, op_types, ops_digest, decision, rule, reason, tx_id, prev_hash, hash FROM audit WHERE id = 3", []).unwrap();
        assert_eq!(broken(verify(&c, &k).unwrap()).0, 10);
    }

    #[test]
    fn deleting_the_newest_rows_is_detected_by_the_sealed_head() {
        let (c, k) = (conn(), sealer());
        for i in 0..5 {
            append(&c, &k, &entry(i)).unwrap();
        }
        c.execute("DELETE FROM audit WHERE id >= 4", []).unwrap();
        let (id, reason) = broken(verify(&c, &k).unwrap());
        assert_eq!(id, 4);
        assert!(
            reason.contains("newest rows (4 to 5) were deleted"),
            "{reason}"
        );
        // Moving the head back needs the state key: a head written without it is refused.
        let other = Sealer::new(has_crypto::SecretBytes::new(vec![6; 32]));
        let last: String = c
            .query_row("SELECT hash FROM audit WHERE id = 3", [], |r| r.get(0))
            .unwrap();
        write_mark(&c, &other, HEAD, 3, &last).unwrap();
        assert!(
            broken(verify(&c, &k).unwrap())
                .1
                .contains("head was altered")
        );
        // Deleting the head too is reported.
        c.execute("DELETE FROM meta WHERE key = 'audit_head'", [])
            .unwrap();
        assert!(
            broken(verify(&c, &k).unwrap())
                .1
                .contains("head is missing")
        );
        // adopt_head trusts what it finds (it runs once, when a store is upgraded).
        adopt_head(&c, &k).unwrap();
        assert_eq!(verify(&c, &k).unwrap(), Verdict::Intact { rows: 3 });
    }

    #[test]
    fn rows_deleted_after_the_head_stay_a_gap_when_the_chain_goes_on() {
        let (c, k) = (conn(), sealer());
        for i in 0..5 {
            append(&c, &k, &entry(i)).unwrap();
        }
        c.execute("DELETE FROM audit WHERE id >= 4", []).unwrap();
        // The service appends the next decision: from the sealed head (row 5), not row 3.
        let id = append(&c, &k, &entry(9)).unwrap();
        assert_eq!(id, 6);
        let (at, reason) = broken(verify(&c, &k).unwrap());
        assert_eq!(at, 6);
        assert!(reason.contains("row 4 is missing"), "{reason}");
    }

    #[test]
    fn pruning_keeps_the_chain_verifiable_from_a_sealed_anchor() {
        let (c, k) = (conn(), sealer());
        for i in 0..6 {
            append_at(&c, &k, &entry(i), 1000 + i64::from(i)).unwrap();
        }
        // Rows of times 1000..1003 go; 1004 and 1005 stay, linked to the anchor (row 4).
        assert_eq!(prune(&c, &k, 1004).unwrap(), 4);
        assert_eq!(verify(&c, &k).unwrap(), Verdict::Intact { rows: 2 });
        assert_eq!(prune(&c, &k, 1004).unwrap(), 0, "nothing more is old");
        // Deleting the first row after the anchor is still caught.
        c.execute("DELETE FROM audit WHERE id = 5", []).unwrap();
        assert_eq!(broken(verify(&c, &k).unwrap()).0, 6);
        // The chain goes on after pruning everything: ids continue from the anchor.
        let (c, k) = (conn(), sealer());
        for i in 0..3 {
            append_at(&c, &k, &entry(i), 1000).unwrap();
        }
        assert_eq!(prune(&c, &k, i64::MAX).unwrap(), 3);
        assert_eq!(verify(&c, &k).unwrap(), Verdict::Intact { rows: 0 });
        append(&c, &k, &entry(9)).unwrap();
        assert_eq!(verify(&c, &k).unwrap(), Verdict::Intact { rows: 1 });
        let id: i64 = c
            .query_row("SELECT id FROM audit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, 4, "ids go on from the anchor");
        // An anchor written without the state key is refused.
        c.execute(
            "UPDATE meta SET value = '1:00:00' WHERE key = 'audit_anchor'",
            [],
        )
        .unwrap();
        assert!(broken(verify(&c, &k).unwrap()).1.contains("anchor"));
    }
}
