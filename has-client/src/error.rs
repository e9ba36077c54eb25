//! Client errors.

use has_protocol::RequestId;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Could not connect or the socket closed.
    #[error("connection: {0}")]
    Connection(String),
    /// The server speaks a protocol newer than 1.
    #[error("server protocol {0} is not supported (we speak 0.8 and 1)")]
    Protocol(f64),
    /// The server refused the request (`error` frame).
    #[error("server refused the request: {0}")]
    Server(String),
    /// The PKSA refused (`*_nack`). The data decrypted to the request uuid (or was absent).
    #[error("request {uuid} was refused by the PKSA{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Refused {
        /// The request.
        uuid: RequestId,
        /// A plaintext reason, when the PKSA gave one.
        reason: Option<String>,
    },
    /// The PKSA failed (`*_err`), with its (decrypted) message.
    #[error("request {uuid} failed at the PKSA: {message}")]
    Failed {
        /// The request.
        uuid: RequestId,
        /// Its message.
        message: String,
    },
    /// No answer before the request expired.
    #[error("request {0} expired without an answer")]
    Expired(RequestId),
    /// The server did not acknowledge the request in time.
    #[error("the server did not acknowledge the request")]
    NoWait,
    /// The answer does not decrypt with the session key or fails verification.
    #[error("invalid answer to {uuid}: {reason}")]
    InvalidAnswer {
        /// The request.
        uuid: RequestId,
        /// What is wrong.
        reason: String,
    },
    /// A bad argument (account name, operations).
    #[error("{0}")]
    Input(String),
}
