//! AES-256-CBC with PKCS#7, shared by the CryptoJS and memo schemes.
//!
//! Hazmat: unauthenticated CBC, kept only for compatibility with the HAS/Hive ecosystem.

use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};

use crate::error::{Error, Result};

type Enc = cbc::Encryptor<aes::Aes256>;
type Dec = cbc::Decryptor<aes::Aes256>;

pub(crate) fn encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    Enc::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// Strict decryption: the ciphertext must be a non-empty multiple of 16 bytes and the padding
/// valid PKCS#7 (1..=16 bytes, all equal). Any failure is the opaque [`Error::Decrypt`].
pub(crate) fn decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(Error::Decrypt);
    }
    Dec::new(key.into(), iv.into())
        .decrypt_padded_vec::<Pkcs7>(ciphertext)
        .map_err(|_| Error::Decrypt)
}

/// One CBC block: `last` decrypted under `key` and XORed with `prev` (the block before it,
/// or the IV). Uses the decryption key schedule alone and allocates nothing: this is what
/// trial decryption runs once per candidate key.
pub(crate) fn decrypt_block(
    key: &[u8; 32],
    prev: &[u8; 16],
    last: &[u8; 16],
) -> zeroize::Zeroizing<[u8; 16]> {
    use aes::cipher::{BlockCipherDecrypt, KeyInit};
    let cipher = aes::Aes256Dec::new(key.into());
    let mut block = zeroize::Zeroizing::new(aes::Block::from(*last));
    cipher.decrypt_block(&mut block);
    let mut plain = zeroize::Zeroizing::new([0u8; 16]);
    for ((p, b), c) in plain.iter_mut().zip(block.iter()).zip(prev) {
        *p = b ^ c;
    }
    plain
}
