//! Errors of frame and payload handling.

use std::fmt;

/// A schema violation: which message, where in it (JSON pointer) and which rule.
/// Displays as e.g. `sign_req: /data must be a string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationFailure {
    /// The message or payload name (`sign_req`, `auth_req_data`, …).
    pub message: String,
    /// JSON pointer of the offending value (`""` = the whole document).
    pub pointer: String,
    /// The rule it breaks, in words.
    pub rule: String,
}

impl fmt::Display for ValidationFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            self.pointer.as_str()
        };
        write!(f, "{}: {} {}", self.message, at, self.rule)
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The literal text `ping` (Hive Keychain's keep-alive): not an error, just not a frame.
    #[error("ping text frame")]
    Ping,
    /// Not JSON.
    #[error("frame is not valid JSON")]
    NotJson,
    /// JSON, but not an object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// An object without a string `cmd`.
    #[error("frame has no string field cmd")]
    MissingCmd,
    /// A known command that breaks its schema.
    #[error("{0}")]
    Invalid(ValidationFailure),
    /// Larger than the configured limit.
    #[error("frame of {0} bytes exceeds the size limit")]
    TooLarge(usize),
}

impl FrameError {
    /// A stable name for logs, metrics and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::Ping => "ping",
            FrameError::NotJson => "not_json",
            FrameError::NotObject => "not_object",
            FrameError::MissingCmd => "missing_cmd",
            FrameError::Invalid(_) => "invalid",
            FrameError::TooLarge(_) => "too_large",
        }
    }
}

/// Why an encrypted payload could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not decryptable with this key (opaque on purpose).
    #[error("payload could not be decrypted")]
    Decrypt,
    /// Decrypted, but not a valid payload of the expected type.
    #[error("invalid payload: {0}")]
    Invalid(String),
}
