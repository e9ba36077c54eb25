//! The out-of-band authentication payload: QR code / `has://auth_req/…` deep link
//! (has-protocol.md §3.3).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use has_crypto::SecretString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::PayloadError;
use crate::types::{AccountName, AuthKey, RequestId};
use crate::validate::{self, dir};

/// The deep-link prefix.
pub const URI_PREFIX: &str = "has://auth_req/";

/// What an interactive PKSA needs to answer an `auth_req`: the account, the request uuid,
/// the auth_key and the HAS host the app is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPayload {
    /// Account being authenticated.
    pub account: AccountName,
    /// The uuid from `auth_wait`.
    pub uuid: RequestId,
    /// The app's auth_key (secret).
    pub key: AuthKey,
    /// WebSocket URL of the HAS the app is connected to.
    pub host: String,
}

/// The JSON form (also its schema).
#[derive(Serialize, Deserialize, JsonSchema)]
pub(crate) struct AuthPayloadJson {
    account: AccountName,
    uuid: RequestId,
    #[schemars(length(min = 1))]
    key: String,
    #[schemars(length(min = 1))]
    host: String,
}

const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64_URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl AuthPayload {
    /// `has://auth_req/` + standard base64 (with padding) of the compact JSON. Contains the
    /// auth_key, hence secret.
    pub fn to_uri(&self) -> SecretString {
        // Field order as in the docs: account, uuid, key, host.
        let json = AuthPayloadJson {
            account: self.account.clone(),
            uuid: self.uuid.clone(),
            key: self.key.expose_secret().to_owned(),
            host: self.host.clone(),
        };
        let text = SecretString::new(serde_json::to_string(&json).unwrap_or_default());
        let b64 = base64::engine::general_purpose::STANDARD.encode(text.expose_secret());
        SecretString::new(format!("{URI_PREFIX}{b64}"))
    }

    /// Reads a deep link or bare base64 payload (standard or URL-safe alphabet, padding
    /// optional, compact or indented JSON).
    pub fn from_uri(uri: &str) -> Result<Self, PayloadError> {
        let b64 = uri.trim().strip_prefix(URI_PREFIX).unwrap_or(uri.trim());
        let bytes = B64_LENIENT
            .decode(b64)
            .or_else(|_| B64_URL_LENIENT.decode(b64))
            .map_err(|_| PayloadError::Invalid("auth_payload: / must be base64".into()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| PayloadError::Invalid("auth_payload: / must be JSON".into()))?;
        validate::validate(dir::PAYLOADS, "auth_payload", &value)
            .map_err(|f| PayloadError::Invalid(f.to_string()))?;
        let j = AuthPayloadJson::deserialize(&value)
            .map_err(|e| PayloadError::Invalid(format!("auth_payload: {e}")))?;
        Ok(AuthPayload {
            account: j.account,
            uuid: j.uuid,
            key: AuthKey::new(j.key),
            host: j.host,
        })
    }

    /// Whether this payload's host names the server at `url` (one trailing `/` ignored, as
    /// HiveAuth Mobile compares them).
    pub fn host_matches(&self, url: &str) -> bool {
        self.host.trim_end_matches('/') == url.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "has://auth_req/eyJhY2NvdW50IjoiYXJjYW5nZSIsInV1aWQiOiI5YjBlMmRjMy1mNTc0LTQ3NjYtYWJkZC1jNDI5ZGNlMTEyODQiLCJrZXkiOiIwM2Y2MzQ2OS01YTM1LTQ3Y2ItYTZiNC1lOGM0ZDMxNDRjZjkiLCJob3N0Ijoid3NzOi8vaGFzLmhpdmVhdXRoLmNvbSJ9";

    #[test]
    fn docs_vector_round_trip() {
        let p = AuthPayload::from_uri(DOC).unwrap();
        assert_eq!(p.account.as_str(), "arcange");
        assert_eq!(
            p.key.expose_secret(),
            "03f63469-5a35-47cb-a6b4-e8c4d3144cf9"
        );
        assert!(p.host_matches("wss://has.hiveauth.com/"));
        assert_eq!(p.to_uri().expose_secret(), DOC);
    }

    #[test]
    fn url_safe_and_unpadded() {
        let json = r#"{"account":"alice","uuid":"u-1","key":"k?>>","host":"ws://h"}"#;
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let p = AuthPayload::from_uri(&url).unwrap();
        assert_eq!(p.key.expose_secret(), "k?>>");
        assert!(AuthPayload::from_uri("has://auth_req/!!!").is_err());
        let bad = base64::engine::general_purpose::STANDARD
            .encode(r#"{"account":"A","uuid":"u","key":"k","host":"h"}"#);
        let err = AuthPayload::from_uri(&bad).unwrap_err();
        assert!(err.to_string().contains("auth_payload: /account"), "{err}");
    }
}
