//! The one wire mapping: a [`Refusal`] becomes an [`Outcome`] here, and an outcome becomes a
//! frame (with a fresh POK over the request id) here. Nothing else builds a reply.
//!
//! One rule for every command:
//!
//! | refusal | the app gets |
//! | --- | --- |
//! | the policy denies; the session is revoked, expired or not this account's; no enrollment window | `*_nack` if the operator set `<cmd>_reject = true`, else nothing |
//! | a replayed, missing or far-ahead nonce; an invalid payload; a key the service does not hold; a challenge that could be a transaction's signing data; an undecryptable memo; the Hive API unreachable; a failed broadcast | `sign_err`/`challenge_err` with the fixed text of [`error_text`], encrypted with the session key; `auth_err` with [`AUTH_ERR_TEXT`] in clear, as apps read it |
//!
//! The detail (which rule, which node, the node's message) goes to the audit and the log,
//! never to the app. Requests no session of ours can decrypt get nothing at all.

use has_crypto::PublicKey;
use has_crypto::memo::pok;
use has_protocol::messages::*;
use has_protocol::payloads::{ErrorText, SignAckData};
use has_protocol::{AuthKey, Encrypted, PksaToRelay, RequestId};
use hive_chain::rpc::NodeErrorKind;
use serde_json::Value;

use super::{Core, Family, Outcome, Refusal};
use crate::config::Settings;
use crate::keystore::AccountKeys;

/// The text of every `auth_err` (the reference PKSA's): sent in clear, so it says nothing
/// about the cause, which goes to the audit and the log.
pub(crate) const AUTH_ERR_TEXT: &str = "Failed to process authentication request";

/// The fixed text an app sees for an error-class refusal (None: a refusal-class one).
pub(crate) fn error_text(r: &Refusal) -> Option<String> {
    Some(match r {
        Refusal::Denied { .. }
        | Refusal::SessionEnded(_)
        | Refusal::NoEnrollment(_)
        | Refusal::KeyInUse => return None,
        Refusal::Replay(_) => has_protocol::payloads::NONCE_ALREADY_USED.into(),
        Refusal::NonceRequired => "nonce is required".into(),
        Refusal::NonceAhead(_) => "nonce is too far ahead of the clock".into(),
        Refusal::Invalid(_) => "invalid request".into(),
        // The app's own operation and the rule it breaks (nothing of the service's).
        Refusal::InvalidOperation(m) => format!("invalid operation: {m}"),
        Refusal::NoKey(role) => format!("this service holds no {role} key for this account"),
        Refusal::Preimage => {
            "challenge refused: it could be the signing data of a transaction".into()
        }
        Refusal::Memo(_) => "the memo could not be decrypted".into(),
        Refusal::HiveApi(_) => "the Hive API is unavailable; try again later".into(),
        Refusal::Transaction(_) => "the transaction could not be built".into(),
        Refusal::BroadcastUnavailable(_) => {
            "broadcast failed: the Hive API is unavailable; try again later".into()
        }
        Refusal::Broadcast { kind, .. } => match kind {
            NodeErrorKind::MissingAuthority => {
                "broadcast failed: the node says a required authority is missing"
            }
            NodeErrorKind::Expired => "broadcast failed: the transaction expired",
            NodeErrorKind::Tapos => "broadcast failed: the reference block is unknown to the node",
            NodeErrorKind::Duplicate => "broadcast failed: duplicate transaction",
            _ => "broadcast failed: the node refused the transaction",
        }
        .into(),
    })
}

/// What the app gets for a refusal (see the module docs); `key` is the session's (or the
/// authenticating app's) auth_key.
pub(crate) fn refused(r: &Refusal, family: Family, settings: &Settings, key: &AuthKey) -> Outcome {
    match error_text(r) {
        // Apps read `auth_err.error` as it is (hive-auth-wrapper hands the frame over,
        // Aioha shows `error`, hive-auth-client emits it), as the reference PKSA sends it:
        // in clear, so one fixed text that tells the relay nothing.
        Some(_) if family == Family::Auth => Outcome::Err {
            error: AUTH_ERR_TEXT.into(),
        },
        // `sign_err` and `challenge_err` are decrypted by the apps (wrapper, Aioha).
        Some(text) => Outcome::Err {
            error: Encrypted::encrypt(&ErrorText(text), key)
                .as_str()
                .to_owned(),
        },
        None if family.reject(settings) => Outcome::Nack,
        None => Outcome::Silent {
            reason: r.audit().2,
        },
    }
}

/// The reply frame for an outcome, with a fresh POK over `uuid` (None: silence, or an
/// outcome that needs a key we do not have).
pub(crate) fn frame(
    core: &Core,
    server_key: &PublicKey,
    keys: &AccountKeys,
    family: Family,
    uuid: &RequestId,
    outcome: &Outcome,
    key: Option<&AuthKey>,
) -> Option<PksaToRelay> {
    let pok = keys
        .lowest()
        .map(|k| pok::encode(&core.pok_cache.channel(k, server_key), uuid.as_str()));
    let uuid = uuid.clone();
    Some(match (family, outcome) {
        (_, Outcome::Silent { .. }) | (_, Outcome::Signing { .. }) => return None,
        (Family::Auth, Outcome::AuthAck { data }) => PksaToRelay::AuthAck(AuthAck {
            uuid,
            data: Encrypted::from_ciphertext(data.clone()),
            pok,
        }),
        (Family::Challenge, Outcome::ChallengeAck { data }) => {
            PksaToRelay::ChallengeAck(ChallengeAck {
                uuid,
                data: Encrypted::from_ciphertext(data.clone()),
                pok,
            })
        }
        (Family::Sign, Outcome::SignAck { broadcast, data }) => {
            let data = match data {
                Value::String(s) => SignAckData::TxId(s.clone()),
                Value::Object(o) => SignAckData::Transaction(o.clone()),
                _ => return None,
            };
            PksaToRelay::SignAck(SignAck {
                uuid,
                broadcast: Some(*broadcast),
                data,
                pok,
            })
        }
        (f, Outcome::Nack) => {
            let n = Nack::new(uuid, key?, pok);
            match f {
                Family::Auth => PksaToRelay::AuthNack(n),
                Family::Sign => PksaToRelay::SignNack(n),
                Family::Challenge => PksaToRelay::ChallengeNack(n),
            }
        }
        (f, Outcome::Err { error }) => {
            let e = ReplyError {
                uuid,
                error: error.clone(),
                pok,
            };
            match f {
                Family::Auth => PksaToRelay::AuthErr(e),
                Family::Sign => PksaToRelay::SignErr(e),
                Family::Challenge => PksaToRelay::ChallengeErr(e),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(reject: bool) -> Settings {
        Settings {
            auth_req_secret: None,
            session_lifetime: Duration::from_secs(3600),
            session_max_lifetime: Duration::from_secs(7200),
            auth_req_reject: reject,
            sign_req_reject: reject,
            challenge_req_reject: reject,
            challenge_decrypt: false,
            challenge_nonce_required: false,
            expiration: Duration::from_secs(60),
            log_payloads: false,
            answer_retention: Duration::from_secs(86_400),
            audit_retention: None,
            policy: Default::default(),
        }
    }

    #[test]
    fn one_rule_for_every_command() {
        let key = AuthKey::generate();
        let refusals = [
            Refusal::Denied {
                rule: "r".into(),
                reason: "no".into(),
            },
            Refusal::SessionEnded("expired"),
            Refusal::NoEnrollment("closed"),
            Refusal::KeyInUse,
        ];
        for f in [Family::Auth, Family::Sign, Family::Challenge] {
            for r in &refusals {
                assert_eq!(
                    refused(r, f, &settings(true), &key),
                    Outcome::Nack,
                    "{f:?} {r:?}"
                );
                assert!(matches!(
                    refused(r, f, &settings(false), &key),
                    Outcome::Silent { .. }
                ));
            }
        }
    }

    #[test]
    fn errors_carry_fixed_texts_only() {
        let key = AuthKey::generate();
        let detail = "http://10.0.0.5:8091: connection refused";
        for r in [
            Refusal::HiveApi(detail.into()),
            Refusal::BroadcastUnavailable(detail.into()),
            Refusal::Broadcast {
                kind: NodeErrorKind::Other,
                detail: detail.into(),
            },
            Refusal::Invalid(detail.into()),
            Refusal::Transaction(detail.into()),
            Refusal::Memo(detail.into()),
        ] {
            let Outcome::Err { error } = refused(&r, Family::Sign, &settings(true), &key) else {
                panic!("{r:?}")
            };
            let text = Encrypted::<ErrorText>::from_ciphertext(error)
                .decrypt(&key)
                .unwrap()
                .0;
            assert!(
                !text.contains("10.0.0.5") && !text.contains("http"),
                "{text}"
            );
            assert_eq!(Some(text), error_text(&r));
        }
    }
}
