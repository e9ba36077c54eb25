//! The example corpus under `schemas/examples/` (run by the tests and by
//! `cargo xtask validate-schemas`).
//!
//! Each file is `{"source", "direction", "frame" | "frame_text", ["name"], ["expect_error"],
//! ["expect_unknown"]}`: a frame shaped like those of a real implementation (`source` says
//! which), and for invalid examples the exact error it must produce.

use serde_json::Value;

use crate::frame::{self, Direction, ToRelay};
use crate::messages::{AppToRelay, PksaToRelay, RelayToApp, RelayToPksa};
use crate::payloads::*;
use crate::validate::dir;
use crate::{Payload, PayloadError};

type R = Result<(), String>;

fn round_trip<T: Direction + PartialEq + std::fmt::Debug>(text: &str) -> Result<bool, String> {
    let parsed: T = frame::parse(text).map_err(|e| e.to_string())?;
    let unknown = serde_json::to_value(&parsed)
        .ok()
        .and_then(|v| v.get("cmd").cloned())
        == Some(Value::String("unknown".into()));
    if unknown {
        return Ok(true);
    }
    let again = frame::encode(&parsed).map_err(|e| format!("re-encode: {e}"))?;
    let back: T = frame::parse(&again).map_err(|e| format!("re-parse: {e}"))?;
    if back != parsed {
        return Err(format!(
            "round trip changed the frame: {parsed:?} vs {back:?}"
        ));
    }
    Ok(false)
}

fn payload_round_trip<T: Payload + PartialEq + std::fmt::Debug>(text: &str) -> R {
    let p = T::from_plaintext(text).map_err(|e| e.to_string())?;
    let again = T::from_plaintext(p.to_plaintext().expose_secret()).map_err(|e| e.to_string())?;
    if again != p {
        return Err("payload round trip changed the value".into());
    }
    Ok(())
}

fn check_payload(name: &str, text: &str) -> R {
    match name {
        "auth_req_data" => payload_round_trip::<AuthReqData>(text),
        "auth_ack_data" => payload_round_trip::<AuthAckData>(text),
        "sign_req_data" => payload_round_trip::<SignReqData>(text),
        "challenge_req_data" => payload_round_trip::<ChallengeReqData>(text),
        "challenge_ack_data" => payload_round_trip::<ChallengeAckData>(text),
        "auth_payload" => crate::auth_payload::AuthPayload::from_uri(text)
            .map(|_| ())
            .map_err(|e: PayloadError| e.to_string()),
        other => Err(format!("unknown payload name {other}")),
    }
}

/// Checks one example file. Returns a one-line description of what was checked.
pub fn check_example(file_text: &str) -> Result<String, String> {
    let ex: Value =
        serde_json::from_str(file_text).map_err(|e| format!("example is not JSON: {e}"))?;
    let direction = ex
        .get("direction")
        .and_then(Value::as_str)
        .ok_or("example has no direction")?;
    ex.get("source")
        .and_then(Value::as_str)
        .ok_or("example has no source")?;
    let text = match (
        ex.get("frame_text").and_then(Value::as_str),
        ex.get("frame"),
    ) {
        (Some(t), _) => t.to_owned(),
        (None, Some(f)) if direction == dir::PAYLOADS && f.is_string() => {
            f.as_str().unwrap_or_default().to_owned()
        }
        (None, Some(f)) => f.to_string(),
        _ => return Err("example has neither frame nor frame_text".into()),
    };
    let expect_error = ex.get("expect_error").and_then(Value::as_str);
    let expect_unknown = ex
        .get("expect_unknown")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    let outcome: Result<bool, String> = match direction {
        dir::APP_TO_RELAY | dir::PKSA_TO_RELAY => match frame::parse_to_relay(&text) {
            Err(e) => Err(e.to_string()),
            Ok(ToRelay::Unknown(_)) => Ok(true),
            Ok(ToRelay::App(_)) if direction == dir::APP_TO_RELAY => {
                round_trip::<AppToRelay>(&text)
            }
            Ok(ToRelay::Pksa(_)) if direction == dir::PKSA_TO_RELAY => {
                round_trip::<PksaToRelay>(&text)
            }
            Ok(other) => Err(format!("parsed as the other direction: {other:?}")),
        },
        dir::RELAY_TO_PKSA => round_trip::<RelayToPksa>(&text),
        dir::RELAY_TO_APP => round_trip::<RelayToApp>(&text),
        dir::PAYLOADS => {
            let name = ex
                .get("name")
                .and_then(Value::as_str)
                .ok_or("payload example has no name")?;
            check_payload(name, &text).map(|()| false)
        }
        other => return Err(format!("unknown direction {other}")),
    };
    match (outcome, expect_error) {
        (Ok(unknown), None) => {
            if unknown != expect_unknown {
                return Err(format!(
                    "expected unknown = {expect_unknown}, got {unknown}"
                ));
            }
            Ok(format!("{direction}: valid"))
        }
        (Ok(_), Some(want)) => Err(format!("expected error {want:?}, but it was accepted")),
        (Err(got), None) => Err(format!("expected valid, got error {got:?}")),
        (Err(got), Some(want)) if got == want => Ok(format!("{direction}: rejected as expected")),
        (Err(got), Some(want)) => Err(format!("expected error {want:?}, got {got:?}")),
    }
}
