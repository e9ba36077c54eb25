//! Frames: any bytes → validate and parse never panic; parse → encode → parse is the
//! identity for every direction; log redaction never panics.
#![no_main]

use has_protocol::frame::{self, Direction, ToRelay};
use has_protocol::{AppToRelay, PksaToRelay, RelayToApp, RelayToPksa};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Direction + PartialEq + std::fmt::Debug>(text: &str) {
    if let Ok(parsed) = frame::parse::<T>(text) {
        if let Ok(again) = frame::encode(&parsed) {
            let back: T = frame::parse(&again).expect("what we encode, we parse");
            assert_eq!(back, parsed);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    round_trip::<AppToRelay>(text);
    round_trip::<PksaToRelay>(text);
    round_trip::<RelayToPksa>(text);
    round_trip::<RelayToApp>(text);
    if let Ok(ToRelay::Pksa(p)) = frame::parse_to_relay(text) {
        if let Some(app) = p.into_app_reply() {
            let _ = frame::encode(&app);
        }
    }
    let _ = frame::redact_for_log(text);
    let _ = has_protocol::auth_payload::AuthPayload::from_uri(text);
});
