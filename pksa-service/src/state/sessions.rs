//! Sessions: an app's auth_key for one account, the app name recorded when it was created,
//! its expiry, revocation, and its nonce window.

use has_protocol::AuthKey;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Conflict, Result, Sealer, StoreError, now_ms};

/// A session row (without its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Id.
    pub id: i64,
    /// Account.
    pub account: String,
    /// App name, as recorded when the session was created.
    pub app: String,
    /// Expiry (ms).
    pub expire: i64,
    /// Renewal cap (ms).
    pub max_expire: i64,
    /// Highest accepted nonce.
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

impl SessionRow {
    /// Not revoked and not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        !self.revoked && self.expire > now
    }
}

const COLS: &str =
    "id, account, app, expire, max_expire, last_nonce, created, last_used, revoked, origin, token";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
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

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Account.
    pub account: String,
    /// App name.
    pub app: String,
    /// The auth_key.
    pub key: AuthKey,
    /// Expiry (ms).
    pub expire: i64,
    /// Renewal cap (ms).
    pub max_expire: i64,
    /// enroll, secret, operator, import.
    pub origin: &'static str,
    /// 0.8 token.
    pub token: Option<String>,
    /// Nonces up to this one are refused (an imported session's last nonce).
    pub nonce_floor: i64,
}

/// Inserts a session. Returns its id; [`Conflict::KeyInUse`] when another session has the key.
pub fn insert(conn: &Connection, sealer: &Sealer, s: &NewSession) -> Result<i64> {
    let hash = sealer.key_hash(&s.key);
    if conn
        .prepare_cached("SELECT 1 FROM sessions WHERE key_hash = ?1")?
        .exists([&hash])?
    {
        return Err(StoreError::Conflict(Conflict::KeyInUse));
    }
    let sealed = sealer.seal(s.key.expose_secret().as_bytes())?;
    conn.prepare_cached(
        "INSERT INTO sessions(account, app, key_enc, key_hash, token, expire, max_expire, last_nonce, nonce_floor, created, origin) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?8,?9,?10)",
    )?
    .execute(params![
        s.account,
        s.app,
        sealed,
        hash,
        s.token,
        s.expire,
        s.max_expire,
        s.nonce_floor,
        now_ms(),
        s.origin
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A session by id.
pub fn get(conn: &Connection, id: i64) -> Result<Option<SessionRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLS} FROM sessions WHERE id = ?1"))?
        .query_row([id], row)
        .optional()?)
}

/// The session that has this key, whatever its account (a key belongs to one session).
pub fn by_key(conn: &Connection, sealer: &Sealer, key: &AuthKey) -> Result<Option<SessionRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLS} FROM sessions WHERE key_hash = ?1"))?
        .query_row([sealer.key_hash(key)], row)
        .optional()?)
}

/// Sessions of an account that are live, or ended (expired or revoked) less than `grace_ms`
/// ago, with their keys: the sessions a request for the account may come from.
pub fn with_keys(
    conn: &Connection,
    sealer: &Sealer,
    account: &str,
    now: i64,
    grace_ms: i64,
) -> Result<Vec<(SessionRow, AuthKey)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLS}, key_enc FROM sessions WHERE account = ?1 AND expire > ?2 ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![account, now - grace_ms], |r| {
        Ok((row(r)?, r.get::<_, Vec<u8>>(11)?))
    })?;
    let mut out = vec![];
    for r in rows {
        let (s, sealed) = r?;
        // One unreadable row (sealed under another key, damaged) must not take every other
        // session of the account down with it: it is skipped (and unusable).
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

/// All sessions (optionally of one account), newest first.
pub fn list(conn: &Connection, account: Option<&str>) -> Result<Vec<SessionRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLS} FROM sessions WHERE (?1 IS NULL OR account = ?1) ORDER BY id DESC"
    ))?;
    let rows = stmt.query_map([account], row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Revokes a session. Returns whether it existed.
pub fn revoke(conn: &Connection, id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("UPDATE sessions SET revoked = 1 WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// How many accepted nonces a session remembers besides its floor.
///
/// Requests of one session are accepted in the order they arrive (the service reserves nonces
/// in arrival order) but may be recorded in another (one waits for the Hive API while the
/// next does not). The store therefore keeps the window of the last accepted nonces instead
/// of only the highest: a nonce is accepted iff it is above the floor and not in the window;
/// when the window is full its lowest nonce moves into the floor. No nonce is ever accepted
/// twice, and one older than the last 128 accepted is refused.
pub const NONCE_WINDOW: usize = 128;

/// Accepts `n` into (`floor`, `recent`): false if it was used or is too old.
pub fn accept_nonce(floor: &mut i64, recent: &mut Vec<i64>, n: i64) -> bool {
    if n <= *floor {
        return false;
    }
    match recent.binary_search(&n) {
        Ok(_) => false,
        Err(at) => {
            recent.insert(at, n);
            if recent.len() > NONCE_WINDOW {
                let lowest = recent.remove(0);
                *floor = (*floor).max(lowest);
            }
            true
        }
    }
}

fn decode_nonces(b: Option<Vec<u8>>) -> Vec<i64> {
    b.unwrap_or_default()
        .chunks_exact(8)
        .filter_map(|c| c.try_into().ok().map(i64::from_le_bytes))
        .collect()
}

fn encode_nonces(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|n| n.to_le_bytes()).collect()
}

/// What a decision was made for: the session re-checked when the decision is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// Session id.
    pub id: i64,
    /// The account the request was for.
    pub account: String,
    /// The app the decision saw.
    pub app: String,
    /// The request's nonce, consumed here.
    pub nonce: Option<i64>,
    /// For a request without a nonce that must not be decided twice (a sign request): its
    /// data hash, used once per session here (a replay of the same ciphertext under another
    /// request id is a [`Conflict::NonceUsed`]).
    pub once: Option<String>,
}

/// Re-checks a session against its row: it exists, belongs to the account and app the
/// decision saw, is neither revoked nor expired at `now`, and the nonce (if any) was never
/// used. Then consumes the nonce and records the use.
pub fn check_and_use(conn: &Connection, g: &Guard, now: i64) -> Result<()> {
    struct Found {
        account: String,
        app: String,
        expire: i64,
        revoked: i64,
        floor: i64,
        recent: Option<Vec<u8>>,
    }
    let found = conn
        .prepare_cached(
            "SELECT account, app, expire, revoked, nonce_floor, recent_nonces FROM sessions WHERE id = ?1",
        )?
        .query_row([g.id], |r| {
            Ok(Found {
                account: r.get(0)?,
                app: r.get(1)?,
                expire: r.get(2)?,
                revoked: r.get(3)?,
                floor: r.get(4)?,
                recent: r.get(5)?,
            })
        })
        .optional()?;
    let conflict = |c| Err(StoreError::Conflict(c));
    let Some(Found {
        account,
        app,
        expire,
        revoked,
        mut floor,
        recent,
    }) = found
    else {
        return conflict(Conflict::Session("is gone"));
    };
    if account != g.account || app != g.app {
        return conflict(Conflict::Session("belongs to another account or app"));
    }
    if revoked != 0 {
        return conflict(Conflict::Session("was revoked"));
    }
    if expire <= now {
        return conflict(Conflict::Session("expired"));
    }
    match g.nonce {
        Some(n) => {
            let mut recent = decode_nonces(recent);
            if !accept_nonce(&mut floor, &mut recent, n) {
                return conflict(Conflict::NonceUsed);
            }
            conn.prepare_cached("UPDATE sessions SET last_nonce = MAX(last_nonce, ?2), nonce_floor = ?3, recent_nonces = ?4, last_used = ?5 WHERE id = ?1")?
                .execute(params![g.id, n, floor, encode_nonces(&recent), now])?;
        }
        None => {
            if let Some(hash) = &g.once
                && !consume_data(conn, g.id, hash)?
            {
                return conflict(Conflict::NonceUsed);
            }
            conn.prepare_cached("UPDATE sessions SET last_used = ?2 WHERE id = ?1")?
                .execute(params![g.id, now])?;
        }
    }
    Ok(())
}

/// Uses up the data of a request without a nonce for the session; false when it was used
/// already.
pub fn consume_data(conn: &Connection, id: i64, data_hash: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("INSERT OR IGNORE INTO used_data(session_id, data_hash) VALUES (?1, ?2)")?
        .execute(params![id, data_hash])?
        == 1)
}

/// Forgets the data hashes of revoked sessions (the only ones that can never sign again; an
/// expired session can be revived through an enrollment window and keeps them).
pub fn purge_used_data(conn: &Connection) -> Result<usize> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM used_data WHERE session_id IN (SELECT id FROM sessions WHERE revoked != 0)",
        )?
        .execute([])?)
}

/// Consumes a nonce of a refused request when the session is live and the nonce unused (a
/// refused request cannot be sent again); otherwise does nothing.
pub fn consume_nonce(conn: &Connection, id: i64, nonce: i64, now: i64) -> Result<()> {
    let found: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached(
            "SELECT nonce_floor, recent_nonces FROM sessions WHERE id = ?1 AND revoked = 0 AND expire > ?2",
        )?
        .query_row(params![id, now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((mut floor, recent)) = found else {
        return Ok(());
    };
    let mut recent = decode_nonces(recent);
    if accept_nonce(&mut floor, &mut recent, nonce) {
        conn.prepare_cached("UPDATE sessions SET last_nonce = MAX(last_nonce, ?2), nonce_floor = ?3, recent_nonces = ?4 WHERE id = ?1")?
            .execute(params![id, nonce, floor, encode_nonces(&recent)])?;
    }
    Ok(())
}

/// Renews a live session to `expire` (never shorter).
pub fn renew(conn: &Connection, id: i64, expire: i64, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE sessions SET expire = MAX(expire, ?2), last_used = ?3 WHERE id = ?1",
    )?
    .execute(params![id, expire, now])?;
    Ok(())
}

/// Brings an expired session of `account` back: new expiry and renewal cap. A revoked
/// session never comes back.
pub fn revive(
    conn: &Connection,
    id: i64,
    account: &str,
    expire: i64,
    max_expire: i64,
    token: Option<&str>,
    now: i64,
) -> Result<()> {
    let n = conn.prepare_cached("UPDATE sessions SET expire = ?3, max_expire = ?4, token = COALESCE(token, ?5), last_used = ?6 WHERE id = ?1 AND account = ?2 AND revoked = 0")?
        .execute(params![id, account, expire, max_expire, token, now])?;
    if n == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict(Conflict::Session(
            "was revoked or is gone",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_window_accepts_each_nonce_once_in_any_order() {
        let (mut floor, mut recent) = (10, vec![]);
        assert!(!accept_nonce(&mut floor, &mut recent, 10), "at the floor");
        assert!(accept_nonce(&mut floor, &mut recent, 20));
        assert!(
            accept_nonce(&mut floor, &mut recent, 15),
            "out of order, unused"
        );
        assert!(!accept_nonce(&mut floor, &mut recent, 15), "used");
        assert!(!accept_nonce(&mut floor, &mut recent, 20), "used");
        for n in 100..(100 + NONCE_WINDOW as i64) {
            assert!(accept_nonce(&mut floor, &mut recent, n));
        }
        assert_eq!(recent.len(), NONCE_WINDOW);
        assert_eq!(floor, 20, "15 and 20 moved into the floor");
        assert!(
            !accept_nonce(&mut floor, &mut recent, 16),
            "older than the window"
        );
        assert!(
            !accept_nonce(&mut floor, &mut recent, 150),
            "used, still in the window"
        );
        let blob = encode_nonces(&recent);
        assert_eq!(decode_nonces(Some(blob)), recent);
    }
}
