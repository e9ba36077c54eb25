//! The session cache and resolution: which session a request comes from.
//!
//! A request names an account; its data is encrypted with the auth_key of one of the
//! account's sessions. Resolution is trial decryption over the account's cached sessions,
//! most recently used first (an active app is found at the first try among thousands). The
//! cache holds the sessions that are live or ended less than a day ago (a request from an
//! ended session is answered as refused, not ignored), each with the app name recorded when
//! it was created, its expiry and revocation as last read, and the highest nonce reserved
//! in arrival order.
//!
//! The cache only ever makes the service refuse: every decision it feeds is re-checked
//! against the session's row when it is recorded (`state::decisions`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use has_protocol::{AuthKey, Encrypted, Payload, PayloadError};

use crate::state::{self, Store, now_ms};

/// How long after its end a session still resolves (its requests are then refused, not
/// ignored).
pub(crate) const ENDED_GRACE_MS: i64 = 24 * 3600 * 1000;
/// A cached account is reloaded when a request matches none of its sessions and the store
/// changed since, or when it is older than this.
const RELOAD_AFTER: Duration = Duration::from_secs(10);

/// A cached session (cheap to clone: one shared allocation).
#[derive(Debug, Clone)]
pub(crate) struct CachedSession(Arc<Entry>);

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: i64,
    pub(crate) account: Arc<str>,
    pub(crate) key: AuthKey,
    /// The app the session was created for (shared by the sessions of one app).
    pub(crate) app: Arc<str>,
    expire: AtomicI64,
    revoked: AtomicBool,
    /// Nonces reserved so far.
    nonces: Mutex<Reserved>,
}

impl has_protocol::Passphrase for CachedSession {
    fn passphrase(&self) -> &str {
        self.key.passphrase()
    }
}

impl std::ops::Deref for CachedSession {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.0
    }
}

/// What a decision sees of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionView {
    pub(crate) id: i64,
    pub(crate) account: String,
    pub(crate) app: String,
    pub(crate) expire: i64,
    pub(crate) revoked: bool,
}

impl SessionView {
    /// Why the session cannot act at `now`, if it cannot.
    pub(crate) fn ended(&self, now: i64) -> Option<&'static str> {
        if self.revoked {
            Some("was revoked")
        } else if self.expire <= now {
            Some("expired")
        } else {
            None
        }
    }
}

impl CachedSession {
    fn new(row: &state::SessionRow, account: Arc<str>, key: AuthKey, app: Arc<str>) -> Self {
        CachedSession(Arc::new(Entry {
            id: row.id,
            account,
            key,
            app,
            expire: AtomicI64::new(row.expire),
            revoked: AtomicBool::new(row.revoked),
            nonces: Mutex::new(Reserved {
                floor: row.last_nonce,
                max: row.last_nonce,
                recent: Vec::new(),
            }),
        }))
    }

    /// The session as a decision sees it.
    pub(crate) fn view(&self) -> SessionView {
        SessionView {
            id: self.id,
            account: self.account.to_string(),
            app: self.app.to_string(),
            expire: self.expire.load(Ordering::Relaxed),
            revoked: self.revoked.load(Ordering::Relaxed),
        }
    }

    fn nonces(&self) -> std::sync::MutexGuard<'_, Reserved> {
        self.nonces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `nonce` for a request. `in_order` (the request was matched in the order
    /// requests arrive): only a nonce greater than every nonce reserved so far, so an app's
    /// requests are accepted in the order it sent them. Otherwise (the request was matched in
    /// its own task, after a full trial decryption, possibly after later ones): any nonce not
    /// reserved yet, above the session's floor and not older than its last 128, the rule the
    /// store applies (`state::sessions::accept_nonce`). Either way no nonce is reserved twice.
    pub(crate) fn reserve(&self, nonce: i64, in_order: bool) -> bool {
        let mut r = self.nonces();
        if in_order && nonce <= r.max {
            return false;
        }
        let Reserved { floor, recent, .. } = &mut *r;
        if !state::sessions::accept_nonce(floor, recent, nonce) {
            return false;
        }
        r.max = r.max.max(nonce);
        true
    }

    /// Gives back the reservation of `nonce`: the request it was reserved for will not be
    /// decided (its request id was a reused one).
    pub(crate) fn release(&self, nonce: i64) {
        let mut r = self.nonces();
        if let Ok(i) = r.recent.binary_search(&nonce) {
            r.recent.remove(i);
            if r.max == nonce {
                r.max = r.recent.last().copied().unwrap_or(r.floor);
            }
        }
    }

    /// The store said the session ended: later requests are refused without work.
    pub(crate) fn mark_ended(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }

    fn refresh_from(&self, row: &state::SessionRow) {
        self.expire.store(row.expire, Ordering::Relaxed);
        self.revoked.store(row.revoked, Ordering::Relaxed);
        let mut r = self.nonces();
        r.max = r.max.max(row.last_nonce);
    }
}

/// The nonces of a session reserved in this process: a floor (the store's last nonce when
/// loaded, and those older than the window) and the last ones reserved.
#[derive(Debug)]
struct Reserved {
    floor: i64,
    max: i64,
    recent: Vec<i64>,
}

/// Which session a request belongs to.
#[derive(Debug)]
pub(crate) enum Resolved<T> {
    /// Decrypted with this session's key.
    Found {
        /// The session.
        session: CachedSession,
        /// The payload.
        payload: T,
    },
    /// Decrypted, but the payload is invalid.
    Invalid {
        /// The session.
        session: CachedSession,
        /// What is wrong.
        message: String,
    },
    /// No session of ours decrypts it.
    NotOurs,
}

#[derive(Debug, Default)]
struct CachedAccount {
    sessions: Vec<CachedSession>,
    loaded: Option<Instant>,
    /// SQLite `data_version` when loaded: it changes when another process (the CLI) commits.
    version: i64,
    /// One copy of each app name (thousands of sessions usually come from a few apps).
    apps: HashSet<Arc<str>>,
    name: Option<Arc<str>>,
    /// Sessions by the token their `auth_ack` gave out: apps that send it back
    /// (hive-auth-wrapper does, at the top level of `sign_req` and `challenge_req`) are
    /// found with one decryption, whatever the number of sessions. Only a hint: the key
    /// must still decrypt the request. Keyed by a 64-bit keyed hash of the token (8 bytes
    /// per session instead of the text); a collision only costs a trial decryption.
    by_token: HashMap<u64, CachedSession>,
}

/// The index key of a token (SipHash with this process's random keys).
fn token_key(token: &str) -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(token)
}

impl CachedAccount {
    fn app(&mut self, app: &str) -> Arc<str> {
        if let Some(a) = self.apps.get(app) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(app);
        self.apps.insert(a.clone());
        a
    }

    fn name(&mut self, account: &str) -> Arc<str> {
        self.name.get_or_insert_with(|| Arc::from(account)).clone()
    }
}

/// Most recently used first: the session at `i` moves to the front, the others keep their
/// order.
fn move_to_front(sessions: &mut [CachedSession], i: usize) {
    if let Some(prefix) = sessions.get_mut(..=i) {
        prefix.rotate_right(1);
    }
}

/// The cache, per account.
#[derive(Debug)]
pub(crate) struct Sessions {
    accounts: Mutex<HashMap<String, CachedAccount>>,
    /// Full trial decryptions (over every session of an account) run two at a time: a flood
    /// of requests nobody can decrypt cannot take every core (those found among the first
    /// sessions, in the connection task, do not wait for it).
    trials: tokio::sync::Semaphore,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            accounts: Mutex::default(),
            trials: tokio::sync::Semaphore::new(2),
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedAccount>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds the session whose key decrypts `data`: the one the request's `token` names, if
    /// any, then trial decryption over the first `limit` cached sessions of the account,
    /// most recently used first; a match moves to the front. None when the account's
    /// sessions are not loaded yet. The ciphertext is looked at once and the keys are tried
    /// sixteen at a time on its last block (`Prepared::find`: about 0.08 µs per key whatever
    /// the ciphertext's size), outside the cache's lock.
    pub(crate) fn find<T: Payload>(
        &self,
        account: &str,
        data: &Encrypted<T>,
        token: Option<&str>,
        limit: usize,
    ) -> Option<Resolved<T>> {
        let (hinted, candidates): (Option<CachedSession>, Vec<CachedSession>) = {
            let cache = self.lock();
            let entry = cache.get(account).filter(|c| c.loaded.is_some())?;
            (
                token
                    .and_then(|t| entry.by_token.get(&token_key(t)))
                    .cloned(),
                entry.sessions.iter().take(limit).cloned().collect(),
            )
        };
        let Ok(prepared) = data.prepare() else {
            return Some(Resolved::NotOurs);
        };
        let found = match hinted.map(|s| {
            let r = prepared.decrypt(&s.key);
            (s, r)
        }) {
            Some((s, r)) if !matches!(r, Err(PayloadError::Decrypt)) => Some((s, r)),
            // No token, an unknown one, or one whose key does not decrypt (a stale or copied
            // token): trial decryption.
            _ => prepared
                .find(&candidates)
                .and_then(|(i, r)| Some((candidates.get(i)?.clone(), r))),
        };
        Some(match found {
            Some((session, Ok(payload))) => {
                let mut cache = self.lock();
                if let Some(entry) = cache.get_mut(account)
                    && let Some(i) = entry.sessions.iter().position(|x| x.id == session.id)
                {
                    move_to_front(&mut entry.sessions, i);
                }
                Resolved::Found { session, payload }
            }
            Some((session, Err(PayloadError::Invalid(message)))) => {
                Resolved::Invalid { session, message }
            }
            Some((_, Err(_))) | None => Resolved::NotOurs,
        })
    }

    /// The cached session with this id, if any.
    pub(crate) fn by_id(&self, account: &str, id: i64) -> Option<CachedSession> {
        let cache = self.lock();
        cache
            .get(account)?
            .sessions
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// Finds the session of `account` whose key decrypts `data`: in the cache, then (no
    /// match) in the store if it changed since the account was loaded.
    pub(crate) async fn resolve<T: Payload>(
        &self,
        store: &Store,
        account: &str,
        data: &Encrypted<T>,
        token: Option<&str>,
    ) -> Resolved<T> {
        self.ensure(store, account, false).await;
        // A request naming its session by token does not queue behind trial decryptions
        // (one key test; the token, when it names none or a wrong one, is not tried again).
        if token.is_some()
            && let Some(found) = self.find(account, data, token, 0)
            && !matches!(found, Resolved::NotOurs)
        {
            return found;
        }
        let _trial = self.trials.acquire().await;
        let before = self.loaded_at(account);
        if let Some(found) = self.find(account, data, None, usize::MAX)
            && !matches!(found, Resolved::NotOurs)
        {
            return found;
        }
        // Not found: once more only if the store changed and the sessions were reloaded.
        self.ensure(store, account, true).await;
        if self.loaded_at(account) == before {
            return Resolved::NotOurs;
        }
        self.find(account, data, None, usize::MAX)
            .unwrap_or(Resolved::NotOurs)
    }

    fn loaded_at(&self, account: &str) -> Option<Instant> {
        self.lock().get(account).and_then(|c| c.loaded)
    }

    /// Makes sure an account's sessions are loaded; with `refresh`, reloads them if another
    /// process changed the store since they were loaded, or they are older than 10 s.
    pub(crate) async fn ensure(&self, store: &Store, account: &str, refresh: bool) {
        let (loaded, version) = {
            let cache = self.lock();
            cache
                .get(account)
                .map(|c| (c.loaded, c.version))
                .unwrap_or((None, 0))
        };
        let stale = match loaded {
            None => true,
            Some(_) if !refresh => false,
            Some(at) if at.elapsed() > RELOAD_AFTER => true,
            Some(_) => store
                .call(state::data_version)
                .await
                .map(|v| v != version)
                .unwrap_or(true),
        };
        if stale {
            self.load(store, account).await;
        }
    }

    /// Reloads an account's sessions from the store (keeping the nonce counters of the
    /// sessions already known).
    pub(crate) async fn load(&self, store: &Store, account: &str) {
        let sealer = store.sealer().clone();
        let acct = account.to_owned();
        let now = now_ms();
        let read = store
            .call(move |c| {
                let v = state::data_version(c)?;
                Ok((
                    state::sessions::with_keys(c, &sealer, &acct, now, ENDED_GRACE_MS)?,
                    v,
                ))
            })
            .await;
        let (rows, version) = match read {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, account, "cannot load sessions");
                return;
            }
        };
        let mut cache = self.lock();
        let mut fresh = CachedAccount::default();
        let old_order: Vec<CachedSession> = cache
            .remove(account)
            .map(|c| c.sessions)
            .unwrap_or_default();
        // Sessions known before keep their place (most recently used first): a reload must not
        // push an active app out of the sessions the connection task tries in arrival order.
        let rank: HashMap<i64, usize> = old_order
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let old: HashMap<i64, CachedSession> = old_order.into_iter().map(|s| (s.id, s)).collect();
        let name = fresh.name(account);
        let mut by_token = HashMap::new();
        fresh.sessions = rows
            .into_iter()
            .map(|(r, k)| {
                let s = match old.get(&r.id) {
                    // Known: keep its counter (nonces reserved but not yet stored).
                    Some(o) if o.key == k => {
                        o.refresh_from(&r);
                        fresh.apps.insert(o.app.clone());
                        o.clone()
                    }
                    _ => {
                        let app = fresh.app(&r.app);
                        CachedSession::new(&r, name.clone(), k, app)
                    }
                };
                if let Some(t) = &r.token {
                    by_token.insert(token_key(t), s.clone());
                }
                s
            })
            .collect();
        fresh.by_token = by_token;
        fresh
            .sessions
            .sort_by_key(|s| rank.get(&s.id).copied().unwrap_or(usize::MAX));
        fresh.loaded = Some(Instant::now());
        fresh.version = version;
        cache.insert(account.to_owned(), fresh);
    }

    /// Puts one session (new or renewed, by its key) at the front of its account's cache,
    /// reading only that row: creating the 10,000th session must not reload the other 9,999.
    /// Loads the whole account when it is not loaded yet.
    pub(crate) async fn cache_one(&self, store: &Store, account: &str, key: &AuthKey) {
        let loaded = self.lock().get(account).is_some_and(|c| c.loaded.is_some());
        if !loaded {
            self.load(store, account).await;
            return;
        }
        let sealer = store.sealer().clone();
        let k = key.clone();
        let row = store
            .call(move |c| state::sessions::by_key(c, &sealer, &k))
            .await;
        let mut cache = self.lock();
        let Some(entry) = cache.get_mut(account) else {
            return;
        };
        match row {
            Ok(Some(r)) if r.account == account => {
                match entry.sessions.iter().position(|s| s.id == r.id) {
                    Some(i) => {
                        if let Some(s) = entry.sessions.get(i) {
                            s.refresh_from(&r);
                        }
                        move_to_front(&mut entry.sessions, i);
                    }
                    None => {
                        let (name, app) = (entry.name(account), entry.app(&r.app));
                        entry
                            .sessions
                            .insert(0, CachedSession::new(&r, name, key.clone(), app));
                    }
                }
                if let (Some(t), Some(s)) = (&r.token, entry.sessions.first()) {
                    entry.by_token.insert(token_key(t), s.clone());
                }
            }
            Ok(_) => {
                entry.sessions.retain(|s| s.key != *key);
                entry.by_token.retain(|_, s| s.key != *key);
            }
            Err(e) => {
                tracing::error!(error = %e, account, "cannot load a session");
                // The next lookup reloads the account.
                entry.loaded = None;
            }
        }
    }

    /// Sessions cached for an account.
    #[cfg(test)]
    pub(crate) fn cached(&self, account: &str) -> Vec<CachedSession> {
        self.lock()
            .get(account)
            .map(|c| c.sessions.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
impl CachedSession {
    /// A session as if loaded from `row`, with a fresh key.
    pub(crate) fn for_test(row: &state::SessionRow) -> Self {
        CachedSession::new(
            row,
            Arc::from(row.account.as_str()),
            AuthKey::generate(),
            Arc::from(row.app.as_str()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sessions::{NewSession, insert};
    use crate::state::{Sealer, Sync};

    fn store_in(dir: &std::path::Path) -> Store {
        Store::open(
            &dir.join("s.sqlite"),
            Sealer::new(has_crypto::SecretBytes::new(vec![7; 32])),
            Sync::Normal,
        )
        .unwrap()
    }

    fn new(app: &str, key: &AuthKey) -> NewSession {
        NewSession {
            account: "alice".into(),
            app: app.into(),
            key: key.clone(),
            expire: now_ms() + 60_000,
            max_expire: now_ms() + 60_000,
            origin: "operator",
            token: None,
            nonce_floor: 0,
        }
    }

    #[tokio::test]
    async fn cached_sessions_share_their_app_name_and_only_their_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let keys: Vec<AuthKey> = (0..4).map(|_| AuthKey::generate()).collect();
        let sealer = store.sealer().clone();
        let ks = keys.clone();
        store
            .call(move |c| {
                for (k, app) in ks.iter().zip(["game", "game", "wallet", "game"]) {
                    insert(c, &sealer, &new(app, k))?;
                }
                let mut bob = new("game", &AuthKey::generate());
                bob.account = "bob".into();
                insert(c, &sealer, &bob)?;
                Ok(())
            })
            .await
            .unwrap();
        let cache = Sessions::default();
        let check = |sessions: Vec<CachedSession>| {
            assert_eq!(sessions.len(), 4, "alice's sessions only");
            let games: Vec<_> = sessions.iter().filter(|s| &*s.app == "game").collect();
            assert_eq!(games.len(), 3);
            assert!(games.windows(2).all(|w| Arc::ptr_eq(&w[0].app, &w[1].app)));
        };
        cache.load(&store, "alice").await;
        check(cache.cached("alice"));
        // Sessions added one by one share it too.
        let more = Sessions::default();
        more.load(&store, "nobody").await;
        for k in &keys {
            more.ensure(&store, "alice", false).await;
            more.cache_one(&store, "alice", k).await;
        }
        check(more.cached("alice"));
    }

    #[tokio::test]
    async fn a_token_finds_its_session_and_is_only_a_hint() {
        use has_protocol::payloads::ChallengeReqData;
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let keys: Vec<AuthKey> = (0..300).map(|_| AuthKey::generate()).collect();
        let sealer = store.sealer().clone();
        let ks = keys.clone();
        store
            .call(move |c| {
                for (i, k) in ks.iter().enumerate() {
                    let mut n = new("game", k);
                    n.token = Some(format!("tok-{i}"));
                    insert(c, &sealer, &n)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let cache = Sessions::default();
        let data = |k: &AuthKey| {
            Encrypted::encrypt(
                &serde_json::from_str::<ChallengeReqData>(
                    r#"{"key_type":"posting","challenge":"hi","nonce":1}"#,
                )
                .unwrap(),
                k,
            )
        };
        let id_of = |r: Resolved<ChallengeReqData>| match r {
            Resolved::Found { session, .. } => Some(session.key.clone()),
            _ => None,
        };
        // Not among the first sessions tried (limit 1), found by its token alone.
        cache.ensure(&store, "alice", false).await;
        let first = cache.cached("alice")[0].key.clone();
        let far = keys.iter().find(|k| **k != first).unwrap();
        let i = keys.iter().position(|k| k == far).unwrap();
        let tok = format!("tok-{i}");
        let found = cache.find("alice", &data(far), Some(&tok), 1).unwrap();
        assert_eq!(id_of(found).as_ref(), Some(far));
        let found = cache
            .find("alice", &data(&keys[7]), Some("tok-7"), 0)
            .unwrap();
        assert_eq!(id_of(found).as_ref(), Some(&keys[7]));
        // Another session's token: the key decides (trial decryption), never the token.
        let found = cache
            .find("alice", &data(&keys[9]), Some("tok-3"), usize::MAX)
            .unwrap();
        assert_eq!(id_of(found).as_ref(), Some(&keys[9]));
        // A stranger with a real token gets nothing.
        let stranger = cache
            .resolve(&store, "alice", &data(&AuthKey::generate()), Some("tok-3"))
            .await;
        assert!(matches!(stranger, Resolved::NotOurs));
        // Without a token, resolution still finds every session.
        for k in keys.iter().step_by(37) {
            let r = cache.resolve(&store, "alice", &data(k), None).await;
            assert_eq!(id_of(r).as_ref(), Some(k));
        }
    }
}
