//! Secret containers: zeroized on drop, redacted in `Debug`, never `Display`.

use std::fmt;
use zeroize::Zeroizing;

/// A secret UTF-8 string (a WIF, a decrypted payload, a passphrase).
///
/// The contents are wiped from memory when the value is dropped and never appear in `Debug`
/// output. Read them deliberately with [`SecretString::expose_secret`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a string, taking ownership so that no unzeroized copy is left behind.
    pub fn new(value: String) -> Self {
        SecretString(Zeroizing::new(value))
    }

    /// The secret text.
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString::new(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Secret bytes (key material, shared secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes, taking ownership.
    pub fn new(value: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(value))
    }

    /// The secret bytes.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::from("5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw");
        assert_eq!(format!("{s:?}"), "SecretString(<redacted>)");
        let b = SecretBytes::new(vec![1, 2, 3]);
        assert_eq!(format!("{b:?}"), "SecretBytes(<redacted>)");
        assert_eq!(s.expose_secret().len(), 51);
    }
}
