//! Reading and writing frames: JSON → `cmd` → schema → typed value, and back.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{FrameError, ValidationFailure};
use crate::messages::{AppToRelay, PksaToRelay, RelayToApp, RelayToPksa};
use crate::validate::{self, dir};

/// A direction enum: which schema set applies to its frames.
pub trait Direction: Serialize + DeserializeOwned {
    /// Directory/direction name of its schemas.
    const DIR: &'static str;
    /// The value for a `cmd` this direction does not know.
    fn unknown() -> Self;
}

impl Direction for AppToRelay {
    const DIR: &'static str = dir::APP_TO_RELAY;
    fn unknown() -> Self {
        AppToRelay::Unknown
    }
}
impl Direction for PksaToRelay {
    const DIR: &'static str = dir::PKSA_TO_RELAY;
    fn unknown() -> Self {
        PksaToRelay::Unknown
    }
}
impl Direction for RelayToPksa {
    const DIR: &'static str = dir::RELAY_TO_PKSA;
    fn unknown() -> Self {
        RelayToPksa::Unknown
    }
}
impl Direction for RelayToApp {
    const DIR: &'static str = dir::RELAY_TO_APP;
    fn unknown() -> Self {
        RelayToApp::Unknown
    }
}

/// Parses text into a JSON object and its `cmd`.
fn split(text: &str) -> Result<(Value, String), FrameError> {
    if text.trim() == "ping" {
        return Err(FrameError::Ping);
    }
    let value: Value = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    let cmd = match value.as_object() {
        None => return Err(FrameError::NotObject),
        Some(obj) => match obj.get("cmd").and_then(Value::as_str) {
            Some(c) => c.to_owned(),
            None => return Err(FrameError::MissingCmd),
        },
    };
    Ok((value, cmd))
}

fn typed<T: Direction>(value: Value, cmd: &str) -> Result<T, FrameError> {
    if !validate::is_known(T::DIR, cmd) {
        return Ok(T::unknown());
    }
    validate::validate(T::DIR, cmd, &value).map_err(FrameError::Invalid)?;
    T::deserialize(&value).map_err(|e| {
        FrameError::Invalid(ValidationFailure {
            message: cmd.to_owned(),
            pointer: String::new(),
            rule: e.to_string(),
        })
    })
}

/// Parses and validates a frame of direction `T`. An unknown `cmd` gives `T`'s `Unknown`.
pub fn parse<T: Direction>(text: &str) -> Result<T, FrameError> {
    let (value, cmd) = split(text)?;
    typed(value, &cmd)
}

/// Parses with a size limit first.
pub fn parse_limited<T: Direction>(text: &str, max_bytes: usize) -> Result<T, FrameError> {
    if text.len() > max_bytes {
        return Err(FrameError::TooLarge(text.len()));
    }
    parse(text)
}

/// What a server reads: the server cannot tell apps from PKSAs, so it sorts by `cmd`.
#[derive(Debug, Clone, PartialEq)]
pub enum ToRelay {
    /// A command apps send.
    App(AppToRelay),
    /// A command PKSAs send (including `error`).
    Pksa(PksaToRelay),
    /// An unknown `cmd` (Keychain Mobile's `auth_wait`, …): to be ignored.
    Unknown(String),
}

impl ToRelay {
    /// The `cmd` of this frame.
    pub fn cmd(&self) -> &str {
        match self {
            ToRelay::App(AppToRelay::AuthReq(_)) => "auth_req",
            ToRelay::App(AppToRelay::SignReq(_)) => "sign_req",
            ToRelay::App(AppToRelay::ChallengeReq(_)) => "challenge_req",
            ToRelay::App(AppToRelay::AttachReq(_)) => "attach_req",
            ToRelay::Pksa(p) => pksa_cmd(p),
            ToRelay::App(AppToRelay::Unknown) => "unknown",
            ToRelay::Unknown(c) => c,
        }
    }
}

fn pksa_cmd(p: &PksaToRelay) -> &'static str {
    match p {
        PksaToRelay::KeyReq => "key_req",
        PksaToRelay::RegisterReq(_) => "register_req",
        PksaToRelay::AuthAck(_) => "auth_ack",
        PksaToRelay::AuthNack(_) => "auth_nack",
        PksaToRelay::AuthErr(_) => "auth_err",
        PksaToRelay::SignAck(_) => "sign_ack",
        PksaToRelay::SignNack(_) => "sign_nack",
        PksaToRelay::SignErr(_) => "sign_err",
        PksaToRelay::ChallengeAck(_) => "challenge_ack",
        PksaToRelay::ChallengeNack(_) => "challenge_nack",
        PksaToRelay::ChallengeErr(_) => "challenge_err",
        PksaToRelay::Error(_) => "error",
        PksaToRelay::Unknown => "unknown",
    }
}

/// Parses a frame received by a server.
pub fn parse_to_relay(text: &str) -> Result<ToRelay, FrameError> {
    let (value, cmd) = split(text)?;
    if validate::is_known(dir::APP_TO_RELAY, &cmd) {
        typed::<AppToRelay>(value, &cmd).map(ToRelay::App)
    } else if validate::is_known(dir::PKSA_TO_RELAY, &cmd) {
        typed::<PksaToRelay>(value, &cmd).map(ToRelay::Pksa)
    } else {
        Ok(ToRelay::Unknown(cmd))
    }
}

/// Serializes a frame after validating it against its schema (so we never send what we would
/// refuse to read). `Unknown` cannot be sent.
pub fn encode<T: Direction>(frame: &T) -> Result<String, FrameError> {
    let value = serde_json::to_value(frame).map_err(|_| FrameError::NotObject)?;
    let cmd = value
        .get("cmd")
        .and_then(Value::as_str)
        .ok_or(FrameError::MissingCmd)?;
    validate::validate(T::DIR, cmd, &value).map_err(FrameError::Invalid)?;
    Ok(value.to_string())
}

/// Fields whose values are secret or encrypted and are kept out of logs.
const REDACTED_FIELDS: &[&str] = &[
    "data",
    "auth_key",
    "pok",
    "token",
    "error",
    "key",
    "challenge",
];

/// The frame text as it may be logged: encrypted or secret fields (`data`, `auth_key`, `pok`,
/// `token`, encrypted `error`, …) replaced by their length. A transaction id (`sign_ack.data`
/// of a broadcast, public on chain) is kept; a signed transaction (`sign_ack.data` of a
/// sign-only request, which the app may not want broadcast or seen) is redacted like the
/// rest. Non-JSON text is summarized.
pub fn redact_for_log(text: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return format!("<non-JSON text, {} bytes>", text.len());
    };
    let is_sign_ack = value.get("cmd").and_then(Value::as_str) == Some("sign_ack");
    let is_key_ack = value.get("cmd").and_then(Value::as_str) == Some("key_ack");
    let is_error_cmd = value.get("cmd").and_then(Value::as_str) == Some("error");
    if let Some(obj) = value.as_object_mut() {
        for field in REDACTED_FIELDS {
            let Some(v) = obj.get_mut(*field) else {
                continue;
            };
            let keep = (is_sign_ack && *field == "data" && v.is_string())
                || (is_key_ack && *field == "key")
                || (is_error_cmd && *field == "error");
            if keep {
                continue;
            }
            *v = match v {
                Value::String(s) => Value::String(format!("<redacted {} chars>", s.len())),
                Value::Object(o) => {
                    Value::String(format!("<redacted object, {} members>", o.len()))
                }
                Value::Array(a) => Value::String(format!("<redacted array, {} items>", a.len())),
                _ => continue,
            };
        }
        if let Some(Value::Array(accounts)) = obj.get_mut("accounts") {
            for a in accounts.iter_mut().filter_map(Value::as_object_mut) {
                for f in ["pok", "challenge"] {
                    if let Some(v) = a.get_mut(f) {
                        let n = v.as_str().map(str::len).unwrap_or(0);
                        *v = Value::String(format!("<redacted {n} chars>"));
                    }
                }
            }
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;

    #[test]
    fn ping_and_garbage() {
        assert_eq!(parse::<AppToRelay>("ping").unwrap_err(), FrameError::Ping);
        assert_eq!(parse::<AppToRelay>("{").unwrap_err(), FrameError::NotJson);
        assert_eq!(
            parse::<AppToRelay>("[]").unwrap_err(),
            FrameError::NotObject
        );
        assert_eq!(
            parse::<AppToRelay>("{\"cmd\":5}").unwrap_err(),
            FrameError::MissingCmd
        );
        assert_eq!(
            parse::<AppToRelay>("{\"cmd\":\"hello\"}").unwrap(),
            AppToRelay::Unknown
        );
        assert_eq!(
            parse_to_relay("{\"cmd\":\"auth_wait\"}").unwrap(),
            ToRelay::Unknown("auth_wait".into())
        );
    }

    #[test]
    fn key_req_and_nulls() {
        assert_eq!(
            parse_to_relay("{\"cmd\":\"key_req\"}").unwrap(),
            ToRelay::Pksa(PksaToRelay::KeyReq)
        );
        let f = r#"{"cmd":"auth_req","account":"alice","data":"U2FsdGVkX1abc","token":null,"auth_key":null,"extra":1}"#;
        match parse_to_relay(f).unwrap() {
            ToRelay::App(AppToRelay::AuthReq(a)) => {
                assert!(a.token.is_none() && a.auth_key.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encode_validates() {
        let bad = RelayToApp::Error(ErrorMsg {
            error: "x".repeat(70000),
        });
        assert!(matches!(encode(&bad), Err(FrameError::Invalid(_))));
        let ok = encode(&PksaToRelay::KeyReq).unwrap();
        assert_eq!(ok, r#"{"cmd":"key_req"}"#);
    }

    #[test]
    fn redaction() {
        let f = r#"{"cmd":"auth_req","account":"alice","data":"U2FsdGVkX1secret","auth_key":"U2FsdGVkX1key"}"#;
        let r = redact_for_log(f);
        assert!(!r.contains("secret") && !r.contains("U2FsdGVkX1key") && r.contains("alice"));
        let s = r##"{"cmd":"sign_ack","uuid":"u","data":"0123abcd","pok":"#abc"}"##;
        let r = redact_for_log(s);
        assert!(r.contains("0123abcd") && !r.contains("#abc"));
        // A sign-only answer's signed transaction stays out of the log.
        let t = r#"{"cmd":"sign_ack","uuid":"u","broadcast":false,"data":{"operations":[["transfer",{"to":"bob","memo":"private"}]],"signatures":["1f00"]}}"#;
        let r = redact_for_log(t);
        assert!(!r.contains("private") && !r.contains("1f00"), "{r}");
        assert!(r.contains("<redacted object, 2 members>"), "{r}");
        assert_eq!(redact_for_log("ping"), "<non-JSON text, 4 bytes>");
    }
}
