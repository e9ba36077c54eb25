//! `challenge_req`: sign a text with a key of the account, or decrypt a memo.
//!
//! A challenge is signed as sha256(text) and a transaction as sha256(chain_id ‖ tx), with the
//! same canonical signature. A text whose bytes start with the chain id could therefore be a
//! transaction's signing data (on a chain id that is valid UTF-8, an app could choose one
//! that signs a transfer the policy refuses): such a challenge is refused, whatever the
//! policy says of challenges.

use has_crypto::KeyRole;
use has_protocol::payloads::ChallengeReqData;
use hive_chain::ChainId;

use super::{Ctx, NonceCheck, Refusal};
use crate::sessions::SessionView;

/// Whether signing `text` could sign a transaction on `chain`.
pub(crate) fn could_be_preimage(text: &str, chain: &ChainId) -> bool {
    text.as_bytes().starts_with(&chain.0)
}

/// An approved challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) role: KeyRole,
    pub(crate) text: String,
    /// Decrypt the memo `text` instead of signing it.
    pub(crate) decrypt: bool,
    /// The nonce consumed, if any.
    pub(crate) nonce: Option<i64>,
    pub(crate) rule: String,
    pub(crate) reason: String,
}

/// Decides a challenge request of `session` (the session's app, not the request's text,
/// is what the policy sees).
pub(crate) fn decide(
    data: &ChallengeReqData,
    session: &SessionView,
    nonce: NonceCheck,
    ctx: &Ctx<'_>,
) -> Result<Plan, Refusal> {
    if let Some(why) = session.ended(ctx.now) {
        return Err(Refusal::SessionEnded(why));
    }
    let nonce = nonce.accept(ctx.settings.challenge_nonce_required)?;
    let decrypt = data.decrypt.unwrap_or(false);
    if !decrypt && could_be_preimage(&data.challenge, ctx.chain) {
        return Err(Refusal::Preimage);
    }
    let d = ctx.settings.policy.decide_challenge(
        &session.account,
        &session.app,
        data.key_type,
        decrypt,
        ctx.settings.challenge_decrypt,
    );
    if !d.approve {
        return Err(Refusal::Denied {
            rule: d.rule,
            reason: d.reason,
        });
    }
    let role = data.key_type.role();
    if ctx.keys.get(role).is_none() {
        return Err(Refusal::NoKey(role));
    }
    Ok(Plan {
        role,
        text: data.challenge.clone(),
        decrypt,
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
    use std::time::Duration;

    const NOW: i64 = 1_700_000_000_000;

    fn settings(policy: &str, decrypt: bool, nonce_required: bool) -> Settings {
        Settings {
            auth_req_secret: None,
            session_lifetime: Duration::from_secs(3600),
            session_max_lifetime: Duration::from_secs(7200),
            auth_req_reject: true,
            sign_req_reject: true,
            challenge_req_reject: true,
            challenge_decrypt: decrypt,
            challenge_nonce_required: nonce_required,
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

    fn keys() -> AccountKeys {
        AccountKeys {
            memo: Some(PrivateKey::from_login("alice", "pw", KeyRole::Memo).unwrap()),
            posting: Some(PrivateKey::from_login("alice", "pw", KeyRole::Posting).unwrap()),
            active: Some(PrivateKey::from_login("alice", "pw", KeyRole::Active).unwrap()),
        }
    }

    fn data(key_type: KeyType, text: &str, decrypt: bool) -> ChallengeReqData {
        ChallengeReqData {
            key_type,
            challenge: text.into(),
            decrypt: Some(decrypt),
            nonce: None,
        }
    }

    fn ctx<'a>(k: &'a AccountKeys, st: &'a Settings, chain: &'a ChainId) -> Ctx<'a> {
        Ctx {
            keys: k,
            settings: st,
            chain,
            now: NOW,
        }
    }

    fn run(
        d: &ChallengeReqData,
        s: &SessionView,
        n: NonceCheck,
        st: &Settings,
    ) -> Result<Plan, Refusal> {
        decide(d, s, n, &ctx(&keys(), st, &ChainId::MAINNET))
    }

    #[test]
    fn ended_sessions_are_refused_with_or_without_a_nonce() {
        let st = settings("", false, false);
        let d = data(KeyType::Posting, "hi", false);
        let mut s = session("app");
        s.revoked = true;
        assert_eq!(
            run(&d, &s, NonceCheck::Absent, &st),
            Err(Refusal::SessionEnded("was revoked"))
        );
        let mut s = session("app");
        s.expire = NOW;
        assert_eq!(
            run(&d, &s, NonceCheck::Reserved(5), &st),
            Err(Refusal::SessionEnded("expired"))
        );
    }

    #[test]
    fn nonces() {
        let d = data(KeyType::Posting, "hi", false);
        let s = session("app");
        assert_eq!(
            run(&d, &s, NonceCheck::Absent, &settings("", false, true)),
            Err(Refusal::NonceRequired)
        );
        let st = settings("", false, false);
        assert_eq!(run(&d, &s, NonceCheck::Absent, &st).unwrap().nonce, None);
        assert_eq!(
            run(&d, &s, NonceCheck::Reserved(9), &st).unwrap().nonce,
            Some(9)
        );
        assert_eq!(
            run(&d, &s, NonceCheck::Used(9), &st),
            Err(Refusal::Replay(9))
        );
        assert_eq!(
            run(&d, &s, NonceCheck::Ahead(9), &st),
            Err(Refusal::NonceAhead(9))
        );
    }

    #[test]
    fn policy_sees_the_session_app() {
        let st = settings(
            r#"
            [[rules]]
            id = "ops"
            apps = ["ops"]
            challenge_roles = ["active"]
            memo_decrypt = true
            "#,
            true,
            false,
        );
        let active = data(KeyType::Active, "hi", false);
        assert!(run(&active, &session("ops"), NonceCheck::Absent, &st).is_ok());
        assert!(matches!(
            run(&active, &session("bot"), NonceCheck::Absent, &st),
            Err(Refusal::Denied { .. })
        ));
        // Memo decryption needs the service switch and the rule.
        let dec = data(KeyType::Active, "#memo", true);
        assert!(
            run(&dec, &session("ops"), NonceCheck::Absent, &st)
                .unwrap()
                .decrypt
        );
        let off = settings(
            "[[rules]]\nid = \"ops\"\nchallenge_roles = [\"active\"]\nmemo_decrypt = true",
            false,
            false,
        );
        assert!(matches!(
            run(&dec, &session("ops"), NonceCheck::Absent, &off),
            Err(Refusal::Denied { .. })
        ));
        let mut k = keys();
        k.active = None;
        assert_eq!(
            decide(
                &active,
                &session("ops"),
                NonceCheck::Absent,
                &ctx(&k, &st, &ChainId::MAINNET)
            ),
            Err(Refusal::NoKey(KeyRole::Active))
        );
    }

    #[test]
    fn a_possible_transaction_preimage_is_never_signed() {
        let st = settings(
            "[[rules]]\nid = \"all\"\nchallenge_roles = [\"memo\", \"posting\", \"active\"]",
            false,
            false,
        );
        let chain = ChainId(*b"an-ascii-chain-id-of-32-bytes!!!");
        let text = "an-ascii-chain-id-of-32-bytes!!!\u{1}\u{2}transfer";
        let d = data(KeyType::Active, text, false);
        assert_eq!(
            decide(
                &d,
                &session("x"),
                NonceCheck::Absent,
                &ctx(&keys(), &st, &chain)
            ),
            Err(Refusal::Preimage)
        );
        // Shorter than the chain id, or elsewhere in the text: signed.
        for ok in ["an-ascii-chain-id", "x an-ascii-chain-id-of-32-bytes!!!"] {
            let d = data(KeyType::Active, ok, false);
            assert!(
                decide(
                    &d,
                    &session("x"),
                    NonceCheck::Absent,
                    &ctx(&keys(), &st, &chain)
                )
                .is_ok()
            );
        }
        // Mainnet's id is not valid UTF-8: no text starts with it.
        assert!(!could_be_preimage(text, &ChainId::MAINNET));
    }
}
