//! Hive keys: WIF private keys and `STM…` public keys (hive-crypto.md §1-2, has-protocol.md §4.4).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use k256::elliptic_curve::ff::PrimeField;
use k256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use k256::elliptic_curve::zeroize::Zeroize;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use rand::CryptoRng;
use ripemd::Ripemd160;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::base58;
use crate::error::{Error, Result};
use crate::secret::SecretString;

/// Address prefix of Hive mainnet public keys.
pub const MAINNET_PREFIX: &str = "STM";
/// Address prefix of Hive testnet public keys.
pub const TESTNET_PREFIX: &str = "TST";

/// The four Hive key roles, from the least to the most powerful (memo is the least).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRole {
    /// Memo key: encrypts and decrypts memos, cannot authorise operations.
    Memo,
    /// Posting key: social operations (vote, comment, most custom_json).
    Posting,
    /// Active key: funds and most account operations.
    Active,
    /// Owner key: account recovery and owner authority changes.
    Owner,
}

impl KeyRole {
    /// All roles, least powerful first (the Proof of Key order memo → posting → active).
    pub const ALL: [KeyRole; 4] = [
        KeyRole::Memo,
        KeyRole::Posting,
        KeyRole::Active,
        KeyRole::Owner,
    ];

    /// The lower-case name used on the wire and in login derivation.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyRole::Memo => "memo",
            KeyRole::Posting => "posting",
            KeyRole::Active => "active",
            KeyRole::Owner => "owner",
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyRole {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "memo" => Ok(KeyRole::Memo),
            "posting" => Ok(KeyRole::Posting),
            "active" => Ok(KeyRole::Active),
            "owner" => Ok(KeyRole::Owner),
            _ => Err(()),
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A secp256k1 private key.
///
/// Zeroized on drop; `Debug` shows only the public key; no `Display`. Convert to text only with
/// [`PrivateKey::to_wif`], which returns a [`SecretString`].
#[derive(Clone)]
pub struct PrivateKey {
    scalar: Scalar,
    /// Derived on first use: parsing a WIF costs no point multiplication.
    public: OnceLock<PublicKey>,
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.scalar.zeroize();
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        // Comparing public keys avoids a data-dependent comparison of secrets.
        self.public_key() == other.public_key()
    }
}
impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(<redacted>, public: {})", self.public_key())
    }
}

impl PrivateKey {
    /// Builds a key from a 32-byte big-endian secret scalar; 1 ≤ d < n is required.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let repr = Zeroizing::new(FieldBytes::from(*bytes));
        let scalar: Option<Scalar> = Scalar::from_repr(*repr).into();
        let scalar = scalar.ok_or(Error::KeyRange)?;
        if bool::from(scalar.is_zero()) {
            return Err(Error::KeyRange);
        }
        Ok(PrivateKey {
            scalar,
            public: OnceLock::new(),
        })
    }

    /// The 32-byte big-endian secret scalar.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.scalar.to_bytes().into())
    }

    /// Parses a WIF string strictly: 37 bytes, version 0x80, double-SHA256 checksum,
    /// 1 ≤ d < n (dhive's rules; hive-js is laxer, see hive-crypto.md §1).
    pub fn from_wif(wif: &str) -> Result<Self> {
        let raw = Zeroizing::new(base58::decode(wif).ok_or(Error::Base58)?);
        if raw.len() != 37 {
            return Err(Error::WifLength);
        }
        let (payload, checksum) = raw.split_at(33);
        if payload.first() != Some(&0x80) {
            return Err(Error::WifVersion);
        }
        let expected = sha256(&sha256(payload));
        if expected.get(..4) != Some(checksum) {
            return Err(Error::WifChecksum);
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(payload.get(1..).ok_or(Error::WifLength)?);
        PrivateKey::from_bytes(&secret)
    }

    /// The WIF text of this key (`5H…`/`5J…`/`5K…`, 51 characters).
    pub fn to_wif(&self) -> SecretString {
        let mut payload = Zeroizing::new(Vec::with_capacity(37));
        payload.push(0x80);
        payload.extend_from_slice(self.to_bytes().as_slice());
        let check = sha256(&sha256(&payload));
        payload.extend_from_slice(check.get(..4).unwrap_or_default());
        SecretString::new(base58::encode(payload.as_slice()))
    }

    /// The key dhive's `PrivateKey.fromLogin(account, password, role)` derives:
    /// `sha256(account ‖ role ‖ password)`. (hive-js first collapses whitespace in the seed
    /// and therefore differs for passwords with runs of whitespace; we follow dhive.)
    pub fn from_login(account: &str, password: &str, role: KeyRole) -> Result<Self> {
        let mut seed = Zeroizing::new(String::with_capacity(
            account.len() + role.as_str().len() + password.len(),
        ));
        seed.push_str(account);
        seed.push_str(role.as_str());
        seed.push_str(password);
        PrivateKey::from_seed(seed.as_bytes())
    }

    /// The key `sha256(seed)` (dhive `PrivateKey.fromSeed`).
    pub fn from_seed(seed: &[u8]) -> Result<Self> {
        let secret = Zeroizing::new(sha256(seed));
        PrivateKey::from_bytes(&secret)
    }

    /// A fresh random key from the system CSPRNG.
    pub fn generate() -> Self {
        PrivateKey::generate_with_rng(&mut rand::rng())
    }

    /// A fresh random key from `rng`.
    pub fn generate_with_rng<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let mut secret = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(secret.as_mut_slice());
            if let Ok(key) = PrivateKey::from_bytes(&secret) {
                return key;
            }
        }
    }

    /// The public key of this private key.
    pub fn public_key(&self) -> &PublicKey {
        self.public.get_or_init(|| {
            let point = ProjectivePoint::mul_by_generator(&self.scalar).to_affine();
            let enc = point.to_sec1_point(true);
            let mut compressed = [0u8; 33];
            // A non-zero scalar times G is never the identity, so this is always 33 bytes.
            if let Some(b) = enc.as_bytes().get(..33) {
                compressed.copy_from_slice(b);
            }
            PublicKey { point, compressed }
        })
    }

    pub(crate) fn scalar(&self) -> &Scalar {
        &self.scalar
    }
}

/// A secp256k1 public key, always a valid non-identity point, shown in Hive text form.
///
/// Ordered and compared by its 33-byte compressed encoding (the order hived uses for
/// `key_auths`).
#[derive(Clone, Copy)]
pub struct PublicKey {
    point: AffinePoint,
    compressed: [u8; 33],
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.compressed == other.compressed
    }
}
impl Eq for PublicKey {}
impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.compressed.hash(state);
    }
}
impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.compressed.cmp(&other.compressed)
    }
}

impl PublicKey {
    pub(crate) fn from_affine(point: AffinePoint) -> Result<Self> {
        let enc = point.to_sec1_point(true);
        let compressed: [u8; 33] = enc
            .as_bytes()
            .try_into()
            .map_err(|_| Error::PublicKeyPoint)?;
        Ok(PublicKey { point, compressed })
    }

    pub(crate) fn affine(&self) -> &AffinePoint {
        &self.point
    }

    /// Parses a 33-byte SEC1 compressed point.
    pub fn from_compressed(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 33 {
            return Err(Error::PublicKeyLength);
        }
        // Only the compressed tags. k256 also reads 0x05 (a "compact" point) as the even-y
        // point, which would sign for another key than the one written; dhive and hive-js
        // refuse it.
        if !matches!(bytes.first(), Some(0x02 | 0x03)) {
            return Err(Error::PublicKeyPoint);
        }
        let point: Option<AffinePoint> = AffinePoint::from_sec1_bytes(bytes).ok();
        let point = point.ok_or(Error::PublicKeyPoint)?;
        PublicKey::from_affine(point)
    }

    /// The 33-byte SEC1 compressed encoding.
    pub fn to_compressed(&self) -> [u8; 33] {
        self.compressed
    }

    /// Parses `prefix ‖ base58(key33 ‖ ripemd160(key33)[..4])`, requiring exactly `prefix`.
    pub fn from_str_with_prefix(s: &str, prefix: &str) -> Result<Self> {
        let body = s.strip_prefix(prefix).ok_or(Error::PublicKeyPrefix)?;
        let raw = base58::decode(body).ok_or(Error::Base58)?;
        if raw.len() != 37 {
            return Err(Error::PublicKeyLength);
        }
        let (key, checksum) = raw.split_at(33);
        let digest = Ripemd160::digest(key);
        if digest.get(..4) != Some(checksum) {
            return Err(Error::PublicKeyChecksum);
        }
        PublicKey::from_compressed(key)
    }

    /// The text form with `prefix` (`STM` on mainnet, `TST` on testnets).
    pub fn to_string_with_prefix(&self, prefix: &str) -> String {
        let digest = Ripemd160::digest(self.compressed);
        let mut raw = Vec::with_capacity(37);
        raw.extend_from_slice(&self.compressed);
        raw.extend_from_slice(digest.get(..4).unwrap_or_default());
        format!("{prefix}{}", base58::encode(&raw))
    }
}

/// Parses the mainnet (`STM`) form.
impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PublicKey::from_str_with_prefix(s, MAINNET_PREFIX)
    }
}

/// The mainnet (`STM`) form.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_with_prefix(MAINNET_PREFIX))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIF: &str = "5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw";
    const PUB: &str = "STM8m5UgaFAAYQRuaNejYdS8FVLVp9Ss3K1qAVk5de6F8s3HnVbvA";

    #[test]
    fn only_the_compressed_tags_are_keys() {
        let key: PublicKey = PUB.parse().unwrap();
        let good = key.to_compressed();
        // Same x with the other tags: 0x02/0x03 are the two points, anything else (0x05 is
        // k256's "compact" form, read as the even-y point) is refused as dhive and hive-js do.
        for tag in 0u8..=255 {
            let mut b = good;
            b[0] = tag;
            let r = PublicKey::from_compressed(&b);
            assert_eq!(r.is_ok(), tag == 2 || tag == 3, "tag {tag:#04x}");
            if tag == 5 {
                // Also in text form, with a valid checksum.
                let digest = Ripemd160::digest(b);
                let mut raw = b.to_vec();
                raw.extend_from_slice(&digest[..4]);
                let text = format!("STM{}", crate::base58::encode(&raw));
                assert_eq!(
                    text.parse::<PublicKey>().unwrap_err(),
                    Error::PublicKeyPoint
                );
            }
        }
    }

    #[test]
    fn spec_vector() {
        let k = PrivateKey::from_wif(WIF).unwrap();
        assert_eq!(
            hex::encode(*k.to_bytes()),
            "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
        );
        assert_eq!(
            hex::encode(k.public_key().to_compressed()),
            "03fdf4907810a9f5d9462a1ae09feee5ab205d32798b0ffcc379442021f84c5bbf"
        );
        assert_eq!(k.public_key().to_string(), PUB);
        assert_eq!(k.to_wif().expose_secret(), WIF);
        assert_eq!(PUB.parse::<PublicKey>().unwrap(), *k.public_key());
        let server = PrivateKey::from_seed(b"has-server-test-key").unwrap();
        assert_eq!(
            server.to_wif().expose_secret(),
            "5KkYPLYcNFa8ELxjPfnYHZrXtk116GTD1TsovBj8PaiW6ko5L7o"
        );
        assert_eq!(
            server.public_key().to_string(),
            "STM57nuDKKzvaPctQvoFz5tnryde7jVM3HmwAir5GrtiMjFmRJWca"
        );
    }

    #[test]
    fn prefixes() {
        let k = PrivateKey::from_wif(WIF).unwrap();
        let tst = k.public_key().to_string_with_prefix(TESTNET_PREFIX);
        assert!(tst.starts_with("TST"));
        assert_eq!(
            PublicKey::from_str_with_prefix(&tst, TESTNET_PREFIX).unwrap(),
            *k.public_key()
        );
        assert_eq!(
            tst.parse::<PublicKey>().unwrap_err(),
            Error::PublicKeyPrefix
        );
        assert_eq!(
            "STM1111111111111111111111111111111114T1Anm"
                .parse::<PublicKey>()
                .unwrap_err(),
            Error::PublicKeyPoint
        );
    }

    #[test]
    fn debug_hides_secret() {
        let k = PrivateKey::from_wif(WIF).unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(WIF));
        assert!(!dbg.contains("6b86b273"));
        assert!(dbg.contains(PUB));
    }

    #[test]
    fn wif_errors() {
        assert_eq!(PrivateKey::from_wif("0OIl").unwrap_err(), Error::Base58);
        let mut bad = WIF.to_string();
        bad.replace_range(50.., "x");
        assert_eq!(PrivateKey::from_wif(&bad).unwrap_err(), Error::WifChecksum);
        assert_eq!(
            PrivateKey::from_bytes(&[0; 32]).unwrap_err(),
            Error::KeyRange
        );
        assert_eq!(
            PrivateKey::from_bytes(&[0xff; 32]).unwrap_err(),
            Error::KeyRange
        );
    }
}
