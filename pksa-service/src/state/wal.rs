//! Keeping the WAL short: checkpoints on a thread of their own, and the writer starting the WAL
//! over when the thread cannot catch up (see [`Checkpoints::committed`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use rusqlite::Connection;

/// When a checkpoint finds the WAL this long (about 4 MB of 4 KiB pages, SQLite's own
/// auto-checkpoint length), it sees that the WAL gets started over (see [`checkpoint_passes`]).
const WAL_RESTART_FRAMES: i64 = 1000;
/// Passes one checkpoint may run to catch up with the writer.
const CHASE_PASSES: usize = 4;
/// A WAL started over is truncated to this size (`journal_size_limit`).
pub(super) const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// What the writer and the checkpoint thread share.
#[derive(Default)]
pub(super) struct WalState {
    /// Held during a checkpoint pass, and by the writer from its own pass to the end of its next
    /// transaction.
    pass: Mutex<()>,
    /// Set by the checkpoint thread when the WAL is long and its passes could not catch up.
    restart_due: AtomicBool,
}

/// Copies the WAL back into the database after commits (at most ten times a second), and once
/// more when the store closes.
pub(super) fn checkpointer(conn: Connection, woken: std_mpsc::Receiver<()>, wal: Arc<WalState>) {
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
pub(super) struct Checkpoints {
    /// Wakes the thread after a commit.
    pub(super) wake: std_mpsc::SyncSender<()>,
    pub(super) wal: Arc<WalState>,
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
    pub(super) fn committed<'a>(&'a self, conn: &Connection) -> Option<MutexGuard<'a, ()>> {
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
