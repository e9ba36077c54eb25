//! `auth_req`: create, renew or revive a session, optionally answering a challenge.
//!
//! A session belongs to exactly one account and one app, always:
//! * the auth_key of a session of another account is refused (it cannot authenticate, renew
//!   or revive anything for this account);
//! * renewing keeps the app recorded when the session was created, whatever name the
//!   request gives (the policy sees that app);
//! * a new session, or an expired one brought back, needs an enrollment window open for
//!   this account and that app; a revoked session never comes back.

use has_crypto::{KeyRole, PublicKey};
use has_protocol::payloads::AuthReqData;

use super::{Ctx, Refusal};
use crate::state::SessionRow;
use crate::state::enrollments::Window;

/// How the request carried its auth_key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyOrigin {
    /// Encrypted with the pre-shared auth_req_secret.
    Secret,
    /// Not sent: the key of a stored session decrypts the data.
    Stored,
}

/// What happens to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A new session (uses one session of an enrollment window).
    Create { max_expire: i64 },
    /// A live session renewed.
    Renew { id: i64 },
    /// An expired session brought back (uses one session of an enrollment window).
    Revive { id: i64, max_expire: i64 },
}

/// The challenge answered with the approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Sign `text` with the key of `role`.
    Sign { role: KeyRole, text: String },
    /// Hive Keychain's `app.pubkey` extension: `"#" + account` memo-encrypted to `target`
    /// with the posting key.
    KeychainMemo { target: PublicKey },
}

/// An approved authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The app the session is (or stays) recorded for.
    pub(crate) app: String,
    pub(crate) change: Change,
    /// The session's expiry after this request.
    pub(crate) expire: i64,
    /// The 0.8 token given back.
    pub(crate) token: Option<String>,
    pub(crate) challenge: Option<Challenge>,
    pub(crate) reason: String,
}

/// What the decision reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Input<'a> {
    /// The account the request is for.
    pub(crate) account: &'a str,
    pub(crate) data: &'a AuthReqData,
    /// The session that holds this auth_key, whatever its account.
    pub(crate) existing: Option<&'a SessionRow>,
    /// The enrollment windows open for the account.
    pub(crate) windows: &'a [Window],
    pub(crate) origin: KeyOrigin,
    /// A fresh 0.8 token for a new session.
    pub(crate) new_token: &'a str,
}

/// Whether a window admits a new session of `app` for `account`. A window opened for any app
/// does not admit an app that a policy rule names (`apps`): whoever holds the auth_req_secret
/// chooses the name it enrolls under, so an app with a rule of its own is enrolled only
/// through a window opened for it (`enroll --app`).
fn window_open(
    windows: &[Window],
    account: &str,
    app: &str,
    named_by_a_rule: bool,
    now: i64,
) -> bool {
    windows.iter().any(|w| {
        w.account == account
            && match w.app.as_deref() {
                Some(a) => a == app,
                None => !named_by_a_rule,
            }
            && w.until > now
            && w.uses_left.is_none_or(|u| u > 0)
    })
}

/// Decides an authentication request.
pub(crate) fn decide(i: &Input<'_>, ctx: &Ctx<'_>) -> Result<Plan, Refusal> {
    let lifetime = i64::try_from(ctx.settings.session_lifetime.as_millis()).unwrap_or(i64::MAX);
    let max_lifetime =
        i64::try_from(ctx.settings.session_max_lifetime.as_millis()).unwrap_or(i64::MAX);
    let requested_app = i.data.app.name.as_str();
    let (app, change, expire, token, reason) = match i.existing {
        Some(row) if row.account != i.account => return Err(Refusal::KeyInUse),
        Some(row) if row.revoked => return Err(Refusal::SessionEnded("was revoked")),
        Some(row) if row.expire > ctx.now => {
            let expire = ctx
                .now
                .saturating_add(lifetime)
                .min(row.max_expire)
                .max(row.expire);
            let reason = if row.app == requested_app {
                "session renewed".to_owned()
            } else {
                format!(
                    "session renewed (for the app it was created for, {:?}, not {:?})",
                    row.app, requested_app
                )
            };
            (
                row.app.clone(),
                Change::Renew { id: row.id },
                expire,
                row.token.clone(),
                reason,
            )
        }
        Some(row) => {
            if !window_open(
                i.windows,
                i.account,
                &row.app,
                ctx.settings.policy.names_app(&row.app),
                ctx.now,
            ) {
                return Err(Refusal::NoEnrollment(
                    "session expired and no enrollment window is open",
                ));
            }
            (
                row.app.clone(),
                Change::Revive {
                    id: row.id,
                    max_expire: ctx.now.saturating_add(max_lifetime),
                },
                ctx.now.saturating_add(lifetime),
                row.token.clone().or_else(|| Some(i.new_token.to_owned())),
                "expired session renewed (enrollment window open)".to_owned(),
            )
        }
        None => {
            if !window_open(
                i.windows,
                i.account,
                requested_app,
                ctx.settings.policy.names_app(requested_app),
                ctx.now,
            ) {
                return Err(Refusal::NoEnrollment(
                    "no enrollment window is open for this account and app",
                ));
            }
            let how = match i.origin {
                KeyOrigin::Secret => "new session (enrollment window open)",
                // Only stored sessions decrypt without the secret: unreachable in practice,
                // and still a new session under the same window rule.
                KeyOrigin::Stored => "new session (enrollment window open, stored key)",
            };
            (
                requested_app.to_owned(),
                Change::Create {
                    max_expire: ctx.now.saturating_add(max_lifetime),
                },
                ctx.now.saturating_add(lifetime),
                Some(i.new_token.to_owned()),
                how.to_owned(),
            )
        }
    };
    let challenge = match &i.data.challenge {
        Some(spec) => {
            if super::challenge::could_be_preimage(&spec.challenge, ctx.chain) {
                return Err(Refusal::Preimage);
            }
            let d =
                ctx.settings
                    .policy
                    .decide_challenge(i.account, &app, spec.key_type, false, false);
            if !d.approve {
                return Err(Refusal::Denied {
                    rule: d.rule,
                    reason: d.reason,
                });
            }
            let role = spec.key_type.role();
            if ctx.keys.get(role).is_none() {
                return Err(Refusal::NoKey(role));
            }
            Some(Challenge::Sign {
                role,
                text: spec.challenge.clone(),
            })
        }
        // Keychain's extension is a posting-key proof like a posting challenge: given only
        // when the policy allows posting-key challenges for this app (else left out).
        None => i
            .data
            .app
            .pubkey
            .as_deref()
            .and_then(|pk| {
                PublicKey::from_str_with_prefix(pk, "STM")
                    .or_else(|_| PublicKey::from_str_with_prefix(pk, "TST"))
                    .ok()
            })
            .filter(|_| ctx.keys.get(KeyRole::Posting).is_some())
            .filter(|_| {
                ctx.settings
                    .policy
                    .decide_challenge(
                        i.account,
                        &app,
                        has_protocol::KeyType::Posting,
                        false,
                        false,
                    )
                    .approve
            })
            .map(|target| Challenge::KeychainMemo { target }),
    };
    Ok(Plan {
        app,
        change,
        expire,
        token,
        challenge,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::keystore::AccountKeys;
    use has_crypto::PrivateKey;
    use has_protocol::KeyType;
    use has_protocol::payloads::{AppInfo, ChallengeSpec};
    use hive_chain::ChainId;
    use std::time::Duration;

    const NOW: i64 = 1_700_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn settings(policy: &str) -> Settings {
        Settings {
            auth_req_secret: None,
            session_lifetime: Duration::from_secs(3600),
            session_max_lifetime: Duration::from_secs(3 * 3600),
            auth_req_reject: true,
            sign_req_reject: true,
            challenge_req_reject: true,
            challenge_decrypt: false,
            challenge_nonce_required: false,
            expiration: Duration::from_secs(60),
            log_payloads: false,
            answer_retention: Duration::from_secs(86_400),
            audit_retention: None,
            policy: toml::from_str(policy).unwrap(),
        }
    }

    fn data(app: &str, challenge: Option<(KeyType, &str)>) -> AuthReqData {
        AuthReqData {
            app: AppInfo {
                name: app.into(),
                description: None,
                icon: None,
                pubkey: None,
            },
            challenge: challenge.map(|(key_type, c)| ChallengeSpec {
                key_type,
                challenge: c.into(),
            }),
            token: None,
        }
    }

    fn row(account: &str, app: &str, expire: i64, revoked: bool) -> SessionRow {
        SessionRow {
            id: 7,
            account: account.into(),
            app: app.into(),
            expire,
            max_expire: NOW + 2 * HOUR,
            last_nonce: 0,
            created: NOW - HOUR,
            last_used: None,
            revoked,
            origin: "secret".into(),
            token: Some("tok".into()),
        }
    }

    fn window(app: Option<&str>, uses: Option<i64>) -> Window {
        Window {
            id: 1,
            account: "alice".into(),
            app: app.map(str::to_owned),
            until: NOW + HOUR,
            uses_left: uses,
        }
    }

    fn keys() -> AccountKeys {
        AccountKeys {
            memo: Some(PrivateKey::from_login("alice", "pw", KeyRole::Memo).unwrap()),
            posting: Some(PrivateKey::from_login("alice", "pw", KeyRole::Posting).unwrap()),
            active: None,
        }
    }

    fn run(
        d: &AuthReqData,
        existing: Option<&SessionRow>,
        windows: &[Window],
        s: &Settings,
    ) -> Result<Plan, Refusal> {
        let k = keys();
        decide(
            &Input {
                account: "alice",
                data: d,
                existing,
                windows,
                origin: KeyOrigin::Secret,
                new_token: "new",
            },
            &Ctx {
                keys: &k,
                settings: s,
                chain: &ChainId::MAINNET,
                now: NOW,
            },
        )
    }

    #[test]
    fn a_key_of_another_account_is_refused_whatever_the_windows() {
        let s = settings("");
        let bob = row("bob", "game", NOW + HOUR, false);
        let w = [window(None, None)];
        assert_eq!(
            run(&data("game", None), Some(&bob), &w, &s),
            Err(Refusal::KeyInUse)
        );
        let bob_expired = row("bob", "game", NOW - 1, false);
        assert_eq!(
            run(&data("game", None), Some(&bob_expired), &w, &s),
            Err(Refusal::KeyInUse)
        );
    }

    #[test]
    fn new_sessions_need_a_window_for_the_account_and_app() {
        let s = settings("");
        let d = data("game", None);
        assert!(matches!(
            run(&d, None, &[], &s),
            Err(Refusal::NoEnrollment(_))
        ));
        assert!(matches!(
            run(&d, None, &[window(Some("other"), None)], &s),
            Err(Refusal::NoEnrollment(_))
        ));
        assert!(matches!(
            run(&d, None, &[window(None, Some(0))], &s),
            Err(Refusal::NoEnrollment(_))
        ));
        let p = run(&d, None, &[window(Some("game"), Some(1))], &s).unwrap();
        assert_eq!(p.app, "game");
        assert_eq!(
            p.change,
            Change::Create {
                max_expire: NOW + 3 * HOUR
            }
        );
        assert_eq!(p.expire, NOW + HOUR);
        assert_eq!(p.token.as_deref(), Some("new"));
    }

    #[test]
    fn renewal_keeps_the_recorded_app_and_the_cap() {
        let s = settings("");
        let live = row("alice", "bot", NOW + 10, false);
        let p = run(&data("admin", None), Some(&live), &[], &s).unwrap();
        assert_eq!(p.app, "bot", "the recorded app, not the request's");
        assert_eq!(p.change, Change::Renew { id: 7 });
        assert_eq!(p.expire, NOW + HOUR);
        assert!(p.reason.contains("\"bot\""), "{}", p.reason);
        let mut capped = live.clone();
        capped.max_expire = NOW + 100;
        assert_eq!(
            run(&data("bot", None), Some(&capped), &[], &s)
                .unwrap()
                .expire,
            NOW + 100
        );
        assert_eq!(p.token.as_deref(), Some("tok"));
    }

    #[test]
    fn revoked_sessions_never_come_back_and_expired_ones_need_a_window() {
        let s = settings("");
        let w = [window(None, None)];
        let revoked = row("alice", "bot", NOW + HOUR, true);
        assert_eq!(
            run(&data("bot", None), Some(&revoked), &w, &s),
            Err(Refusal::SessionEnded("was revoked"))
        );
        let expired = row("alice", "bot", NOW, false);
        assert!(matches!(
            run(&data("bot", None), Some(&expired), &[], &s),
            Err(Refusal::NoEnrollment(_))
        ));
        // A window for another app does not revive bot's session.
        assert!(matches!(
            run(
                &data("bot", None),
                Some(&expired),
                &[window(Some("game"), None)],
                &s
            ),
            Err(Refusal::NoEnrollment(_))
        ));
        let p = run(&data("game", None), Some(&expired), &w, &s).unwrap();
        assert_eq!(p.app, "bot");
        assert_eq!(
            p.change,
            Change::Revive {
                id: 7,
                max_expire: NOW + 3 * HOUR
            }
        );
    }

    #[test]
    fn the_challenge_follows_the_policy_of_the_recorded_app() {
        let s = settings(
            r#"
            [[rules]]
            id = "admin"
            apps = ["admin"]
            challenge_roles = ["posting", "active"]
            "#,
        );
        let live = row("alice", "bot", NOW + HOUR, false);
        let d = data("admin", Some((KeyType::Active, "x")));
        assert_eq!(
            run(&d, Some(&live), &[], &s),
            Err(Refusal::Denied {
                rule: "default".into(),
                reason: "challenges with the active key are not allowed".into()
            })
        );
        // The admin app itself would be allowed, but this service holds no active key.
        let admin = row("alice", "admin", NOW + HOUR, false);
        assert_eq!(
            run(&d, Some(&admin), &[], &s),
            Err(Refusal::NoKey(KeyRole::Active))
        );
        let p = run(
            &data("bot", Some((KeyType::Posting, "login"))),
            Some(&live),
            &[],
            &s,
        )
        .unwrap();
        assert_eq!(
            p.challenge,
            Some(Challenge::Sign {
                role: KeyRole::Posting,
                text: "login".into()
            })
        );
        // A challenge that starts with the chain id is never signed.
        let chain = ChainId(*b"0123456789abcdef0123456789abcdef");
        let k = keys();
        let d = data(
            "bot",
            Some((KeyType::Posting, "0123456789abcdef0123456789abcdefx")),
        );
        let r = decide(
            &Input {
                account: "alice",
                data: &d,
                existing: Some(&live),
                windows: &[],
                origin: KeyOrigin::Stored,
                new_token: "t",
            },
            &Ctx {
                keys: &k,
                settings: &s,
                chain: &chain,
                now: NOW,
            },
        );
        assert_eq!(r, Err(Refusal::Preimage));
    }

    #[test]
    fn keychain_pubkey_extension() {
        let s = settings("");
        let live = row("alice", "bot", NOW + HOUR, false);
        let target = PrivateKey::generate();
        let mut d = data("bot", None);
        d.app.pubkey = Some(target.public_key().to_string());
        let p = run(&d, Some(&live), &[], &s).unwrap();
        assert_eq!(
            p.challenge,
            Some(Challenge::KeychainMemo {
                target: *target.public_key()
            })
        );
        d.app.pubkey = Some("not a key".into());
        assert_eq!(run(&d, Some(&live), &[], &s).unwrap().challenge, None);
        // A posting-key proof, given only when posting challenges are allowed.
        let memo_only = settings("[[rules]]\nid = \"m\"\nchallenge_roles = [\"memo\"]");
        d.app.pubkey = Some(target.public_key().to_string());
        assert_eq!(
            run(&d, Some(&live), &[], &memo_only).unwrap().challenge,
            None
        );
        // No posting key held: no proof.
        let mut k = keys();
        k.posting = None;
        let p = decide(
            &Input {
                account: "alice",
                data: &d,
                existing: Some(&live),
                windows: &[],
                origin: KeyOrigin::Stored,
                new_token: "t",
            },
            &Ctx {
                keys: &k,
                settings: &s,
                chain: &ChainId::MAINNET,
                now: NOW,
            },
        );
        assert_eq!(p.unwrap().challenge, None);
    }

    #[test]
    fn a_window_for_any_app_does_not_enroll_an_app_a_rule_names() {
        let s = settings(
            "[[rules]]\nid = \"admin\"\napps = [\"admin*\"]\nchallenge_roles = [\"active\"]",
        );
        let any = [window(None, None)];
        assert!(matches!(
            run(&data("admin-2", None), None, &any, &s),
            Err(Refusal::NoEnrollment(_))
        ));
        assert!(run(&data("bot", None), None, &any, &s).is_ok());
        assert!(
            run(
                &data("admin-2", None),
                None,
                &[window(Some("admin-2"), None)],
                &s
            )
            .is_ok()
        );
        // Nor revives an expired session of such an app.
        let expired = row("alice", "admin-2", NOW, false);
        assert!(matches!(
            run(&data("x", None), Some(&expired), &any, &s),
            Err(Refusal::NoEnrollment(_))
        ));
    }
}
