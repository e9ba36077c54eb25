//! The state store: SQLite (WAL, versioned migrations) behind one writer thread.
//!
//! Every call is a job run inside a transaction; jobs that arrive together share one
//! transaction and one commit (group commit), each inside its own savepoint so one failing
//! job does not undo the others. A call returns only after the commit: what a reply depends
//! on is durable before the reply is sent. The CLI and the service open the same file; WAL
//! and a busy timeout make that safe.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use has_crypto::SecretBytes;
use has_protocol::AuthKey;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// Store errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state store: {0}")]
    Sql(String),
    /// The transaction could not be committed.
    #[error("state store: commit failed: {0}")]
    Commit(String),
    /// The writer thread is gone.
    #[error("state store is closed")]
    Closed,
    /// A session key could not be decrypted with the state key.
    #[error("state store: a session key does not decrypt with this keystore's state key")]
    KeyDecrypt,
    /// The store was sealed with another state key (another keystore).
    #[error(
        "{0}: this state file was written with another keystore's state key; use that keystore, or move the state file away to start with no sessions"
    )]
    WrongStateKey(String),
    /// A rule of the data was broken (e.g. nonce not increasing).
    #[error("{0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e.to_string())
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

type Deliver = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A job: runs on the connection (None = the transaction could not begin) and returns
/// whether it succeeded and how to deliver its result once the commit is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Deliver) + Send>;

/// Durability of commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync on every commit (survives power loss).
    Full,
    /// WAL without fsync per commit (survives a process crash, not a power loss).
    Normal,
}

/// A handle to the store (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    jobs: std_mpsc::Sender<Job>,
    sealer: Sealer,
    path: PathBuf,
}

/// Encrypts session keys at rest with the keystore's state key (ChaCha20-Poly1305).
#[derive(Clone)]
pub struct Sealer {
    key: SecretBytes,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    /// A sealer for a 32-byte state key.
    pub fn new(key: SecretBytes) -> Self {
        Sealer { key }
    }

    fn cipher(&self) -> Option<ChaCha20Poly1305> {
        let k: &[u8; 32] = self.key.expose_secret().try_into().ok()?;
        Some(ChaCha20Poly1305::new(&Key::from(*k)))
    }

    /// nonce(12) ‖ ciphertext.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>> {
        let cipher = self.cipher().ok_or(StoreError::KeyDecrypt)?;
        let mut nonce = [0u8; 12];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut nonce);
        let ct = cipher
            .encrypt(&Nonce::from(nonce), plain)
            .map_err(|_| StoreError::KeyDecrypt)?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] produced.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        let cipher = self.cipher().ok_or(StoreError::KeyDecrypt)?;
        if sealed.len() < 12 {
            return Err(StoreError::KeyDecrypt);
        }
        let (n, ct) = sealed.split_at(12);
        let n: [u8; 12] = n.try_into().map_err(|_| StoreError::KeyDecrypt)?;
        cipher
            .decrypt(&Nonce::from(n), ct)
            .map_err(|_| StoreError::KeyDecrypt)
    }

    /// A keyed hash that identifies the state key without revealing it (kept in the store's
    /// meta table, so a store is never used with another keystore's key).
    fn check_value(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pksa-state-key-check");
        h.update(self.key.expose_secret());
        hex::encode(h.finalize())
    }

    /// A keyed hash of an auth_key (its identity in the store).
    pub fn key_hash(&self, key: &AuthKey) -> String {
        let mut h = Sha256::new();
        h.update(b"pksa-session-key");
        h.update(self.key.expose_secret());
        h.update(key.expose_secret().as_bytes());
        hex::encode(h.finalize())
    }
}

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
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = 2;

fn migrate(conn: &Connection) -> Result<()> {
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
    Ok(())
}

fn open_connection(path: &Path, sync: Sync) -> Result<Connection> {
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
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
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
    migrate(&conn)?;
    Ok(conn)
}

/// Records the state key's check value on first use; refuses a store written with another
/// key (its sessions could not be read: every app would silently lose its session).
fn check_state_key(conn: &Connection, sealer: &Sealer, path: &Path) -> Result<()> {
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

/// When a checkpoint finds the WAL this long (about 4 MB of 4 KiB pages, SQLite's own
/// auto-checkpoint length), it sees that the WAL gets started over (see [`checkpoint_passes`]).
const WAL_RESTART_FRAMES: i64 = 1000;
/// Passes one checkpoint may run to catch up with the writer.
const CHASE_PASSES: usize = 4;
/// A WAL started over is truncated to this size (`journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// What the writer and the checkpoint thread share.
#[derive(Default)]
struct WalState {
    /// Held during a checkpoint pass, and by the writer from its own pass to the end of its next
    /// transaction.
    pass: Mutex<()>,
    /// Set by the checkpoint thread when the WAL is long and its passes could not catch up.
    restart_due: AtomicBool,
}

/// Copies the WAL back into the database after commits (at most ten times a second), and once
/// more when the store closes.
fn checkpointer(conn: Connection, woken: std_mpsc::Receiver<()>, wal: Arc<WalState>) {
    loop {
        match woken.recv() {
            Ok(()) => {
                std::thread::sleep(Duration::from_millis(100));
                // Wake-ups sent during the pause are covered by this checkpoint.
                while woken.try_recv().is_ok() {}
            }
            Err(_) => {
                let _ = run_checkpoint(&conn);
                return;
            }
        }
        let _pass = wal.pass.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = checkpoint_passes(&conn, &wal) {
            tracing::warn!(error = %e, "WAL checkpoint failed (retried after the next commit)");
        }
    }
}

/// One checkpoint, in up to [`CHASE_PASSES`] passive passes when the WAL is long: each pass
/// copies back what came in during the one before (a short tail), until a pass finds nothing
/// new. The WAL is then wholly copied back and the writer's next transaction starts it over.
/// If the writer kept appending throughout, the writer is asked to copy back the last tail.
fn checkpoint_passes(conn: &Connection, wal: &WalState) -> rusqlite::Result<()> {
    let mut last = None;
    for _ in 0..CHASE_PASSES {
        let pass = run_checkpoint(conn)?;
        if pass.log < WAL_RESTART_FRAMES || (pass.complete() && last == Some(pass.log)) {
            return Ok(());
        }
        last = Some(pass.log);
    }
    wal.restart_due.store(true, Ordering::Relaxed);
    Ok(())
}

/// What a passive checkpoint pass reported.
struct Pass {
    /// It could not run (another connection was checkpointing).
    busy: bool,
    /// The WAL's length in frames when the pass began.
    log: i64,
    /// Frames copied back so far.
    copied: i64,
}

impl Pass {
    /// Everything in the WAL when the pass began is copied back.
    fn complete(&self) -> bool {
        !self.busy && self.copied == self.log
    }
}

fn run_checkpoint(conn: &Connection) -> rusqlite::Result<Pass> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok(Pass {
            busy: r.get::<_, i64>(0)? != 0,
            log: r.get(1)?,
            copied: r.get(2)?,
        })
    })
}

/// The writer's side of the checkpoint thread.
struct Checkpoints {
    /// Wakes the thread after a commit.
    wake: std_mpsc::SyncSender<()>,
    wal: Arc<WalState>,
}

impl Checkpoints {
    /// After a commit: wakes the checkpoint thread, and, when the thread's passes could not
    /// catch up with the writer, copies back the short tail the last one left.
    ///
    /// SQLite starts the WAL over only when a transaction begins with all of it copied back. A
    /// passive checkpoint copies back what was committed when it began, and under steady load
    /// the writer commits more during every pass: the WAL used to grow by every commit (1.2 GB
    /// in one run of the e2e bench, with 2.3 MB of WAL index mapped into the process). Here,
    /// between two transactions, nothing can be appended meanwhile. The thread is kept out
    /// until the writer's next transaction has begun (a pass then would hold the lock that
    /// transaction needs to start the WAL over): the hold is returned. If the thread is in a
    /// pass right now, this is tried after the next commit.
    fn committed<'a>(&'a self, conn: &Connection) -> Option<MutexGuard<'a, ()>> {
        let _ = self.wake.try_send(());
        if !self.wal.restart_due.load(Ordering::Relaxed) {
            return None;
        }
        let hold = match self.wal.pass.try_lock() {
            Ok(hold) => hold,
            // A panic while it was held leaves nothing half done here: SQLite's state is in
            // its files.
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        self.wal.restart_due.store(false, Ordering::Relaxed);
        if let Err(e) = run_checkpoint(conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed (retried after the next commit)");
        }
        Some(hold)
    }
}

fn writer(conn: Connection, jobs: std_mpsc::Receiver<Job>, checkpoints: Option<Checkpoints>) {
    // Keeps the checkpoint thread out from the writer's own pass to its next commit.
    let mut hold = None;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = run(&conn, "BEGIN IMMEDIATE") {
            let msg = e.to_string();
            for job in batch {
                let (_, deliver) = job(None);
                deliver(Err(msg.clone()));
            }
            continue;
        }
        let mut delivers = Vec::with_capacity(batch.len());
        for job in batch {
            let _ = run(&conn, "SAVEPOINT job");
            let (ok, deliver) = job(Some(&conn));
            if !ok {
                let _ = run(&conn, "ROLLBACK TO job");
            }
            let _ = run(&conn, "RELEASE job");
            delivers.push(deliver);
        }
        let committed = run(&conn, "COMMIT").map_err(|e| e.to_string());
        drop(hold.take());
        if committed.is_err() {
            let _ = run(&conn, "ROLLBACK");
        } else if let Some(c) = &checkpoints {
            hold = c.committed(&conn);
        }
        for d in delivers {
            d(committed.clone());
        }
    }
}

/// Runs a parameterless statement through the statement cache (the writer runs several per
/// batch: parsing them each time cost more than the writes).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

impl Store {
    /// Opens (creating and migrating) the store at `path`.
    pub fn open(path: &Path, sealer: Sealer, sync: Sync) -> Result<Self> {
        let conn = open_connection(path, sync)?;
        check_state_key(&conn, &sealer, path)?;
        // Checkpoints run on a thread of their own (passive: they never block the writer), so
        // no commit, and no reply waiting for it, stalls while the WAL is copied back.
        let (wake, woken) = std_mpsc::sync_channel::<()>(1);
        let wal = Arc::new(WalState::default());
        let ck = open_connection(path, sync)?;
        // The checkpoint copies pages from the WAL to the file: it needs no page cache.
        ck.pragma_update(None, "cache_size", -64)?;
        let spawned = std::thread::Builder::new()
            .name("pksa-checkpoint".into())
            .spawn({
                let wal = wal.clone();
                move || checkpointer(ck, woken, wal)
            });
        let checkpoints = match spawned {
            Ok(_) => {
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                Some(Checkpoints { wake, wal })
            }
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread: the writer checkpoints");
                None
            }
        };
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pksa-store".into())
            .spawn(move || writer(conn, rx, checkpoints))
            .map_err(|e| StoreError::Sql(e.to_string()))?;
        Ok(Store {
            jobs: tx,
            sealer,
            path: path.to_path_buf(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sealer for session keys.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Runs `f` in a transaction; returns after the commit.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel::<Result<R>>();
        self.submit(f, tx)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The blocking form of [`Store::call`] (for the CLI).
    pub fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel::<Result<R>>();
        self.submit(f, tx)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
        tx: oneshot::Sender<Result<R>>,
    ) -> Result<()> {
        let job: Job = Box::new(move |conn: Option<&Connection>| {
            let r = match conn {
                Some(c) => f(c),
                None => Err(StoreError::Sql("the transaction could not begin".into())),
            };
            let ok = r.is_ok();
            let deliver: Deliver = Box::new(move |committed| {
                let out = match committed {
                    Ok(()) => r,
                    Err(e) => Err(StoreError::Commit(e)),
                };
                let _ = tx.send(out);
            });
            (ok, deliver)
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)
    }
}

/// SQLite's `data_version`: changes when another connection (another process) commits.
pub fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A session row (without its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Id.
    pub id: i64,
    /// Account.
    pub account: String,
    /// App name.
    pub app: String,
    /// Expiry (ms).
    pub expire: i64,
    /// Renewal cap (ms).
    pub max_expire: i64,
    /// Last accepted nonce.
    pub last_nonce: i64,
    /// Created (ms).
    pub created: i64,
    /// Last used (ms).
    pub last_used: Option<i64>,
    /// Revoked.
    pub revoked: bool,
    /// How it was made: enroll, secret, operator, import.
    pub origin: String,
    /// 0.8 token.
    pub token: Option<String>,
}

const SESSION_COLS: &str =
    "id, account, app, expire, max_expire, last_nonce, created, last_used, revoked, origin, token";

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        account: r.get(1)?,
        app: r.get(2)?,
        expire: r.get(3)?,
        max_expire: r.get(4)?,
        last_nonce: r.get(5)?,
        created: r.get(6)?,
        last_used: r.get(7)?,
        revoked: r.get::<_, i64>(8)? != 0,
        origin: r.get(9)?,
        token: r.get(10)?,
    })
}

/// Session queries (run inside a store job).
pub mod sessions {
    use super::*;

    /// Inserts a session. Returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        conn: &Connection,
        sealer: &Sealer,
        account: &str,
        app: &str,
        key: &AuthKey,
        expire: i64,
        max_expire: i64,
        origin: &str,
        token: Option<&str>,
        last_nonce: i64,
    ) -> Result<i64> {
        let sealed = sealer.seal(key.expose_secret().as_bytes())?;
        conn.prepare_cached("INSERT INTO sessions(account, app, key_enc, key_hash, token, expire, max_expire, last_nonce, created, origin) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)")?.execute(params![account, app, sealed, sealer.key_hash(key), token, expire, max_expire, last_nonce, now_ms(), origin])?;
        Ok(conn.last_insert_rowid())
    }

    /// A session by id.
    pub fn get(conn: &Connection, id: i64) -> Result<Option<SessionRow>> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"
            ))?
            .query_row([id], session_row)
            .optional()?)
    }

    /// A session by its key.
    pub fn by_key(conn: &Connection, sealer: &Sealer, key: &AuthKey) -> Result<Option<SessionRow>> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {SESSION_COLS} FROM sessions WHERE key_hash = ?1"
            ))?
            .query_row([sealer.key_hash(key)], session_row)
            .optional()?)
    }

    /// Live (not expired, not revoked) sessions of an account, with their keys.
    pub fn live_with_keys(
        conn: &Connection,
        sealer: &Sealer,
        account: &str,
        now: i64,
    ) -> Result<Vec<(SessionRow, AuthKey)>> {
        let mut stmt = conn.prepare(&format!(
            "SELECT {SESSION_COLS}, key_enc FROM sessions WHERE account = ?1 AND expire > ?2 AND revoked = 0 ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![account, now], |r| {
            Ok((session_row(r)?, r.get::<_, Vec<u8>>(11)?))
        })?;
        let mut out = vec![];
        for row in rows {
            let (s, sealed) = row?;
            // One unreadable row (sealed under another key, damaged) must not take every
            // other session of the account down with it: it is skipped (and unusable).
            match sealer
                .open(&sealed)
                .and_then(|p| String::from_utf8(p).map_err(|_| StoreError::KeyDecrypt))
            {
                Ok(text) => out.push((s, AuthKey::new(text))),
                Err(_) => tracing::error!(
                    session = s.id,
                    account = %s.account,
                    "a session key does not decrypt with this keystore's state key; skipped"
                ),
            }
        }
        Ok(out)
    }

    /// The live session of an account that has this key, if any.
    pub fn live_by_key(
        conn: &Connection,
        sealer: &Sealer,
        account: &str,
        key: &AuthKey,
        now: i64,
    ) -> Result<Option<SessionRow>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE key_hash = ?1 AND account = ?2 AND expire > ?3 AND revoked = 0"
        ))?;
        Ok(stmt
            .query_row(params![sealer.key_hash(key), account, now], session_row)
            .optional()?)
    }

    /// All sessions (optionally of one account), newest first.
    pub fn list(conn: &Connection, account: Option<&str>) -> Result<Vec<SessionRow>> {
        let mut stmt = conn.prepare(&format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE (?1 IS NULL OR account = ?1) ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([account], session_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Revokes a session. Returns whether it existed.
    pub fn revoke(conn: &Connection, id: i64) -> Result<bool> {
        Ok(conn
            .prepare_cached("UPDATE sessions SET revoked = 1 WHERE id = ?1")?
            .execute([id])?
            > 0)
    }

    /// Records a use and a new expiry.
    pub fn touch(conn: &Connection, id: i64, expire: i64) -> Result<()> {
        conn.prepare_cached("UPDATE sessions SET expire = ?2, last_used = ?3 WHERE id = ?1")?
            .execute(params![id, expire, now_ms()])?;
        Ok(())
    }

    /// Accepts `nonce` only if it is greater than the session's last nonce, and stores it.
    pub fn advance_nonce(conn: &Connection, id: i64, nonce: i64) -> Result<()> {
        let n = conn.prepare_cached("UPDATE sessions SET last_nonce = ?2, last_used = ?3 WHERE id = ?1 AND last_nonce < ?2 AND revoked = 0")?.execute(params![id, nonce, now_ms()])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(
                "nonce is not greater than the last one used".into(),
            ))
        }
    }

    /// Records a nonce that was already reserved in arrival order (see
    /// `service::CachedSession::reserve`): the stored value only grows, so requests that
    /// commit out of order cannot lower it. Fails if the session was revoked meanwhile.
    pub fn record_nonce(conn: &Connection, id: i64, nonce: i64) -> Result<()> {
        let n = conn.prepare_cached("UPDATE sessions SET last_nonce = MAX(last_nonce, ?2), last_used = ?3 WHERE id = ?1 AND revoked = 0")?.execute(params![id, nonce, now_ms()])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict("the session was revoked".into()))
        }
    }
}

/// Stored answers (re-delivery without re-signing).
pub mod answers {
    use super::*;

    /// A stored answer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Answer {
        /// Request uuid.
        pub uuid: String,
        /// Which session answered (for re-encrypting nack data).
        pub session_id: Option<i64>,
        /// The outcome (JSON, see `handlers::Outcome`).
        pub outcome: String,
    }

    /// By uuid.
    pub fn get(conn: &Connection, uuid: &str) -> Result<Option<Answer>> {
        Ok(conn
            .prepare_cached("SELECT uuid, session_id, outcome FROM answers WHERE uuid = ?1")?
            .query_row([uuid], |r| {
                Ok(Answer {
                    uuid: r.get(0)?,
                    session_id: r.get(1)?,
                    outcome: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// By the hash of the encrypted request data (the same request through another server).
    pub fn by_data(conn: &Connection, data_hash: &str) -> Result<Option<Answer>> {
        Ok(conn
            .prepare_cached("SELECT uuid, session_id, outcome FROM answers WHERE data_hash = ?1 ORDER BY created LIMIT 1")?.query_row([data_hash], |r| {
                Ok(Answer { uuid: r.get(0)?, session_id: r.get(1)?, outcome: r.get(2)? })
            })
            .optional()?)
    }

    /// Inserts or replaces.
    #[allow(clippy::too_many_arguments)]
    pub fn put(
        conn: &Connection,
        uuid: &str,
        data_hash: &str,
        account: &str,
        cmd: &str,
        session_id: Option<i64>,
        outcome: &str,
        expire: i64,
    ) -> Result<()> {
        conn.prepare_cached("INSERT OR REPLACE INTO answers(uuid, data_hash, account, cmd, session_id, outcome, expire, created) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)")?.execute(params![uuid, data_hash, account, cmd, session_id, outcome, expire, now_ms()])?;
        Ok(())
    }

    /// Removes answers whose request expired more than `keep_ms` ago.
    pub fn purge(conn: &Connection, now: i64, keep_ms: i64) -> Result<usize> {
        Ok(conn
            .prepare_cached("DELETE FROM answers WHERE expire < ?1")?
            .execute([now - keep_ms])?)
    }
}

/// Enrollment windows.
pub mod enrollments {
    use super::*;

    /// An open window: (id, account, app, until).
    pub type Window = (i64, String, Option<String>, i64);

    /// Opens a window for `account` (and optionally one app) until `until` (ms).
    pub fn open(conn: &Connection, account: &str, app: Option<&str>, until: i64) -> Result<i64> {
        conn.prepare_cached(
            "INSERT INTO enrollments(account, app, until, created) VALUES (?1,?2,?3,?4)",
        )?
        .execute(params![account, app, until, now_ms()])?;
        Ok(conn.last_insert_rowid())
    }

    /// Whether a window is open for (account, app) at `now`.
    pub fn is_open(conn: &Connection, account: &str, app: &str, now: i64) -> Result<bool> {
        let n: i64 = conn.prepare_cached("SELECT COUNT(*) FROM enrollments WHERE account = ?1 AND (app IS NULL OR app = ?2) AND until > ?3")?.query_row(params![account, app, now], |r| r.get(0))?;
        Ok(n > 0)
    }

    /// Windows still open: (id, account, app, until).
    pub fn list_open(conn: &Connection, now: i64) -> Result<Vec<Window>> {
        let mut stmt = conn.prepare(
            "SELECT id, account, app, until FROM enrollments WHERE until > ?1 ORDER BY until",
        )?;
        let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Closes every window of an account now.
    pub fn close(conn: &Connection, account: &str) -> Result<usize> {
        Ok(conn
            .prepare_cached("UPDATE enrollments SET until = ?2 WHERE account = ?1 AND until > ?2")?
            .execute(params![account, now_ms()])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A live session (one minute) of `account` for `app`.
    fn insert(
        c: &Connection,
        sealer: &Sealer,
        account: &str,
        app: &str,
        key: &AuthKey,
    ) -> Result<i64> {
        let exp = now_ms() + 60_000;
        sessions::insert(c, sealer, account, app, key, exp, exp, "enroll", None, 0)
    }

    /// The live sessions of `account`, with their keys.
    async fn live_with_keys(s: &Store, account: &str) -> Vec<(SessionRow, AuthKey)> {
        let (sealer, account) = (s.sealer().clone(), account.to_owned());
        s.call(move |c| sessions::live_with_keys(c, &sealer, &account, now_ms()))
            .await
            .unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            &dir.path().join("s.sqlite"),
            Sealer::new(SecretBytes::new(vec![7; 32])),
            Sync::Normal,
        )
        .unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn commits_are_checkpointed_into_the_database_file_off_the_writer() {
        let (_d, s) = store();
        let size = || std::fs::metadata(s.path()).map(|m| m.len()).unwrap_or(0);
        let before = size();
        for i in 0..50 {
            let sealer = s.sealer().clone();
            s.call(move |c| {
                for j in 0..10 {
                    insert(
                        c,
                        &sealer,
                        &format!("acct{i}"),
                        &format!("app{j}"),
                        &AuthKey::generate(),
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        }
        // 500 sessions are far below SQLite's own 1000-page auto-checkpoint (which the writer
        // no longer runs): only the checkpoint thread can have copied them back.
        let t0 = std::time::Instant::now();
        while size() <= before {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the WAL was not checkpointed ({before} bytes)"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_wal_stays_bounded_under_continuous_commits() {
        // Commits that never pause: every checkpoint pass of the thread ends behind the writer.
        // Unless the writer starts the WAL over, the WAL grows with everything written
        // (1.2 GB after the e2e bench once). Writing goes on until the WAL has been started
        // over twice, or until 256 MB went through it (a WAL never started over).
        use std::sync::atomic::AtomicUsize;
        const VALUE: usize = 16 * 1024;
        const CAP: usize = 256 << 20;
        let (_d, s) = store();
        let s = Arc::new(s);
        let wal = s.path().with_extension("sqlite-wal");
        let written = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..4 {
            let (s, written, stop) = (s.clone(), written.clone(), stop.clone());
            tasks.spawn(async move {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let value = format!("{t:02}-{i:07}-").repeat(VALUE / 11);
                    s.call(move |c| {
                        c.execute(
                            "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
                            params![format!("bulk{}", (t * 16 + i % 16)), value],
                        )?;
                        Ok(())
                    })
                    .await
                    .unwrap();
                    written.fetch_add(VALUE, Ordering::Relaxed);
                }
            });
        }
        // A WAL started over gets new salts in its header (bytes 16..24).
        let mut salts = std::collections::HashSet::new();
        let mut largest = 0;
        while salts.len() < 3 && written.load(Ordering::Relaxed) < CAP {
            tokio::time::sleep(Duration::from_millis(5)).await;
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            let mut head = [0u8; 24];
            if std::fs::File::open(&wal)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok()
            {
                salts.insert(head[16..].to_vec());
            }
        }
        stop.store(true, Ordering::Relaxed);
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let written = written.load(Ordering::Relaxed);
        assert!(
            salts.len() >= 3,
            "the WAL was started over {} times while {written} bytes went through it (largest {largest} bytes)",
            salts.len().saturating_sub(1)
        );
    }

    #[tokio::test]
    async fn a_store_refuses_another_state_key_and_skips_unreadable_rows() {
        let (_d, s) = store();
        let path = s.path().to_path_buf();
        // Another keystore's key: refused at open, naming the file.
        let e = Store::open(
            &path,
            Sealer::new(SecretBytes::new(vec![8; 32])),
            Sync::Normal,
        )
        .unwrap_err();
        assert!(matches!(e, StoreError::WrongStateKey(_)), "{e}");
        assert!(e.to_string().contains("s.sqlite"), "{e}");
        // The right key opens it again.
        drop(
            Store::open(
                &path,
                Sealer::new(SecretBytes::new(vec![7; 32])),
                Sync::Normal,
            )
            .unwrap(),
        );
        // A row sealed under another key (a store from before the check, a damaged row) is
        // skipped; the account's other sessions still load.
        let good = AuthKey::generate();
        let (sealer, g) = (s.sealer().clone(), good.clone());
        let foreign = Sealer::new(SecretBytes::new(vec![9; 32]));
        s.call(move |c| {
            insert(c, &foreign, "alice", "old", &AuthKey::generate())?;
            insert(c, &sealer, "alice", "app", &g)
        })
        .await
        .unwrap();
        let live = live_with_keys(&s, "alice").await;
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1, good);
        assert_eq!(live[0].0.app, "app");
    }

    #[tokio::test]
    async fn sessions_keys_sealed_and_nonce_strict() {
        let (_d, s) = store();
        let sealer = s.sealer().clone();
        let key = AuthKey::generate();
        let k2 = key.clone();
        let id = s
            .call(move |c| {
                sessions::insert(
                    c,
                    &sealer,
                    "alice",
                    "app",
                    &k2,
                    now_ms() + 60_000,
                    now_ms() + 120_000,
                    "enroll",
                    None,
                    0,
                )
            })
            .await
            .unwrap();
        let live = live_with_keys(&s, "alice").await;
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1, key);
        s.call(move |c| sessions::advance_nonce(c, id, 10))
            .await
            .unwrap();
        let e = s
            .call(move |c| sessions::advance_nonce(c, id, 10))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)));
        s.call(move |c| sessions::advance_nonce(c, id, 11))
            .await
            .unwrap();
        // The key is not in the file in clear.
        let bytes = std::fs::read(s.path()).unwrap_or_default();
        let wal = std::fs::read(s.path().with_extension("sqlite-wal")).unwrap_or_default();
        let needle = key.expose_secret().as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle)
                && !wal.windows(needle.len()).any(|w| w == needle)
        );
        // A failing job in a batch does not undo the others.
        let a = s.call(move |c| sessions::advance_nonce(c, id, 5));
        let b = s.call(move |c| sessions::advance_nonce(c, id, 12));
        let (a, b) = tokio::join!(a, b);
        assert!(a.is_err() && b.is_ok());
        let row = s
            .call(move |c| sessions::get(c, id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.last_nonce, 12);
    }

    #[tokio::test]
    async fn enrollment_windows() {
        let (_d, s) = store();
        s.call(|c| enrollments::open(c, "alice", Some("game"), now_ms() + 60_000))
            .await
            .unwrap();
        assert!(
            s.call(|c| enrollments::is_open(c, "alice", "game", now_ms()))
                .await
                .unwrap()
        );
        assert!(
            !s.call(|c| enrollments::is_open(c, "alice", "other", now_ms()))
                .await
                .unwrap()
        );
        assert!(
            !s.call(|c| enrollments::is_open(c, "alice", "game", now_ms() + 61_000))
                .await
                .unwrap()
        );
        s.call(|c| enrollments::close(c, "alice")).await.unwrap();
        assert!(
            !s.call(|c| enrollments::is_open(c, "alice", "game", now_ms()))
                .await
                .unwrap()
        );
    }
}
