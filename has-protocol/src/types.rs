//! Small typed values that appear in HAS frames and payloads.

use std::borrow::Cow;
use std::fmt;

use has_crypto::SecretString;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch (JS `Date.now()`): `expire`, `nonce`, POK timestamps.
///
/// Parsed leniently: any non-negative JSON number is accepted (floats are truncated), because
/// JS clients sometimes produce `1690000000000.0`. Always written as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The current time.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        UnixMillis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// `self + ms`, saturating.
    pub fn plus_millis(self, ms: u64) -> Self {
        UnixMillis(self.0.saturating_add(ms))
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Largest integer JS represents exactly.
const JS_MAX_SAFE: f64 = 9_007_199_254_740_991.0;

fn lenient_u64<'de, D: Deserializer<'de>>(d: D, what: &'static str) -> Result<u64, D::Error> {
    struct V(&'static str);
    impl serde::de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a non-negative number ({})", self.0)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{} must not be negative", self.0)))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
            if v.is_finite() && (0.0..=JS_MAX_SAFE * 4096.0).contains(&v) {
                Ok(v.trunc() as u64)
            } else {
                Err(E::custom(format!("{} is out of range", self.0)))
            }
        }
    }
    d.deserialize_any(V(what))
}

impl<'de> Deserialize<'de> for UnixMillis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient_u64(d, "milliseconds").map(UnixMillis)
    }
}

impl Serialize for UnixMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl JsonSchema for UnixMillis {
    fn schema_name() -> Cow<'static, str> {
        "UnixMillis".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "number",
            "minimum": 0,
            "description": "milliseconds since the Unix epoch"
        })
    }
}

/// An anti-replay nonce (`sign_req_data.nonce`, `challenge_req_data.nonce`): an integer,
/// milliseconds by convention (JS `Date.now()`; hive-auth-dotnet sends seconds), at most
/// 2^53 − 1, the largest integer a JS client holds exactly.
///
/// Stricter than [`UnixMillis`]: a fractional number is refused instead of truncated (two
/// different texts must not become one nonce), and so is anything past 2^53 − 1 (it cannot
/// come from a JS clock, and a session whose last nonce is that large could never be used
/// again). A number written with a zero fraction (`1690000000000.0`) is the integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nonce(pub u64);

impl Nonce {
    /// The largest nonce: 2^53 − 1.
    pub const MAX: u64 = 9_007_199_254_740_991;
}

impl From<UnixMillis> for Nonce {
    fn from(t: UnixMillis) -> Self {
        Nonce(t.0)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Nonce {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Nonce;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an integer nonce from 0 to 2^53 - 1")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Nonce, E> {
                if v <= Nonce::MAX {
                    Ok(Nonce(v))
                } else {
                    Err(E::custom("nonce must be at most 2^53 - 1"))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Nonce, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("nonce must not be negative"))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Nonce, E> {
                if !(v.is_finite() && v.fract() == 0.0 && v >= 0.0) {
                    return Err(E::custom("nonce must be a non-negative integer"));
                }
                if v > Nonce::MAX as f64 {
                    return Err(E::custom("nonce must be at most 2^53 - 1"));
                }
                Ok(Nonce(v as u64))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Nonce {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl JsonSchema for Nonce {
    fn schema_name() -> Cow<'static, str> {
        "Nonce".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 0,
            "maximum": Nonce::MAX,
            "description": "anti-replay nonce: an integer, milliseconds by convention, at most 2^53 - 1"
        })
    }
}

/// A duration in whole seconds (`connected.timeout`, `connected.ping_rate`), parsed leniently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seconds(pub u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient_u64(d, "seconds").map(Seconds)
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl JsonSchema for Seconds {
    fn schema_name() -> Cow<'static, str> {
        "Seconds".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "number", "minimum": 0, "description": "seconds"})
    }
}

/// The HAS protocol version a server announces: `0.8` (major.minor) or, since v1, just `1`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct ProtocolVersion(pub f64);

impl ProtocolVersion {
    /// Protocol 1, what our relay announces and the newest we speak.
    pub const V1: ProtocolVersion = ProtocolVersion(1.0);
    /// Protocol 0.8, still spoken by Hive Keychain Mobile.
    pub const V0_8: ProtocolVersion = ProtocolVersion(0.8);

    /// Whether a peer speaking this version can be served by us (≤ 1, 0.8 included).
    pub fn is_supported(&self) -> bool {
        self.0.is_finite() && self.0 > 0.0 && self.0 <= 1.0
    }
}

impl<'de> Deserialize<'de> for ProtocolVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if v.is_finite() {
            Ok(ProtocolVersion(v))
        } else {
            Err(serde::de::Error::custom("protocol must be a finite number"))
        }
    }
}

impl Serialize for ProtocolVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0 >= 0.0 && self.0 < 1e15 {
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl JsonSchema for ProtocolVersion {
    fn schema_name() -> Cow<'static, str> {
        "ProtocolVersion".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "number", "minimum": 0})
    }
}

/// A request id assigned by the HAS server (a UUID v4 in canonical text form on our relay;
/// any non-empty string of at most 128 characters is accepted from others).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random UUID v4.
    pub fn generate() -> Self {
        RequestId(uuid::Uuid::new_v4().to_string())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 128 {
            Err("uuid must be a non-empty string of at most 128 characters".into())
        } else {
            Ok(RequestId(s))
        }
    }
}

impl From<RequestId> for String {
    fn from(r: RequestId) -> String {
        r.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for RequestId {
    fn schema_name() -> Cow<'static, str> {
        "RequestId".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "minLength": 1, "maxLength": 128})
    }
}

/// A Hive account name: 3 to 16 characters; dot-separated segments of at least 3 characters,
/// each starting with a lower-case letter, ending with a letter or digit, with letters,
/// digits and hyphens in between (hived `is_valid_account_name`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountName(String);

/// The account-name rule as a JSON Schema pattern (length is checked separately).
pub const ACCOUNT_NAME_PATTERN: &str = r"^[a-z][a-z0-9-]+[a-z0-9](\.[a-z][a-z0-9-]+[a-z0-9])*$";

impl AccountName {
    /// Validates and wraps a name.
    pub fn new(name: &str) -> Result<Self, String> {
        AccountName::try_from(name.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn valid(name: &str) -> bool {
        hive_chain::validate::is_valid_account_name(name)
    }
}

impl TryFrom<String> for AccountName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if AccountName::valid(&s) {
            Ok(AccountName(s))
        } else {
            Err(format!("{s:?} is not a valid Hive account name"))
        }
    }
}

impl From<AccountName> for String {
    fn from(a: AccountName) -> String {
        a.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AccountName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        AccountName::new(s)
    }
}

impl JsonSchema for AccountName {
    fn schema_name() -> Cow<'static, str> {
        "AccountName".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 3,
            "maxLength": 16,
            "pattern": ACCOUNT_NAME_PATTERN,
            "description": "Hive account name"
        })
    }
}

/// The key role an app asks for (`key_type`). Owner is never requested over HAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Memo key.
    Memo,
    /// Posting key.
    Posting,
    /// Active key.
    Active,
}

impl JsonSchema for KeyType {
    fn schema_name() -> Cow<'static, str> {
        "KeyType".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "enum": ["memo", "posting", "active"]})
    }
}

impl KeyType {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyType::Memo => "memo",
            KeyType::Posting => "posting",
            KeyType::Active => "active",
        }
    }

    /// The matching has-crypto role.
    pub fn role(&self) -> has_crypto::KeyRole {
        match self {
            KeyType::Memo => has_crypto::KeyRole::Memo,
            KeyType::Posting => has_crypto::KeyRole::Posting,
            KeyType::Active => has_crypto::KeyRole::Active,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something usable as a CryptoJS passphrase: an [`AuthKey`] or an [`AuthReqSecret`].
pub trait Passphrase {
    /// The passphrase text.
    fn passphrase(&self) -> &str;
}

/// An app's session key (`auth_key`): the CryptoJS passphrase of every payload, and since
/// protocol 1 the session identifier at the PKSA. A UUID v4 string for every known app.
/// Secret: zeroized, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(SecretString);

impl AuthKey {
    /// A fresh UUID v4 key.
    pub fn generate() -> Self {
        AuthKey(SecretString::new(uuid::Uuid::new_v4().to_string()))
    }

    /// Wraps an existing key text.
    pub fn new(text: impl Into<String>) -> Self {
        AuthKey(SecretString::new(text.into()))
    }

    /// The key text (handle with care).
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl Passphrase for AuthKey {
    fn passphrase(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<redacted>)")
    }
}

/// The pre-shared secret with which service-mode apps encrypt their `auth_key`.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthReqSecret(SecretString);

impl AuthReqSecret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Self {
        AuthReqSecret(SecretString::new(text.into()))
    }

    /// A fresh random secret (32 random bytes, base64url).
    pub fn generate() -> Self {
        use base64::Engine as _;
        let mut b = [0u8; 32];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
        AuthReqSecret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
    }

    /// The secret text (handle with care).
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl Passphrase for AuthReqSecret {
    fn passphrase(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AuthReqSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthReqSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in [
            "abc",
            "alice",
            "hive-sandbox",
            "a-b.cde",
            "ab1.c-d.e12",
            "a1234567890abcde",
        ] {
            assert!(AccountName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Alice",
            "1abc",
            "abc-",
            "ab.cde",
            "abc..def",
            "a.b.c",
            "abcdefghijklmnopq",
            "",
            "ab c",
        ] {
            assert!(AccountName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lenient_millis() {
        let v: UnixMillis = serde_json::from_str("1690000000000.0").unwrap();
        assert_eq!(v, UnixMillis(1690000000000));
        let v: UnixMillis = serde_json::from_str("1690000000000").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "1690000000000");
        assert!(serde_json::from_str::<UnixMillis>("-1").is_err());
        assert!(serde_json::from_str::<UnixMillis>("\"1\"").is_err());
    }

    #[test]
    fn protocol_version_forms() {
        assert_eq!(serde_json::to_string(&ProtocolVersion::V1).unwrap(), "1");
        assert_eq!(
            serde_json::to_string(&ProtocolVersion::V0_8).unwrap(),
            "0.8"
        );
        assert!(ProtocolVersion::V0_8.is_supported() && ProtocolVersion::V1.is_supported());
        assert!(!ProtocolVersion(2.0).is_supported());
    }

    #[test]
    fn secrets_redacted() {
        let k = AuthKey::generate();
        assert_eq!(format!("{k:?}"), "AuthKey(<redacted>)");
        assert_eq!(k.expose_secret().len(), 36);
        let s = AuthReqSecret::generate();
        assert!(!format!("{s:?}").contains(s.expose_secret()));
    }
}
