//! `sign_req`: sign (and broadcast) operations.
//!
//! The required authorities are computed from the operations (the request's `key_type` is
//! only a hint); the policy decides with the session's recorded app; a transaction that
//! needs no authority, owner authority, another account's authority, or an asset of another
//! chain is refused whatever the rules say.

use has_crypto::KeyRole;
use has_protocol::payloads::SignReqData;
use hive_chain::{Level, Operation, Transaction};

use super::{Ctx, NonceCheck, Refusal};
use crate::policy::Spend;
use crate::sessions::SessionView;

/// An approved sign request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) ops: Vec<Operation>,
    /// The key roles that sign (one per required level).
    pub(crate) roles: Vec<KeyRole>,
    pub(crate) broadcast: bool,
    /// Counted against the rule's spend limits when recorded.
    pub(crate) spend: Vec<Spend>,
    /// The request's nonce; None when the rule accepts sign requests without one (the
    /// request's data is then used once instead).
    pub(crate) nonce: Option<i64>,
    pub(crate) rule: String,
    pub(crate) reason: String,
}

/// The key role that signs for a level (owner: none, never).
fn role_of(level: Level) -> Option<KeyRole> {
    match level {
        Level::Posting => Some(KeyRole::Posting),
        Level::Active => Some(KeyRole::Active),
        Level::Owner => None,
    }
}

/// Decides a sign request of `session`; `ops` are the parsed operations (or the parse
/// error).
pub(crate) fn decide(
    data: &SignReqData,
    ops: Result<Vec<Operation>, String>,
    session: &SessionView,
    nonce: NonceCheck,
    ctx: &Ctx<'_>,
) -> Result<Plan, Refusal> {
    if let Some(why) = session.ended(ctx.now) {
        return Err(Refusal::SessionEnded(why));
    }
    let nonce = nonce.accept(false)?;
    if nonce.is_none()
        && !ctx
            .settings
            .policy
            .sign_without_nonce(&session.account, &session.app)
    {
        return Err(Refusal::NonceRequired);
    }
    let ops = ops.map_err(|e| Refusal::Invalid(format!("invalid operations: {e}")))?;
    // What hived would refuse is refused before any signature, saying why.
    for op in &ops {
        op.validate()
            .map_err(|e| Refusal::InvalidOperation(e.to_string()))?;
    }
    let required = Transaction {
        ref_block_num: 0,
        ref_block_prefix: 0,
        expiration: hive_chain::TimePointSec(0),
        operations: ops.clone(),
        extensions: Default::default(),
    }
    .required();
    let d = ctx.settings.policy.decide_sign(
        &session.account,
        &session.app,
        &ops,
        &required,
        data.broadcast,
        ctx.chain,
    );
    if !d.approve {
        return Err(Refusal::Denied {
            rule: d.rule,
            reason: d.reason,
        });
    }
    let mut roles = vec![];
    for level in required
        .accounts
        .iter()
        .map(|(_, l)| *l)
        .collect::<std::collections::BTreeSet<_>>()
    {
        // The policy refused owner authority already; a level without a role is refused here
        // too rather than signed with anything else.
        let role = role_of(level).ok_or(Refusal::Denied {
            rule: "builtin".into(),
            reason: "owner authority is never used".into(),
        })?;
        if ctx.keys.get(role).is_none() {
            return Err(Refusal::NoKey(role));
        }
        roles.push(role);
    }
    Ok(Plan {
        ops,
        roles,
        broadcast: data.broadcast,
        spend: d.spend,
        nonce,
        rule: d.rule,
        reason: d.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::keystore::AccountKeys;
    use has_crypto::PrivateKey;
    use has_protocol::KeyType;
    use hive_chain::ChainId;
    use serde_json::{Value, json};
    use std::time::Duration;

    const NOW: i64 = 1_700_000_000_000;

    fn settings(policy: &str) -> Settings {
        Settings {
            auth_req_secret: None,
            session_lifetime: Duration::from_secs(3600),
            session_max_lifetime: Duration::from_secs(7200),
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

    fn session(app: &str) -> SessionView {
        SessionView {
            id: 1,
            account: "alice".into(),
            app: app.into(),
            expire: NOW + 1000,
            revoked: false,
        }
    }

    fn keys(active: bool) -> AccountKeys {
        AccountKeys {
            memo: None,
            posting: Some(PrivateKey::from_login("alice", "pw", KeyRole::Posting).unwrap()),
            active: active.then(|| PrivateKey::from_login("alice", "pw", KeyRole::Active).unwrap()),
        }
    }

    fn run(
        ops: Value,
        app: &str,
        nonce: NonceCheck,
        policy: &str,
        active: bool,
    ) -> Result<Plan, Refusal> {
        let list = ops.as_array().cloned().unwrap_or_default();
        let data = SignReqData {
            key_type: KeyType::Posting,
            ops: list.clone(),
            broadcast: true,
            nonce: None,
        };
        let parsed = Operation::list_from_json(&list).map_err(|e| e.to_string());
        decide(
            &data,
            parsed,
            &session(app),
            nonce,
            &Ctx {
                keys: &keys(active),
                settings: &settings(policy),
                chain: &ChainId::MAINNET,
                now: NOW,
            },
        )
    }

    fn vote() -> Value {
        json!([["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": 100}]])
    }

    #[test]
    fn session_and_nonce_come_first() {
        let mut s = session("app");
        s.expire = NOW - 1;
        let data = SignReqData {
            key_type: KeyType::Posting,
            ops: vote().as_array().cloned().unwrap(),
            broadcast: true,
            nonce: None,
        };
        let st = settings("");
        let ops = || Ok(Operation::list_from_json(&data.ops).unwrap());
        assert_eq!(
            decide(
                &data,
                ops(),
                &s,
                NonceCheck::Reserved(1),
                &Ctx {
                    keys: &keys(false),
                    settings: &st,
                    chain: &ChainId::MAINNET,
                    now: NOW
                }
            ),
            Err(Refusal::SessionEnded("expired"))
        );
        assert_eq!(
            run(vote(), "app", NonceCheck::Absent, "", false),
            Err(Refusal::NonceRequired)
        );
        assert_eq!(
            run(vote(), "app", NonceCheck::Used(3), "", false),
            Err(Refusal::Replay(3))
        );
        assert_eq!(
            run(vote(), "app", NonceCheck::Ahead(3), "", false),
            Err(Refusal::NonceAhead(3))
        );
        let p = run(vote(), "app", NonceCheck::Reserved(3), "", false).unwrap();
        assert_eq!(
            (p.nonce, p.roles.clone(), p.rule.as_str()),
            (Some(3), vec![KeyRole::Posting], "default")
        );
        // Without a nonce only where the app's rule says so.
        let rule = "[[rules]]\nid = \"lib\"\napps = [\"nonceless\"]\nsign_without_nonce = true";
        let p = run(vote(), "nonceless", NonceCheck::Absent, rule, false).unwrap();
        assert_eq!((p.nonce, p.rule.as_str()), (None, "lib"));
        assert_eq!(
            run(vote(), "other", NonceCheck::Absent, rule, false),
            Err(Refusal::NonceRequired)
        );
        // A nonce it sends is still checked.
        assert_eq!(
            run(vote(), "nonceless", NonceCheck::Used(3), rule, false),
            Err(Refusal::Replay(3))
        );
    }

    #[test]
    fn invalid_operations_and_no_authority() {
        assert!(matches!(
            run(
                json!([["vote", {"voter": "alice"}]]),
                "app",
                NonceCheck::Reserved(1),
                "",
                false
            ),
            Err(Refusal::Invalid(_))
        ));
        let none = json!([["custom_json", {"required_auths": [], "required_posting_auths": [], "id": "x", "json": "{}"}]]);
        // hived's validation refuses it first (a custom_json names at least one account).
        assert_eq!(
            run(none, "app", NonceCheck::Reserved(1), "", false),
            Err(Refusal::InvalidOperation(
                "custom_json: required_auths: at least one account must be given".into()
            ))
        );
        // And what hived refuses is refused, saying why.
        assert_eq!(
            run(
                json!([["vote", {"voter": "alice", "author": "bob", "permlink": "p", "weight": 10001}]]),
                "app",
                NonceCheck::Reserved(1),
                "",
                false
            ),
            Err(Refusal::InvalidOperation(
                "vote: weight: more than 100 % (10000)".into()
            ))
        );
    }

    #[test]
    fn the_rule_is_the_session_apps_and_keys_must_be_held() {
        let policy = r#"
            [[rules]]
            id = "bank"
            apps = ["bank"]
            allowed_ops = ["transfer"]
            key_roles = ["active"]
        "#;
        let t = json!([["transfer", {"from": "alice", "to": "bob", "amount": "1.000 HIVE", "memo": ""}]]);
        assert!(matches!(
            run(t.clone(), "game", NonceCheck::Reserved(1), policy, true),
            Err(Refusal::Denied { rule, .. }) if rule == "default"
        ));
        assert_eq!(
            run(t.clone(), "bank", NonceCheck::Reserved(1), policy, false),
            Err(Refusal::NoKey(KeyRole::Active))
        );
        let p = run(t, "bank", NonceCheck::Reserved(1), policy, true).unwrap();
        assert_eq!((p.roles, p.rule.as_str()), (vec![KeyRole::Active], "bank"));
    }
}
