//! The one error type of this crate.

use std::fmt;

/// Everything that can go wrong in `has-crypto`.
///
/// Decryption failures are deliberately opaque ([`Error::Decrypt`]): whether the base64, the
/// header, the padding, the UTF-8 or the memo checksum was wrong is never revealed, so a peer
/// cannot use us as an oracle. Parse errors of public data (keys, signatures) are precise.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Ciphertext could not be decrypted with this key (opaque on purpose).
    Decrypt,
    /// Text is not valid base58 (Bitcoin alphabet).
    Base58,
    /// A WIF does not decode to exactly 37 bytes (version, 32-byte secret, checksum).
    WifLength,
    /// A WIF's version byte is not 0x80.
    WifVersion,
    /// A WIF's double-SHA256 checksum does not match.
    WifChecksum,
    /// A private key scalar is zero or not below the curve order.
    KeyRange,
    /// A public key string does not start with the expected address prefix.
    PublicKeyPrefix,
    /// A public key does not decode to 33 key bytes plus a 4-byte checksum.
    PublicKeyLength,
    /// A public key's RIPEMD-160 checksum does not match.
    PublicKeyChecksum,
    /// Bytes that are not a valid compressed secp256k1 point.
    PublicKeyPoint,
    /// A signature is not 65 bytes (130 hex characters).
    SignatureLength,
    /// A signature is not valid hexadecimal.
    SignatureHex,
    /// A signature's header byte is not a compact recovery header (27..=34).
    SignatureHeader,
    /// A signature's r or s is zero or not below the curve order, or s is not low (BIP-62).
    SignatureValue,
    /// No public key can be recovered from this signature and digest.
    SignatureRecovery,
    /// The signature does not verify against the digest and public key.
    SignatureMismatch,
    /// A memo is not `#` followed by base58 of a well-formed encrypted memo structure.
    MemoFormat,
    /// A memo was encrypted between two keys, neither of which is ours.
    MemoKey,
    /// A Proof of Key decoded, but its value is not what was expected.
    PokMismatch,
}

impl Error {
    /// A stable machine-readable name for this error (used by vectors, tests and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Decrypt => "decrypt",
            Error::Base58 => "base58",
            Error::WifLength => "wif_length",
            Error::WifVersion => "wif_version",
            Error::WifChecksum => "wif_checksum",
            Error::KeyRange => "key_range",
            Error::PublicKeyPrefix => "public_key_prefix",
            Error::PublicKeyLength => "public_key_length",
            Error::PublicKeyChecksum => "public_key_checksum",
            Error::PublicKeyPoint => "public_key_point",
            Error::SignatureLength => "signature_length",
            Error::SignatureHex => "signature_hex",
            Error::SignatureHeader => "signature_header",
            Error::SignatureValue => "signature_value",
            Error::SignatureRecovery => "signature_recovery",
            Error::SignatureMismatch => "signature_mismatch",
            Error::MemoFormat => "memo_format",
            Error::MemoKey => "memo_key",
            Error::PokMismatch => "pok_mismatch",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Error::Decrypt => "decryption failed",
            Error::Base58 => "invalid base58 text",
            Error::WifLength => "WIF private key has the wrong length",
            Error::WifVersion => "WIF private key has the wrong version byte (expected 0x80)",
            Error::WifChecksum => "WIF private key checksum mismatch",
            Error::KeyRange => "private key is out of range for secp256k1",
            Error::PublicKeyPrefix => "public key has the wrong address prefix",
            Error::PublicKeyLength => "public key has the wrong length",
            Error::PublicKeyChecksum => "public key checksum mismatch",
            Error::PublicKeyPoint => "public key is not a valid secp256k1 point",
            Error::SignatureLength => "signature must be 65 bytes (130 hex characters)",
            Error::SignatureHex => "signature is not valid hexadecimal",
            Error::SignatureHeader => "signature header byte is not a compact recovery header",
            Error::SignatureValue => "signature r/s values are out of range or not canonical",
            Error::SignatureRecovery => "no public key can be recovered from the signature",
            Error::SignatureMismatch => "signature does not match the public key",
            Error::MemoFormat => "malformed encrypted memo",
            Error::MemoKey => "memo is not addressed to or from this key",
            Error::PokMismatch => "proof of key does not carry the expected value",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({})", self.kind())
    }
}

impl std::error::Error for Error {}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
