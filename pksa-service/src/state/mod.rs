//! The state store: SQLite (WAL, versioned migrations) behind one writer thread. All SQL of the
//! service lives in this module's files.
//!
//! Every call is a job run inside a transaction; jobs that arrive together share one
//! transaction and one commit (group commit), each inside its own savepoint so one failing
//! job does not undo the others. A call returns only after the commit: what a reply depends
//! on is durable before the reply is sent. The CLI and the service open the same file; WAL
//! and a busy timeout make that safe.
//!
//! The request path writes through one typed call, [`decisions::record`]: the answer, the
//! audit row, and the decision's effect, after re-checking the session it was decided for
//! (account, app, expiry, revocation, nonce) in the same transaction.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::oneshot;

pub mod answers;
pub mod audit;
pub mod decisions;
pub mod enrollments;
mod schema;
mod seal;
pub mod sessions;
pub mod spend;
mod wal;

pub use schema::SCHEMA_VERSION;
pub use seal::Sealer;
pub use sessions::SessionRow;

use wal::{Checkpoints, WalState};

/// Why a decision could not be recorded as decided: the authoritative state says no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// The session is gone, revoked, expired, or not the account's or app's the request was
    /// decided for.
    Session(&'static str),
    /// The nonce was already used (or is older than the session's nonce window).
    NonceUsed,
    /// A spend limit would be exceeded (the text names it).
    SpendLimit(String),
    /// The enrollment window closed or has no use left.
    WindowClosed,
    /// The auth_key belongs to another session.
    KeyInUse,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conflict::Session(why) => write!(f, "session {why}"),
            Conflict::NonceUsed => f.write_str("nonce already used"),
            Conflict::SpendLimit(s) => f.write_str(s),
            Conflict::WindowClosed => f.write_str("the enrollment window closed"),
            Conflict::KeyInUse => f.write_str("the auth_key belongs to another session"),
        }
    }
}

/// Store errors.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
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
    /// The authoritative state refuses what was decided.
    #[error("{0}")]
    Conflict(Conflict),
    /// The state file exists but cannot be used as it is: empty, not a database, or failing
    /// SQLite's integrity check. Refused rather than taken as new (sessions and the audit
    /// would be silently gone) or served half broken.
    #[error(
        "{file}: {why}. Restore it from a backup (a copy made with sqlite3's .backup), or start with no sessions, answers or audit with --new-state (the damaged file is kept next to it as {file}.damaged-<time>)"
    )]
    Damaged {
        /// The file.
        file: String,
        /// What is wrong with it.
        why: String,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e.to_string())
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

type Deliver = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// How a job ended.
enum Ran {
    /// It succeeded.
    Ok,
    /// The data said no (a [`Conflict`]): the store is fine.
    Refused,
    /// SQLite failed (a dropped table, a corrupt page, a full disk): the store is not.
    Failed(String),
}

/// A job: runs on the connection (None = the transaction could not begin) and returns how it
/// ended and how to deliver its result once the commit is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (Ran, Deliver) + Send>;

/// Durability of commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync on every commit (survives power loss).
    Full,
    /// WAL without fsync per commit (survives a process crash, not a power loss).
    Normal,
}

/// Whether the store works: the last write committed, and no statement failed since
/// (readiness without a write per probe).
#[derive(Debug, Default)]
pub struct WriteHealth {
    failed: AtomicBool,
    reason: Mutex<String>,
}

impl WriteHealth {
    fn fail(&self, why: &str) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %why, "the state store failed: not ready");
        }
        if let Ok(mut m) = self.reason.lock() {
            *m = why.to_owned();
        }
    }

    fn set(&self, r: &std::result::Result<(), String>) {
        match r {
            Ok(()) => {
                if self.failed.swap(false, Ordering::Relaxed) {
                    tracing::info!("state store writable again");
                }
            }
            Err(e) => self.fail(e),
        }
    }

    /// None when the last commit succeeded (or none was made yet), else why it failed.
    pub fn last_failure(&self) -> Option<String> {
        self.failed
            .load(Ordering::Relaxed)
            .then(|| self.reason.lock().map(|m| m.clone()).unwrap_or_default())
    }
}

/// A handle to the store (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    jobs: std_mpsc::Sender<Job>,
    sealer: Sealer,
    path: PathBuf,
    health: Arc<WriteHealth>,
}

fn writer(
    conn: Connection,
    jobs: std_mpsc::Receiver<Job>,
    checkpoints: Option<Checkpoints>,
    health: Arc<WriteHealth>,
) {
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
            health.set(&Err(msg.clone()));
            for job in batch {
                let (_, deliver) = job(None);
                deliver(Err(msg.clone()));
            }
            continue;
        }
        let mut delivers = Vec::with_capacity(batch.len());
        let (mut failure, before) = (None, conn.total_changes());
        for job in batch {
            let _ = run(&conn, "SAVEPOINT job");
            let (ran, deliver) = job(Some(&conn));
            match ran {
                Ran::Ok => {}
                Ran::Refused => {
                    let _ = run(&conn, "ROLLBACK TO job");
                }
                Ran::Failed(e) => {
                    let _ = run(&conn, "ROLLBACK TO job");
                    failure = Some(e);
                }
            }
            let _ = run(&conn, "RELEASE job");
            delivers.push(deliver);
        }
        let wrote = conn.total_changes() > before;
        let committed = run(&conn, "COMMIT").map_err(|e| e.to_string());
        match (&failure, &committed) {
            (Some(e), _) => health.fail(e),
            // A batch that only read proves nothing about writing.
            (None, Ok(())) if !wrote => {}
            (None, c) => health.set(c),
        }
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

/// Refuses a state file that exists but is empty (SQLite would take it as a new database).
fn inspect(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Err(StoreError::Damaged {
            file: path.display().to_string(),
            why: "the state file is empty (0 bytes)".into(),
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating and migrating) the store at `path`. An existing file that is empty,
    /// not a database or failing SQLite's integrity check is refused
    /// ([`StoreError::Damaged`]).
    pub fn open(path: &Path, sealer: Sealer, sync: Sync) -> Result<Self> {
        inspect(path)?;
        let damaged = |why: String| StoreError::Damaged {
            file: path.display().to_string(),
            why,
        };
        let conn = schema::open_connection(path, sync).map_err(|e| match e {
            StoreError::Sql(m) if m.contains("not a database") || m.contains("malformed") => {
                damaged(format!("it is not a readable SQLite database ({m})"))
            }
            other => other,
        })?;
        // Checked before anything is written to it (the migrations write).
        match schema::quick_check(&conn) {
            Ok(()) => {}
            Err(Some(why)) => return Err(damaged(why)),
            Err(None) => {
                return Err(StoreError::Sql(format!(
                    "{}: cannot check the state file right now",
                    path.display()
                )));
            }
        }
        let was = schema::migrate(&conn)?;
        schema::check_state_key(&conn, &sealer, path)?;
        if was < 4 {
            audit::adopt_head(&conn, &sealer)?;
        }
        // Checkpoints run on a thread of their own (passive: they never block the writer), so
        // no commit, and no reply waiting for it, stalls while the WAL is copied back.
        let (wake, woken) = std_mpsc::sync_channel::<()>(1);
        let wal = Arc::new(WalState::default());
        let ck = schema::open_connection(path, sync)?;
        // The checkpoint copies pages from the WAL to the file: it needs no page cache.
        ck.pragma_update(None, "cache_size", -64)?;
        let spawned = std::thread::Builder::new()
            .name("pksa-checkpoint".into())
            .spawn({
                let wal = wal.clone();
                move || wal::checkpointer(ck, woken, wal)
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
        let health = Arc::new(WriteHealth::default());
        let h = health.clone();
        std::thread::Builder::new()
            .name("pksa-store".into())
            .spawn(move || writer(conn, rx, checkpoints, h))
            .map_err(|e| StoreError::Sql(e.to_string()))?;
        Ok(Store {
            jobs: tx,
            sealer,
            path: path.to_path_buf(),
            health,
        })
    }

    /// [`Store::open`], or, when `new_state` and the file is damaged, moves it (and its WAL)
    /// aside as `<file>.damaged-<ms>` and starts a new store. A good store is never replaced.
    pub fn open_or_start_anew(
        path: &Path,
        sealer: Sealer,
        sync: Sync,
        new_state: bool,
    ) -> Result<Self> {
        match Store::open(path, sealer.clone(), sync) {
            Err(StoreError::Damaged { file, why }) if new_state => {
                let kept = format!("{file}.damaged-{}", now_ms());
                for (from, to) in [
                    (file.clone(), kept.clone()),
                    (format!("{file}-wal"), format!("{kept}-wal")),
                    (format!("{file}-shm"), format!("{kept}-shm")),
                ] {
                    if Path::new(&from).exists() {
                        std::fs::rename(&from, &to)
                            .map_err(|e| StoreError::Sql(format!("{from}: {e}")))?;
                    }
                }
                tracing::warn!(file = %file, kept = %kept, why = %why, "--new-state: the damaged state file was moved aside; starting with no sessions, answers or audit");
                Store::open(path, sealer, sync)
            }
            other => other,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sealer for session keys.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Whether the last commit succeeded.
    pub fn health(&self) -> &WriteHealth {
        &self.health
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
            let ran = match &r {
                Ok(_) => Ran::Ok,
                Err(StoreError::Conflict(_)) => Ran::Refused,
                Err(e) => Ran::Failed(e.to_string()),
            };
            let deliver: Deliver = Box::new(move |committed| {
                let out = match committed {
                    Ok(()) => r,
                    Err(e) => Err(StoreError::Commit(e)),
                };
                let _ = tx.send(out);
            });
            (ran, deliver)
        });
        self.jobs.send(job).map_err(|_| StoreError::Closed)
    }
}

/// One small write (a timestamp in `meta`): when the store failed, the service tries it
/// every minute, so readiness comes back once the store works again even with no traffic.
pub fn write_probe(conn: &Connection) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_write_probe', ?1)")?
        .execute([now_ms().to_string()])?;
    Ok(())
}

/// Verifies the audit chain on a read-only connection of its own, in one read transaction:
/// a long chain is re-hashed without holding the writer's lock (the running service keeps
/// answering meanwhile).
pub fn verify_audit(path: &Path, sealer: &Sealer) -> Result<audit::Verdict> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("BEGIN DEFERRED")?;
    let v = audit::verify(&conn, sealer);
    let _ = conn.execute_batch("COMMIT");
    v
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

#[cfg(test)]
mod tests {
    use super::*;

    use has_crypto::SecretBytes;
    use has_protocol::AuthKey;
    use rusqlite::params;
    use sessions::{Guard, NewSession};
    use std::time::Duration;

    /// A live session (one minute) of `account` for `app`.
    fn insert(
        c: &Connection,
        sealer: &Sealer,
        account: &str,
        app: &str,
        key: &AuthKey,
    ) -> Result<i64> {
        let exp = now_ms() + 60_000;
        sessions::insert(
            c,
            sealer,
            &NewSession {
                account: account.into(),
                app: app.into(),
                key: key.clone(),
                expire: exp,
                max_expire: exp,
                origin: "enroll",
                token: None,
                nonce_floor: 0,
            },
        )
    }

    /// The live sessions of `account`, with their keys.
    async fn live_with_keys(s: &Store, account: &str) -> Vec<(SessionRow, AuthKey)> {
        let (sealer, account) = (s.sealer().clone(), account.to_owned());
        s.call(move |c| sessions::with_keys(c, &sealer, &account, now_ms(), 0))
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
    async fn sessions_keys_sealed_and_decisions_recheck_the_row() {
        let (_d, s) = store();
        let sealer = s.sealer().clone();
        let key = AuthKey::generate();
        let k2 = key.clone();
        let id = s
            .call(move |c| insert(c, &sealer, "alice", "app", &k2))
            .await
            .unwrap();
        let live = live_with_keys(&s, "alice").await;
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].1, key);
        let guard = |account: &str, app: &str, nonce: Option<i64>| Guard {
            id,
            account: account.into(),
            app: app.into(),
            nonce,
            once: None,
        };
        let check = |g: Guard| s.call(move |c| sessions::check_and_use(c, &g, now_ms()));
        check(guard("alice", "app", Some(10))).await.unwrap();
        let conflict = |r: Result<()>| match r {
            Err(StoreError::Conflict(c)) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            conflict(check(guard("alice", "app", Some(10))).await),
            Conflict::NonceUsed
        );
        assert!(matches!(
            conflict(check(guard("bob", "app", None)).await),
            Conflict::Session(_)
        ));
        assert!(matches!(
            conflict(check(guard("alice", "admin", None)).await),
            Conflict::Session(_)
        ));
        // Out of order but unused: accepted once.
        check(guard("alice", "app", Some(12))).await.unwrap();
        check(guard("alice", "app", Some(11))).await.unwrap();
        assert_eq!(
            conflict(check(guard("alice", "app", Some(11))).await),
            Conflict::NonceUsed
        );
        // The key is not in the file in clear.
        let bytes = std::fs::read(s.path()).unwrap_or_default();
        let wal = std::fs::read(s.path().with_extension("sqlite-wal")).unwrap_or_default();
        let needle = key.expose_secret().as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle)
                && !wal.windows(needle.len()).any(|w| w == needle)
        );
        // A failing job in a batch does not undo the others.
        let a = check(guard("alice", "app", Some(5)));
        let b = check(guard("alice", "app", Some(20)));
        let (a, b) = tokio::join!(a, b);
        assert!(a.is_ok() && b.is_ok(), "5 was never used: {a:?}");
        let a = check(guard("alice", "app", Some(5)));
        let b = check(guard("alice", "app", Some(21)));
        let (a, b) = tokio::join!(a, b);
        assert!(a.is_err() && b.is_ok());
        let row = s
            .call(move |c| sessions::get(c, id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.last_nonce, 21);
        // Revoked and expired sessions fail the check, nonce or not.
        s.call(move |c| sessions::revoke(c, id)).await.unwrap();
        assert!(matches!(
            conflict(check(guard("alice", "app", None)).await),
            Conflict::Session("was revoked")
        ));
        // Another session with the same key cannot be created (a key is one session's).
        let (sealer, k3) = (s.sealer().clone(), key.clone());
        let e = s
            .call(move |c| insert(c, &sealer, "bob", "app", &k3))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(Conflict::KeyInUse)), "{e}");
    }

    #[tokio::test]
    async fn a_damaged_store_is_refused_and_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let sealer = || Sealer::new(SecretBytes::new(vec![7; 32]));
        std::fs::write(&path, b"").unwrap();
        let e = Store::open(&path, sealer(), Sync::Normal).unwrap_err();
        assert!(matches!(e, StoreError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("empty (0 bytes)") && e.to_string().contains("--new-state"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it was");
        let s = Store::open_or_start_anew(&path, sealer(), Sync::Normal, true).unwrap();
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("s.sqlite.damaged-")
            })
            .collect();
        assert_eq!(kept.len(), 1, "the damaged file is kept aside");
        // A good store is opened as it is, --new-state or not.
        let (sl, key) = (s.sealer().clone(), AuthKey::generate());
        s.call(move |c| insert(c, &sl, "alice", "app", &key))
            .await
            .unwrap();
        drop(s);
        let again = Store::open_or_start_anew(&path, sealer(), Sync::Normal, true).unwrap();
        assert_eq!(live_with_keys(&again, "alice").await.len(), 1);
    }

    #[tokio::test]
    async fn readiness_follows_failing_statements_not_probes() {
        let (_d, s) = store();
        assert_eq!(s.health().last_failure(), None);
        // A refusal by the data is not a failure of the store.
        let e = s
            .call(|_| -> Result<()> { Err(StoreError::Conflict(Conflict::NonceUsed)) })
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Conflict(_)));
        assert_eq!(s.health().last_failure(), None);
        // A dropped table makes every statement on it fail: not ready.
        s.call(|c| Ok(c.execute_batch("DROP TABLE answers")?))
            .await
            .unwrap();
        let r = s.call(|c| answers::find(c, "u", "h")).await;
        assert!(r.is_err());
        let why = s.health().last_failure().unwrap();
        assert!(why.contains("answers"), "{why}");
        // Reads succeeding do not hide it; a write that commits does.
        s.call(data_version).await.unwrap();
        assert!(s.health().last_failure().is_some());
        s.call(|c| {
            Ok(c.execute_batch("INSERT OR REPLACE INTO meta(key, value) VALUES ('x', 'y')")?)
        })
        .await
        .unwrap();
        assert_eq!(s.health().last_failure(), None);
    }

    #[tokio::test]
    async fn limits_of_one_asset_share_one_count() {
        let (_d, s) = store();
        let spend = |window_secs| spend::Spend {
            counter: "bank/HBD".into(),
            amount: 3_000,
            max: 5_000,
            window_secs,
        };
        let both = vec![spend(86_400), spend(7 * 86_400)];
        let b = both.clone();
        s.call(move |c| spend::check_and_record(c, "alice", "u1", &b))
            .await
            .unwrap();
        let spent = s
            .call(|c| spend::spent(c, "bank/HBD", "alice", 86_400))
            .await
            .unwrap();
        assert_eq!(spent, 3_000, "counted once, not once per limit");
        let e = s
            .call(move |c| spend::check_and_record(c, "alice", "u2", &both))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Conflict(Conflict::SpendLimit(_))),
            "{e}"
        );
    }

    #[tokio::test]
    async fn enrollment_windows() {
        let (_d, s) = store();
        s.call(|c| enrollments::open(c, "alice", Some("game"), now_ms() + 60_000, None))
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
        s.call(|c| enrollments::close(c, Some("alice"), None))
            .await
            .unwrap();
        assert!(
            !s.call(|c| enrollments::is_open(c, "alice", "game", now_ms()))
                .await
                .unwrap()
        );
        // Single use: one session, then closed.
        s.call(|c| enrollments::open(c, "bob", None, now_ms() + 60_000, Some(1)))
            .await
            .unwrap();
        s.call(|c| enrollments::consume(c, "bob", "x", now_ms()))
            .await
            .unwrap();
        let e = s
            .call(|c| enrollments::consume(c, "bob", "x", now_ms()))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Conflict(Conflict::WindowClosed)),
            "{e}"
        );
        assert!(
            s.call(|c| enrollments::list_open(c, now_ms()))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
