//! The schema (versioned migrations), opening a connection, and the state-key check.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::seal::Sealer;
use super::{Result, StoreError, Sync};

const MIGRATIONS: &[&str] = &[
    // 1: sessions, answers, enrollments.
    "CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        app TEXT NOT NULL,
        key_enc BLOB NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        token TEXT,
        expire INTEGER NOT NULL,
        max_expire INTEGER NOT NULL,
        last_nonce INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL,
        last_used INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0,
        origin TEXT NOT NULL
     );
     CREATE INDEX sessions_account ON sessions(account, expire);
     CREATE TABLE answers (
        uuid TEXT PRIMARY KEY,
        data_hash TEXT NOT NULL,
        account TEXT NOT NULL,
        cmd TEXT NOT NULL,
        session_id INTEGER,
        outcome TEXT NOT NULL,
        expire INTEGER NOT NULL,
        created INTEGER NOT NULL
     );
     CREATE INDEX answers_data ON answers(data_hash);
     CREATE INDEX answers_expire ON answers(expire);
     CREATE TABLE enrollments (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        app TEXT,
        until INTEGER NOT NULL,
        created INTEGER NOT NULL
     );",
    // 2: audit chain and spend counters.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        uuid TEXT NOT NULL,
        account TEXT NOT NULL,
        app TEXT NOT NULL,
        cmd TEXT NOT NULL,
        op_types TEXT NOT NULL,
        ops_digest TEXT NOT NULL,
        decision TEXT NOT NULL,
        rule TEXT NOT NULL,
        reason TEXT NOT NULL,
        tx_id TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
     );
     CREATE TABLE spend (
        id INTEGER PRIMARY KEY,
        counter TEXT NOT NULL,
        account TEXT NOT NULL,
        amount INTEGER NOT NULL,
        time INTEGER NOT NULL,
        uuid TEXT NOT NULL
     );
     CREATE INDEX spend_counter ON spend(counter, account, time);",
    // 3: the nonce window of a session (see `sessions::accept_nonce`), single-use enrollment
    // windows, and the id of the transaction an answer signed (new requests never reuse one).
    // Existing sessions keep refusing every nonce up to their last one; existing windows stay
    // unlimited, as they were opened.
    "ALTER TABLE sessions ADD COLUMN nonce_floor INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN recent_nonces BLOB;
     UPDATE sessions SET nonce_floor = last_nonce;
     ALTER TABLE enrollments ADD COLUMN uses_left INTEGER;
     ALTER TABLE answers ADD COLUMN tx_id TEXT;",
    // 4: the audit chain's sealed head is kept (in meta, written by the service: a store
    // upgraded to 4 adopts its newest row once, see `audit::adopt_head`).
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 5: the data of sign requests decided without a nonce, once per session (replays of the
    // same ciphertext are refused for the session's life).
    "CREATE TABLE used_data (
        session_id INTEGER NOT NULL,
        data_hash TEXT NOT NULL,
        PRIMARY KEY (session_id, data_hash)
     ) WITHOUT ROWID;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = 5;

/// Brings the schema to [`SCHEMA_VERSION`]; returns the version the file had.
pub(super) fn migrate(conn: &Connection) -> Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )?;
    let current: usize = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'schema_version'")?
        .query_row([], |r| r.get::<_, String>(0))
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Sql(format!(
            "state schema version {current} is newer than this build ({SCHEMA_VERSION})"
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(current) {
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {m}; INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '{}'); COMMIT;", i + 1))
            .map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                StoreError::Sql(format!("migration {}: {e}", i + 1))
            })?;
    }
    Ok(current)
}

pub(super) fn open_connection(path: &Path, sync: Sync) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Sql(format!("{}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync == Sync::Full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "journal_size_limit", super::wal::WAL_SIZE_LIMIT)?;
    // 512 KiB of page cache (SQLite's default is 2 MiB): the hot pages are the tails of the
    // answers and audit tables and the session index; the rest comes from the OS page cache
    // (through a WAL index of one or two 32 KiB blocks now that the WAL is started over). A/B
    // against 1 MiB, 3 runs each of 20,000 sign-only requests at concurrency 64: 5,183-5,355
    // against 5,012-5,350 req/s, 0.55 MiB less resident.
    conn.pragma_update(None, "cache_size", -512)?;
    // Every hot statement goes through the cache (see `run`): more than rusqlite's default 16.
    conn.set_prepared_statement_cache_capacity(64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(conn)
}

/// What SQLite's quick check says of a file, before anything is written to it: Ok, or
/// Err(Some(problem)) when the file is damaged (a failed check, a corrupt or non-database
/// file), or Err(None) with any other error (busy, out of memory: the file is not judged).
pub(super) fn quick_check(conn: &Connection) -> std::result::Result<(), Option<String>> {
    let first: rusqlite::Result<String> = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0));
    match first {
        Ok(ok) if ok == "ok" => Ok(()),
        Ok(problem) => Err(Some(format!(
            "it fails SQLite's integrity check ({problem})"
        ))),
        Err(rusqlite::Error::SqliteFailure(e, m))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            Err(Some(format!(
                "it is not a readable SQLite database ({})",
                m.unwrap_or_else(|| e.to_string())
            )))
        }
        Err(_) => Err(None),
    }
}

/// Records the state key's check value on first use; refuses a store written with another
/// key (its sessions could not be read: every app would silently lose its session).
pub(super) fn check_state_key(conn: &Connection, sealer: &Sealer, path: &Path) -> Result<()> {
    let ours = sealer.check_value();
    // First use records ours; whatever is stored then (ours, or another process's that won
    // the race, or an older one) decides.
    conn.prepare_cached("INSERT OR IGNORE INTO meta(key, value) VALUES ('state_key_check', ?1)")?
        .execute([&ours])?;
    let stored: String = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'state_key_check'")?
        .query_row([], |r| r.get(0))?;
    if stored == ours {
        Ok(())
    } else {
        Err(StoreError::WrongStateKey(path.display().to_string()))
    }
}
