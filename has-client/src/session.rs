//! An authenticated session and its on-disk form.

use std::sync::atomic::{AtomicU64, Ordering};

use has_protocol::{AccountName, AuthKey, UnixMillis};
use serde::{Deserialize, Serialize};

/// What an app keeps after authentication: the account, the auth_key (the session secret),
/// its expiry, the 0.8 token if the PKSA gave one, and the nonce counter.
#[derive(Debug)]
pub struct Session {
    /// The account.
    pub account: AccountName,
    /// The session key.
    pub auth_key: AuthKey,
    /// When the PKSA forgets the session.
    pub expire: UnixMillis,
    /// 0.8 token, sent back at top level for PKSAs that need it.
    pub token: Option<String>,
    /// Public key returned with the authentication challenge, if any.
    pub pubkey: Option<String>,
    last_nonce: AtomicU64,
}

/// The session file (JSON). Contains the auth_key: keep it private (mode 0600).
#[derive(Debug, Serialize, Deserialize)]
struct SessionFile {
    account: String,
    auth_key: String,
    expire: u64,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    pubkey: Option<String>,
    #[serde(default)]
    last_nonce: u64,
}

impl Session {
    /// A session from its parts.
    pub fn new(
        account: AccountName,
        auth_key: AuthKey,
        expire: UnixMillis,
        token: Option<String>,
        pubkey: Option<String>,
    ) -> Self {
        Session {
            account,
            auth_key,
            expire,
            token,
            pubkey,
            last_nonce: AtomicU64::new(0),
        }
    }

    /// Whether the PKSA still knows the session.
    pub fn is_valid(&self) -> bool {
        self.expire > UnixMillis::now()
    }

    /// A strictly increasing millisecond nonce (the current time, or last + 1 if two calls
    /// fall in the same millisecond).
    pub fn next_nonce(&self) -> UnixMillis {
        let now = UnixMillis::now().0;
        let mut prev = self.last_nonce.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self
                .last_nonce
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return UnixMillis(next),
                Err(p) => prev = p,
            }
        }
    }

    /// Carries the nonce counter of `previous` over when it is the same session (same account
    /// and auth_key) authenticated again: the PKSA keeps the session's last nonce across a
    /// re-authentication, so starting again from the clock would have every request refused
    /// as a replay after a run that pushed the nonces ahead of it.
    pub fn continue_from(&self, previous: &Session) {
        if previous.account == self.account && previous.auth_key == self.auth_key {
            self.last_nonce.fetch_max(
                previous.last_nonce.load(Ordering::Relaxed),
                Ordering::SeqCst,
            );
        }
    }

    /// The last nonce handed out.
    pub fn last_nonce(&self) -> UnixMillis {
        UnixMillis(self.last_nonce.load(Ordering::Relaxed))
    }

    /// JSON form for the session file.
    pub fn to_json(&self) -> String {
        let f = SessionFile {
            account: self.account.to_string(),
            auth_key: self.auth_key.expose_secret().to_owned(),
            expire: self.expire.0,
            token: self.token.clone(),
            pubkey: self.pubkey.clone(),
            last_nonce: self.last_nonce.load(Ordering::Relaxed),
        };
        serde_json::to_string_pretty(&f).unwrap_or_default()
    }

    /// Reads the session file form.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let f: SessionFile =
            serde_json::from_str(text).map_err(|e| format!("session file: {e}"))?;
        let s = Session::new(
            AccountName::new(&f.account)?,
            AuthKey::new(f.auth_key),
            UnixMillis(f.expire),
            f.token,
            f.pubkey,
        );
        s.last_nonce.store(f.last_nonce, Ordering::Relaxed);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_authentication_keeps_the_nonces_ahead() {
        let key = AuthKey::generate();
        let acct = AccountName::new("alice").unwrap();
        let old = Session::new(acct.clone(), key.clone(), UnixMillis(0), None, None);
        let ahead = UnixMillis::now().0 + 3_600_000;
        old.last_nonce.store(ahead, Ordering::Relaxed);
        let again = Session::new(acct.clone(), key, UnixMillis(0), None, None);
        again.continue_from(&old);
        assert!(again.next_nonce().0 > ahead);
        // Another session's counter is not taken.
        let other = Session::new(acct, AuthKey::generate(), UnixMillis(0), None, None);
        other.continue_from(&old);
        assert!(other.next_nonce().0 < ahead);
    }

    #[test]
    fn nonces_strictly_increase() {
        let s = Session::new(
            "alice".parse().unwrap(),
            AuthKey::generate(),
            UnixMillis(0),
            None,
            None,
        );
        let mut prev = 0;
        for _ in 0..1000 {
            let n = s.next_nonce().0;
            assert!(n > prev);
            prev = n;
        }
        let back = Session::from_json(&s.to_json()).unwrap();
        assert!(back.next_nonce().0 > prev);
    }
}
