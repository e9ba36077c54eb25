//! Errors of hive-chain.

/// Everything that can go wrong building, parsing or serializing Hive data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operation whose name or id we do not know (or a virtual operation).
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// A bad operation: which one, which field, what is wrong.
    #[error("{op}: {field}: {message}")]
    Operation {
        /// Operation name (`vote`, `transfer`, …).
        op: String,
        /// Field path inside the operation (`weight`, `extensions[0]`, …); `.` for the whole.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An operation that is not `[name, {…}]` or `{"type": …, "value": {…}}`.
    #[error("operation {0}: expected [name, {{fields}}] or {{\"type\", \"value\"}}")]
    OperationShape(usize),
    /// A transaction field is bad.
    #[error("transaction: {0}")]
    Transaction(String),
    /// A value has no binary encoding (a bug or an unsupported value).
    #[error("cannot serialize: {0}")]
    Serialize(String),
    /// A chain id that is not 64 hex characters.
    #[error("chain id must be 32 bytes of hex")]
    ChainId,
}

impl Error {
    /// A stable name for tests and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::UnknownOperation(_) => "unknown_operation",
            Error::Operation { .. } => "operation",
            Error::OperationShape(_) => "operation_shape",
            Error::Transaction(_) => "transaction",
            Error::Serialize(_) => "serialize",
            Error::ChainId => "chain_id",
        }
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;
