//! HAS frames (has-protocol.md §2), one `#[serde(tag = "cmd")]` enum per direction.
//!
//! Unknown fields are ignored, `null` in an optional field means absent, and an unknown `cmd`
//! parses as the `Unknown` variant (what to do with it is the receiver's decision).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::encrypted::Encrypted;
use crate::payloads::{
    AuthAckData, AuthReqData, ChallengeAckData, ChallengeReqData, ErrorText, NackPayload,
    SignAckData, SignReqData,
};
use crate::types::{AccountName, AuthKey, ProtocolVersion, RequestId, Seconds, UnixMillis};

/// `connected` (H→A, H→P): the greeting sent when a socket opens.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Connected {
    /// Identity of the HAS node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Server-side id of this socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socketid: Option<String>,
    /// Request lifetime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
    /// Server heartbeat interval in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_rate: Option<Seconds>,
    /// Server software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Protocol version (`1`, or `0.8`). Missing counts as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ProtocolVersion>,
}

/// `key_ack` (H→P): the server's public key in `STM…` form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyAck {
    /// Server public key, the POK recipient.
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
}

/// One account of a `register_req`: protocol 1 carries `pok`; 0.8 (Hive Keychain Mobile)
/// carries `key_type` + `challenge`, built the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("anyOf" = [{"required": ["pok"]}, {"required": ["challenge"]}]))]
pub struct RegisterAccount {
    /// The account.
    pub name: AccountName,
    /// Proof of Key over the current time in ms (protocol 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub pok: Option<String>,
    /// Which key made the challenge (0.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<crate::types::KeyType>,
    /// The 0.8 name of the POK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub challenge: Option<String>,
}

impl RegisterAccount {
    /// The proof, whichever name it came under.
    pub fn proof(&self) -> Option<&str> {
        self.pok.as_deref().or(self.challenge.as_deref())
    }
}

/// `register_req` (P→H).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisterReq {
    /// Free text naming the PKSA.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub app: String,
    /// Accounts to register.
    #[schemars(length(min = 1, max = 100))]
    pub accounts: Vec<RegisterAccount>,
}

/// `register_ack` (H→P): one per registered account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RegisterAck {
    /// The registered account.
    pub account: AccountName,
}

/// `auth_req` as an app sends it (A→H).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthReq {
    /// Account to authenticate.
    pub account: AccountName,
    /// Encrypted [`AuthReqData`].
    pub data: Encrypted<AuthReqData>,
    /// Service mode: the auth_key encrypted with the auth_req_secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_key: Option<Encrypted<AuthKey>>,
    /// 0.x session token (Keychain Mobile re-authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `auth_req` as the server relays it (H→P).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RelayedAuthReq {
    /// Account to authenticate.
    pub account: AccountName,
    /// Encrypted [`AuthReqData`].
    pub data: Encrypted<AuthReqData>,
    /// Server-assigned request id.
    pub uuid: RequestId,
    /// Server-assigned expiry.
    pub expire: UnixMillis,
    /// As received from the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_key: Option<Encrypted<AuthKey>>,
    /// As received from the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `sign_req` as an app sends it (A→H).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignReq {
    /// Account whose key must sign.
    pub account: AccountName,
    /// Encrypted [`SignReqData`].
    pub data: Encrypted<SignReqData>,
    /// 0.8 session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `sign_req` as the server relays it (H→P).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RelayedSignReq {
    /// Account whose key must sign.
    pub account: AccountName,
    /// Encrypted [`SignReqData`].
    pub data: Encrypted<SignReqData>,
    /// Server-assigned request id.
    pub uuid: RequestId,
    /// Server-assigned expiry.
    pub expire: UnixMillis,
    /// As received from the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `challenge_req` as an app sends it (A→H).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChallengeReq {
    /// Account whose key must sign.
    pub account: AccountName,
    /// Encrypted [`ChallengeReqData`].
    pub data: Encrypted<ChallengeReqData>,
    /// 0.8 session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `challenge_req` as the server relays it (H→P).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RelayedChallengeReq {
    /// Account whose key must sign.
    pub account: AccountName,
    /// Encrypted [`ChallengeReqData`].
    pub data: Encrypted<ChallengeReqData>,
    /// Server-assigned request id.
    pub uuid: RequestId,
    /// Server-assigned expiry.
    pub expire: UnixMillis,
    /// As received from the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `auth_wait` / `sign_wait` / `challenge_wait` (H→A): the request was accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Wait {
    /// Request id.
    pub uuid: RequestId,
    /// Request expiry.
    pub expire: UnixMillis,
    /// Echo of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountName>,
}

/// `auth_ack` (P→H with `pok`, H→A without).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AuthAck {
    /// Request id.
    pub uuid: RequestId,
    /// Encrypted [`AuthAckData`].
    pub data: Encrypted<AuthAckData>,
    /// Proof of Key over the uuid (absent from 0.8 PKSAs; stripped by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pok: Option<String>,
}

/// `auth_nack` / `sign_nack` / `challenge_nack` (P→H→A): refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Nack {
    /// Request id.
    pub uuid: RequestId,
    /// The uuid encrypted with the auth_key (the app checks it decrypts to its uuid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Encrypted<NackPayload>>,
    /// Plaintext reason (Hive Keychain Mobile sends this instead of `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Proof of Key over the uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pok: Option<String>,
}

/// `auth_err` / `sign_err` / `challenge_err` (P→H→A): failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplyError {
    /// Request id.
    pub uuid: RequestId,
    /// The message, encrypted with the auth_key (the reference PKSA's `auth_err` sends it in
    /// clear; apps try to decrypt and fall back to the raw text).
    #[schemars(length(max = 65536))]
    pub error: String,
    /// Proof of Key over the uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pok: Option<String>,
}

impl ReplyError {
    /// Builds an error reply whose message is encrypted with the session key.
    pub fn encrypted(uuid: RequestId, message: &str, key: &AuthKey, pok: Option<String>) -> Self {
        let error = Encrypted::encrypt(&ErrorText(message.to_owned()), key)
            .as_str()
            .to_owned();
        ReplyError { uuid, error, pok }
    }

    /// The message: decrypted with `key` if it is a ciphertext, else the raw text.
    pub fn message(&self, key: &AuthKey) -> String {
        Encrypted::<ErrorText>::from_ciphertext(self.error.clone())
            .decrypt(key)
            .map(|t| t.0)
            .unwrap_or_else(|_| self.error.clone())
    }
}

/// `sign_ack` (P→H→A). `data` is not encrypted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignAck {
    /// Request id.
    pub uuid: RequestId,
    /// Whether the PKSA broadcast the transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<bool>,
    /// Transaction id (broadcast) or signed transaction (sign-only).
    pub data: SignAckData,
    /// Proof of Key over the uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pok: Option<String>,
}

/// `challenge_ack` (P→H→A).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChallengeAck {
    /// Request id.
    pub uuid: RequestId,
    /// Encrypted [`ChallengeAckData`].
    pub data: Encrypted<ChallengeAckData>,
    /// Proof of Key over the uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pok: Option<String>,
}

/// `attach_req` (A→H), `attach_ack` / `attach_nack` (H→A).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Attach {
    /// The request to re-bind to this socket.
    pub uuid: RequestId,
}

/// How the relay's `error` for a frame its rate limit dropped begins
/// (`rate limit exceeded: <cmd> dropped`): the frame was not processed and may be sent again.
pub const RATE_LIMITED: &str = "rate limit exceeded";

/// `error` (any direction): an untyped plaintext error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorMsg {
    /// Plaintext message.
    #[serde(default)]
    #[schemars(length(max = 65536))]
    pub error: String,
}

/// Frames an app sends to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum AppToRelay {
    /// `auth_req`
    AuthReq(AuthReq),
    /// `sign_req`
    SignReq(SignReq),
    /// `challenge_req`
    ChallengeReq(ChallengeReq),
    /// `attach_req`
    AttachReq(Attach),
    /// Any other `cmd`.
    #[serde(other)]
    Unknown,
}

/// Frames a PKSA sends to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum PksaToRelay {
    /// `key_req`
    KeyReq,
    /// `register_req`
    RegisterReq(RegisterReq),
    /// `auth_ack`
    AuthAck(AuthAck),
    /// `auth_nack`
    AuthNack(Nack),
    /// `auth_err`
    AuthErr(ReplyError),
    /// `sign_ack`
    SignAck(SignAck),
    /// `sign_nack`
    SignNack(Nack),
    /// `sign_err`
    SignErr(ReplyError),
    /// `challenge_ack`
    ChallengeAck(ChallengeAck),
    /// `challenge_nack`
    ChallengeNack(Nack),
    /// `challenge_err`
    ChallengeErr(ReplyError),
    /// `error`
    Error(ErrorMsg),
    /// Any other `cmd` (Keychain Mobile sends `auth_wait`/`sign_wait`).
    #[serde(other)]
    Unknown,
}

/// Frames the server sends to a PKSA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum RelayToPksa {
    /// `connected`
    Connected(Connected),
    /// `key_ack`
    KeyAck(KeyAck),
    /// `register_ack`
    RegisterAck(RegisterAck),
    /// `auth_req`
    AuthReq(RelayedAuthReq),
    /// `sign_req`
    SignReq(RelayedSignReq),
    /// `challenge_req`
    ChallengeReq(RelayedChallengeReq),
    /// `error`
    Error(ErrorMsg),
    /// Any other `cmd`.
    #[serde(other)]
    Unknown,
}

/// Frames the server sends to an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum RelayToApp {
    /// `connected`
    Connected(Connected),
    /// `auth_wait`
    AuthWait(Wait),
    /// `sign_wait`
    SignWait(Wait),
    /// `challenge_wait`
    ChallengeWait(Wait),
    /// `auth_ack`
    AuthAck(AuthAck),
    /// `auth_nack`
    AuthNack(Nack),
    /// `auth_err`
    AuthErr(ReplyError),
    /// `sign_ack`
    SignAck(SignAck),
    /// `sign_nack`
    SignNack(Nack),
    /// `sign_err`
    SignErr(ReplyError),
    /// `challenge_ack`
    ChallengeAck(ChallengeAck),
    /// `challenge_nack`
    ChallengeNack(Nack),
    /// `challenge_err`
    ChallengeErr(ReplyError),
    /// `attach_ack`
    AttachAck(Attach),
    /// `attach_nack`
    AttachNack(Attach),
    /// `error`
    Error(ErrorMsg),
    /// Any other `cmd`.
    #[serde(other)]
    Unknown,
}

/// Which request family a reply belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// auth_*
    Auth,
    /// sign_*
    Sign,
    /// challenge_*
    Challenge,
}

impl PksaToRelay {
    /// For a reply (ack/nack/err): its family, uuid and pok.
    pub fn reply_parts(&self) -> Option<(Family, &RequestId, Option<&str>)> {
        use PksaToRelay as P;
        Some(match self {
            P::AuthAck(r) => (Family::Auth, &r.uuid, r.pok.as_deref()),
            P::AuthNack(r) => (Family::Auth, &r.uuid, r.pok.as_deref()),
            P::AuthErr(r) => (Family::Auth, &r.uuid, r.pok.as_deref()),
            P::SignAck(r) => (Family::Sign, &r.uuid, r.pok.as_deref()),
            P::SignNack(r) => (Family::Sign, &r.uuid, r.pok.as_deref()),
            P::SignErr(r) => (Family::Sign, &r.uuid, r.pok.as_deref()),
            P::ChallengeAck(r) => (Family::Challenge, &r.uuid, r.pok.as_deref()),
            P::ChallengeNack(r) => (Family::Challenge, &r.uuid, r.pok.as_deref()),
            P::ChallengeErr(r) => (Family::Challenge, &r.uuid, r.pok.as_deref()),
            _ => return None,
        })
    }

    /// A reply as the server relays it to the app: the same frame without `pok`.
    pub fn into_app_reply(self) -> Option<RelayToApp> {
        use PksaToRelay as P;
        use RelayToApp as A;
        Some(match self {
            P::AuthAck(r) => A::AuthAck(AuthAck { pok: None, ..r }),
            P::AuthNack(r) => A::AuthNack(Nack { pok: None, ..r }),
            P::AuthErr(r) => A::AuthErr(ReplyError { pok: None, ..r }),
            P::SignAck(r) => A::SignAck(SignAck { pok: None, ..r }),
            P::SignNack(r) => A::SignNack(Nack { pok: None, ..r }),
            P::SignErr(r) => A::SignErr(ReplyError { pok: None, ..r }),
            P::ChallengeAck(r) => A::ChallengeAck(ChallengeAck { pok: None, ..r }),
            P::ChallengeNack(r) => A::ChallengeNack(Nack { pok: None, ..r }),
            P::ChallengeErr(r) => A::ChallengeErr(ReplyError { pok: None, ..r }),
            _ => return None,
        })
    }
}

impl RelayToApp {
    /// For a reply (ack/nack/err): its uuid.
    pub fn reply_uuid(&self) -> Option<&RequestId> {
        use RelayToApp as A;
        match self {
            A::AuthAck(r) => Some(&r.uuid),
            A::SignAck(r) => Some(&r.uuid),
            A::ChallengeAck(r) => Some(&r.uuid),
            A::AuthNack(r) | A::SignNack(r) | A::ChallengeNack(r) => Some(&r.uuid),
            A::AuthErr(r) | A::SignErr(r) | A::ChallengeErr(r) => Some(&r.uuid),
            _ => None,
        }
    }
}

impl Nack {
    /// A refusal whose `data` is the uuid encrypted with the session key.
    pub fn new(uuid: RequestId, key: &AuthKey, pok: Option<String>) -> Self {
        let data = Some(Encrypted::encrypt(&NackPayload(uuid.clone()), key));
        Nack {
            uuid,
            data,
            error: None,
            pok,
        }
    }
}
