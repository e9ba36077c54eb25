//! Decrypted inner payloads (has-protocol.md §3).

use has_crypto::SecretString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::encrypted::{Payload, json_payload};
use crate::error::PayloadError;
use crate::types::{AuthKey, KeyType, Nonce, RequestId, UnixMillis};

/// `auth_req_data.app`: who is asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AppInfo {
    /// Short app name (stored as the session's app).
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Icon URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    /// Hive Keychain Mobile extension: a public key to which the PKSA memo-encrypts
    /// `"#" + account` as the authentication challenge answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubkey: Option<String>,
}

/// A challenge to sign during authentication (`auth_req_data.challenge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChallengeSpec {
    /// Which key signs.
    pub key_type: KeyType,
    /// Text to sign.
    #[schemars(length(min = 1))]
    pub challenge: String,
}

/// `auth_req.data` plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthReqData {
    /// The app.
    pub app: AppInfo,
    /// Optional challenge to sign with the approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<ChallengeSpec>,
    /// Deprecated 0.x session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}
json_payload!(AuthReqData, "auth_req_data");

/// The challenge answer inside `auth_ack_data`: a signature object, or (Keychain Mobile's
/// `app.pubkey` extension) a memo string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AuthChallengeAnswer {
    /// `{pubkey, challenge}` as in `challenge_ack_data`.
    Signed(ChallengeAckData),
    /// A memo string (Keychain Mobile).
    Memo(String),
}

/// `auth_ack.data` plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthAckData {
    /// When the session expires at the PKSA.
    pub expire: UnixMillis,
    /// The signed challenge, when one was requested. Read also as `challenge_data` (the
    /// app-side docs' name).
    #[serde(
        default,
        alias = "challenge_data",
        skip_serializing_if = "Option::is_none"
    )]
    pub challenge: Option<AuthChallengeAnswer>,
    /// 0.8 session token, for apps that still send it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}
json_payload!(AuthAckData, "auth_ack_data");

/// `sign_req.data` plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignReqData {
    /// The key the app expects to sign with (a hint: the PKSA computes the required authority
    /// from the operations).
    pub key_type: KeyType,
    /// Operations in condenser (`["vote", {...}]`) or appbase (`{"type": ..., "value": ...}`)
    /// JSON form; parsed by hive-chain.
    #[schemars(length(min = 1, max = 1000), with = "Vec<OperationJson>")]
    pub ops: Vec<Value>,
    /// Broadcast (true) or only sign (false).
    pub broadcast: bool,
    /// Anti-replay nonce, strictly increasing per session (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
}
json_payload!(SignReqData, "sign_req_data");

/// Schema-only shape of one operation: `[name, {fields}]` or `{"type", "value"}`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OperationJson {
    /// Condenser form.
    Condenser(String, serde_json::Map<String, Value>),
    /// Appbase form.
    Appbase {
        r#type: String,
        value: serde_json::Map<String, Value>,
    },
}

/// `challenge_req.data` plaintext.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChallengeReqData {
    /// Which key signs (or decrypts).
    pub key_type: KeyType,
    /// Text to sign, or (decrypt = true) a `#…` memo to decrypt.
    #[schemars(length(min = 1, max = 65536))]
    pub challenge: String,
    /// Decrypt a memo instead of signing (protocol ≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrypt: Option<bool>,
    /// Anti-replay nonce (hive-auth-wrapper's `challenge()` sends none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<Nonce>,
}
json_payload!(ChallengeReqData, "challenge_req_data");

/// `challenge_ack.data` plaintext (and `auth_ack_data.challenge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChallengeAckData {
    /// Public key (`STM…`) of the key that signed or decrypted.
    #[schemars(length(min = 1))]
    pub pubkey: String,
    /// 130 hex chars of signature, or `#` + plaintext for a decryption.
    pub challenge: String,
}
json_payload!(ChallengeAckData, "challenge_ack_data");

/// `*_nack.data` plaintext: the bare request uuid (not JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackPayload(pub RequestId);

impl Payload for NackPayload {
    const NAME: &'static str = "nack_data";
    fn to_plaintext(&self) -> SecretString {
        SecretString::from(self.0.as_str())
    }
    fn from_plaintext(text: &str) -> Result<Self, PayloadError> {
        RequestId::try_from(text.to_owned())
            .map(NackPayload)
            .map_err(|e| PayloadError::Invalid(format!("nack_data: {e}")))
    }
}

/// The `sign_err`/`challenge_err` text of a request refused for its nonce (already used, or
/// older than the session's window): a copy of a request that was decided gets the stored
/// answer instead, so a client that sees this for a copy may build the request anew.
pub const NONCE_ALREADY_USED: &str = "nonce already used";

/// `*_err.error` plaintext: an error message (not JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorText(pub String);

impl Payload for ErrorText {
    const NAME: &'static str = "err_data";
    fn to_plaintext(&self) -> SecretString {
        SecretString::from(self.0.as_str())
    }
    fn from_plaintext(text: &str) -> Result<Self, PayloadError> {
        Ok(ErrorText(text.to_owned()))
    }
}

/// `auth_req.auth_key` plaintext: the app's auth_key, encrypted with the auth_req_secret.
impl Payload for AuthKey {
    const NAME: &'static str = "auth_key";
    fn to_plaintext(&self) -> SecretString {
        SecretString::from(self.expose_secret())
    }
    fn from_plaintext(text: &str) -> Result<Self, PayloadError> {
        if text.is_empty() || text.len() > 256 {
            return Err(PayloadError::Invalid(
                "auth_key: must be 1 to 256 characters".into(),
            ));
        }
        Ok(AuthKey::new(text))
    }
}

/// `sign_ack.data`: the transaction id (broadcast) or the signed transaction (sign-only).
/// Not encrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SignAckData {
    /// 40 hex chars.
    TxId(String),
    /// `{ref_block_num, ref_block_prefix, expiration, operations, extensions, signatures}`.
    Transaction(serde_json::Map<String, Value>),
}
