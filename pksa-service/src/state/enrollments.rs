//! Enrollment windows: while one is open for an account (and optionally one app), an auth
//! request with a key the service does not know creates a session. A window is single use
//! unless opened for more.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Conflict, Result, StoreError, now_ms};

/// An open window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Id.
    pub id: i64,
    /// Account.
    pub account: String,
    /// Only this app (None: any).
    pub app: Option<String>,
    /// Closes at (ms).
    pub until: i64,
    /// Sessions it may still create (None: any number).
    pub uses_left: Option<i64>,
}

/// Opens a window for `account` (and optionally one app) until `until` (ms), for `uses`
/// sessions (None: any number).
pub fn open(
    conn: &Connection,
    account: &str,
    app: Option<&str>,
    until: i64,
    uses: Option<u32>,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO enrollments(account, app, until, created, uses_left) VALUES (?1,?2,?3,?4,?5)",
    )?
    .execute(params![account, app, until, now_ms(), uses])?;
    Ok(conn.last_insert_rowid())
}

const OPEN: &str = "account = ?1 AND (app IS NULL OR app = ?2) AND until > ?3 AND (uses_left IS NULL OR uses_left > 0)";

/// Whether a window is open for (account, app) at `now`.
pub fn is_open(conn: &Connection, account: &str, app: &str, now: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(&format!("SELECT 1 FROM enrollments WHERE {OPEN}"))?
        .exists(params![account, app, now])?)
}

/// Uses one session of an open window for (account, app) (the one closing first), or
/// [`Conflict::WindowClosed`].
pub fn consume(conn: &Connection, account: &str, app: &str, now: i64) -> Result<()> {
    let id: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT id FROM enrollments WHERE {OPEN} ORDER BY until LIMIT 1"
        ))?
        .query_row(params![account, app, now], |r| r.get(0))
        .optional()?;
    let Some(id) = id else {
        return Err(StoreError::Conflict(Conflict::WindowClosed));
    };
    conn.prepare_cached(
        "UPDATE enrollments SET uses_left = uses_left - 1 WHERE id = ?1 AND uses_left IS NOT NULL",
    )?
    .execute([id])?;
    Ok(())
}

/// Windows still open, oldest first.
pub fn list_open(conn: &Connection, now: i64) -> Result<Vec<Window>> {
    let mut stmt = conn.prepare(
        "SELECT id, account, app, until, uses_left FROM enrollments WHERE until > ?1 AND (uses_left IS NULL OR uses_left > 0) ORDER BY id",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok(Window {
            id: r.get(0)?,
            account: r.get(1)?,
            app: r.get(2)?,
            until: r.get(3)?,
            uses_left: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Closes windows now: one by id, or every window of an account. Returns how many closed.
pub fn close(conn: &Connection, account: Option<&str>, id: Option<i64>) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE enrollments SET until = ?3 WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR id = ?2) AND until > ?3",
        )?
        .execute(params![account, id, now_ms()])?)
}
