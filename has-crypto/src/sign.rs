//! Hive compact signatures (hive-crypto.md §3, has-protocol.md §4.7).
//!
//! A signature is 65 bytes `header ‖ r ‖ s`, header = 27 + 4 + recovery id. Two deterministic
//! signing schemes are implemented so that our bytes equal the JS libraries' bytes:
//!
//! * [`PrivateKey::sign_buffer`]: hive-js `Signature.signBuffer` (HAS challenges): RFC 6979 over
//!   `sha256(msg)`, and on a non-canonical result a retry with the nonce derived from
//!   `sha256(h ‖ n zero bytes)`.
//! * [`PrivateKey::sign_digest`]: dhive `PrivateKey.sign` (transactions): RFC 6979 with extra
//!   data `sha256(digest ‖ attempt byte)`, attempts 1, 2, ….
//!
//! Both stop at the first fc-canonical signature (r and s in [2^247, 2^255)); s is always low.
//! Verification accepts any low-S signature (what hived checks).
//!
//! ```
//! use has_crypto::{PrivateKey, Signature};
//! let key = PrivateKey::from_wif("5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw").unwrap();
//! let sig = key.sign_buffer(b"hello");
//! assert_eq!(sig.to_hex(), "1f721c9fc22d0d4208ee51e6b8e2ea783cacbc363721861ab53bdb91795992a06b3e1241686f7bffdb9ec7022741eb17f1b546a060b93726fed60605db5357a6aa");
//! assert_eq!(sig.recover_buffer(b"hello").unwrap(), *key.public_key());
//! ```

use std::fmt;
use std::str::FromStr;

use hmac::{KeyInit, Mac};
use k256::elliptic_curve::ff::PrimeField;
use k256::elliptic_curve::group::Group;
use k256::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
use k256::elliptic_curve::point::AffineCoordinates;
use k256::elliptic_curve::scalar::IsHigh;
use k256::elliptic_curve::sec1::FromSec1Point;
use k256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{PrivateKey, PublicKey};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The secp256k1 group order n, big-endian.
const ORDER_BE: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// The secp256k1 field prime p, big-endian.
const FIELD_P_BE: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xfc, 0x2f,
];

/// `r + n` as 32 big-endian bytes when it is below the field prime, else `None`.
fn add_order(r: &[u8; 32]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for ((o, a), b) in out.iter_mut().zip(r).zip(ORDER_BE.iter()).rev() {
        let sum = u16::from(*a) + u16::from(*b) + carry;
        *o = (sum & 0xff) as u8;
        carry = sum >> 8;
    }
    (carry == 0 && out < FIELD_P_BE).then_some(out)
}

/// A 65-byte compact recoverable signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 65]);

impl Signature {
    /// Parses 65 bytes. The header must be a compact recovery header, 27..=34 (hive-js reads
    /// `(header - 27) & 3`; dhive and hived write 31..=34). r and s must be in [1, n).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 65] = bytes.try_into().map_err(|_| Error::SignatureLength)?;
        let sig = Signature(arr);
        if !(27..=34).contains(&arr[0]) {
            return Err(Error::SignatureHeader);
        }
        sig.scalars()?;
        Ok(sig)
    }

    /// Parses 130 hexadecimal characters (either case).
    pub fn from_hex(s: &str) -> Result<Self> {
        if s.len() != 130 {
            return Err(Error::SignatureLength);
        }
        let bytes = hex::decode(s).map_err(|_| Error::SignatureHex)?;
        Signature::from_bytes(&bytes)
    }

    /// The 65 bytes.
    pub fn to_bytes(&self) -> [u8; 65] {
        self.0
    }

    /// 130 lower-case hexadecimal characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The recovery id, 0..=3.
    pub fn recovery_id(&self) -> u8 {
        self.0[0].wrapping_sub(27) & 3
    }

    fn r_bytes(&self) -> &[u8] {
        self.0.get(1..33).unwrap_or_default()
    }

    fn s_bytes(&self) -> &[u8] {
        self.0.get(33..65).unwrap_or_default()
    }

    /// Whether both r and s pass the fc ("graphene") canonical test that dhive and hive-js
    /// apply when signing.
    pub fn is_fc_canonical(&self) -> bool {
        fc_canonical_half(self.r_bytes()) && fc_canonical_half(self.s_bytes())
    }

    /// Whether s ≤ n/2 (BIP-62), the rule hived enforces.
    pub fn is_low_s(&self) -> bool {
        self.scalars()
            .map(|(_, s)| !bool::from(s.is_high()))
            .unwrap_or(false)
    }

    fn scalars(&self) -> Result<(Scalar, Scalar)> {
        let r = scalar_from_slice(self.r_bytes()).ok_or(Error::SignatureValue)?;
        let s = scalar_from_slice(self.s_bytes()).ok_or(Error::SignatureValue)?;
        if bool::from(r.is_zero()) || bool::from(s.is_zero()) {
            return Err(Error::SignatureValue);
        }
        Ok((r, s))
    }

    /// Recovers the public key that produced this signature over a 32-byte digest.
    pub fn recover(&self, digest: &[u8; 32]) -> Result<PublicKey> {
        let (r, s) = self.scalars()?;
        let recid = self.recovery_id();
        let mut x = [0u8; 32];
        x.copy_from_slice(self.r_bytes());
        if recid & 2 != 0 {
            // R.x = r + n, which must still be a field element (< p); found by the
            // signature_parse fuzz target: a wrapping add gave a bogus R instead of an error.
            x = add_order(&x).ok_or(Error::SignatureRecovery)?;
        }
        let mut sec1 = [0u8; 33];
        sec1[0] = 0x02 | (recid & 1);
        sec1[1..].copy_from_slice(&x);
        let big_r: Option<AffinePoint> = AffinePoint::from_sec1_bytes(&sec1).ok();
        let big_r = big_r.ok_or(Error::SignatureRecovery)?;
        let e = digest_scalar(digest);
        // Everything here is public: variable-time arithmetic is fine.
        let r_inv: Option<Scalar> = r.invert_vartime().into();
        let r_inv = r_inv.ok_or(Error::SignatureRecovery)?;
        let u1 = -(e * r_inv);
        let u2 = s * r_inv;
        let q = ProjectivePoint::mul_by_generator_and_mul_add_vartime(
            &u1,
            &u2,
            &ProjectivePoint::from(big_r),
        );
        if bool::from(q.is_identity()) {
            return Err(Error::SignatureRecovery);
        }
        PublicKey::from_affine(q.to_affine()).map_err(|_| Error::SignatureRecovery)
    }

    /// Recovers the signer of `sha256(message)` (a HAS challenge).
    pub fn recover_buffer(&self, message: &[u8]) -> Result<PublicKey> {
        self.recover(&Sha256::digest(message).into())
    }

    /// Verifies this signature over a 32-byte digest against `key`. Requires low S (as hived);
    /// the recovery id is not used.
    pub fn verify(&self, digest: &[u8; 32], key: &PublicKey) -> Result<()> {
        let (r, s) = self.scalars()?;
        if bool::from(s.is_high()) {
            return Err(Error::SignatureValue);
        }
        let s_inv: Option<Scalar> = s.invert_vartime().into();
        let s_inv = s_inv.ok_or(Error::SignatureValue)?;
        let e = digest_scalar(digest);
        // Everything here is public: variable-time arithmetic is fine.
        let p = ProjectivePoint::mul_by_generator_and_mul_add_vartime(
            &(e * s_inv),
            &(r * s_inv),
            &ProjectivePoint::from(*key.affine()),
        );
        if bool::from(p.is_identity()) {
            return Err(Error::SignatureMismatch);
        }
        let x = <Scalar as Reduce<FieldBytes>>::reduce(&p.to_affine().x());
        if x == r {
            Ok(())
        } else {
            Err(Error::SignatureMismatch)
        }
    }

    /// Verifies a signature over `sha256(message)` (a HAS challenge).
    pub fn verify_buffer(&self, message: &[u8], key: &PublicKey) -> Result<()> {
        self.verify(&Sha256::digest(message).into(), key)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_hex())
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Signature {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Signature::from_hex(s)
    }
}

fn fc_canonical_half(b: &[u8]) -> bool {
    match b {
        [b0, b1, ..] => b0 & 0x80 == 0 && !(*b0 == 0 && b1 & 0x80 == 0),
        _ => false,
    }
}

fn scalar_from_slice(b: &[u8]) -> Option<Scalar> {
    let arr: [u8; 32] = b.try_into().ok()?;
    Scalar::from_repr(FieldBytes::from(arr)).into()
}

fn digest_scalar(digest: &[u8; 32]) -> Scalar {
    <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(*digest))
}

/// RFC 6979 HMAC-SHA256 DRBG (qlen = 256), seeded with arbitrary bytes. Yields candidate
/// nonces; the first call gives the standard first candidate.
struct Rfc6979 {
    k: Zeroizing<[u8; 32]>,
    v: Zeroizing<[u8; 32]>,
    started: bool,
}

impl Rfc6979 {
    fn new(seed: &[&[u8]]) -> Self {
        let mut d = Rfc6979 {
            k: Zeroizing::new([0u8; 32]),
            v: Zeroizing::new([1u8; 32]),
            started: false,
        };
        d.k = d.hmac(&[d.v.as_slice(), &[0u8]], seed);
        d.v = d.hmac(&[d.v.as_slice()], &[]);
        d.k = d.hmac(&[d.v.as_slice(), &[1u8]], seed);
        d.v = d.hmac(&[d.v.as_slice()], &[]);
        d
    }

    fn hmac(&self, head: &[&[u8]], tail: &[&[u8]]) -> Zeroizing<[u8; 32]> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.k.as_slice())
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
        for part in head.iter().chain(tail) {
            mac.update(part);
        }
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    fn next_candidate(&mut self) -> Zeroizing<[u8; 32]> {
        if self.started {
            self.k = self.hmac(&[self.v.as_slice(), &[0u8]], &[]);
            self.v = self.hmac(&[self.v.as_slice()], &[]);
        }
        self.started = true;
        self.v = self.hmac(&[self.v.as_slice()], &[]);
        Zeroizing::new(*self.v)
    }

    /// The first candidate that is a valid nonce and gives a signature with r, s ≠ 0.
    fn sign(&mut self, d: &Scalar, e: &Scalar) -> Signature {
        loop {
            let cand = self.next_candidate();
            let k: Option<Scalar> = Scalar::from_repr(FieldBytes::from(*cand)).into();
            if let Some(sig) = k.and_then(|k| sign_with_k(d, e, &k)) {
                return sig;
            }
        }
    }
}

/// ECDSA with a given nonce; low-S normalised; None if k, r or s is zero.
fn sign_with_k(d: &Scalar, e: &Scalar, k: &Scalar) -> Option<Signature> {
    if bool::from(k.is_zero()) {
        return None;
    }
    let big_r = ProjectivePoint::mul_by_generator(k).to_affine();
    let x = big_r.x();
    let r = <Scalar as Reduce<FieldBytes>>::reduce(&x);
    if bool::from(r.is_zero()) {
        return None;
    }
    let overflow = r.to_bytes() != x;
    let k_inv: Option<Scalar> = k.invert().into();
    let mut s = k_inv? * (*e + r * d);
    if bool::from(s.is_zero()) {
        return None;
    }
    let mut recid = u8::from(bool::from(big_r.y_is_odd())) | (u8::from(overflow) << 1);
    if bool::from(s.is_high()) {
        s = -s;
        recid ^= 1;
    }
    let mut out = [0u8; 65];
    out[0] = 31 + recid;
    out[1..33].copy_from_slice(&r.to_bytes());
    out[33..].copy_from_slice(&s.to_bytes());
    Some(Signature(out))
}

impl PrivateKey {
    /// hive-js `Signature.signBuffer(message, wif)`: the HAS challenge signature, byte-identical
    /// to hive-js including its canonical-retry scheme.
    pub fn sign_buffer(&self, message: &[u8]) -> Signature {
        let h: [u8; 32] = Sha256::digest(message).into();
        self.sign_buffer_digest(&h)
    }

    /// hive-js `Signature.signBufferSha256(digest, wif)`.
    pub fn sign_buffer_digest(&self, digest: &[u8; 32]) -> Signature {
        let d = self.scalar();
        let e = digest_scalar(digest);
        let x = self.to_bytes();
        let mut attempt: usize = 0;
        loop {
            let h_n: [u8; 32] = if attempt == 0 {
                *digest
            } else {
                let mut hasher = Sha256::new();
                hasher.update(digest);
                hasher.update(vec![0u8; attempt]);
                hasher.finalize().into()
            };
            let sig = Rfc6979::new(&[x.as_slice(), &h_n]).sign(d, &e);
            if sig.is_fc_canonical() {
                return sig;
            }
            attempt += 1;
        }
    }

    /// dhive `PrivateKey.sign(digest)` (libsecp256k1 RFC 6979 with extra data
    /// `sha256(digest ‖ attempt)`): the transaction signature, byte-identical to dhive.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Signature {
        let d = self.scalar();
        let e = digest_scalar(digest);
        let x = self.to_bytes();
        // libsecp256k1 feeds the message reduced mod n into the nonce function.
        let msg: [u8; 32] = e.to_bytes().into();
        let mut attempt: u8 = 0;
        loop {
            attempt = attempt.wrapping_add(1);
            let mut hasher = Sha256::new();
            hasher.update(digest);
            hasher.update([attempt]);
            let extra: [u8; 32] = hasher.finalize().into();
            let sig = Rfc6979::new(&[x.as_slice(), &msg, &extra]).sign(d, &e);
            if sig.is_fc_canonical() {
                return sig;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PrivateKey {
        PrivateKey::from_wif("5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw").unwrap()
    }

    /// Found by the signature_parse fuzz target: recovery id 3 with r + n ≥ 2^256 wrapped
    /// around to a small x and "recovered" a key the signature does not verify against.
    #[test]
    fn recovery_with_r_plus_n_overflow_is_an_error() {
        let data: [u8; 65] = [
            34, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 0, 254, 255, 255, 255, 255,
            255, 48, 48, 48, 48, 48, 48, 255, 255, 0, 0, 0, 0, 0, 0, 0, 38, 228, 134, 0, 0, 0, 0,
            0, 0, 0, 112, 32, 48, 48, 2, 48, 48, 48, 207, 48, 208, 48, 200, 207, 48, 158, 48, 48,
            152,
        ];
        let sig = Signature::from_bytes(&data).unwrap();
        assert_eq!(sig.recovery_id(), 3);
        assert_eq!(
            sig.recover(&[0x42; 32]).unwrap_err(),
            Error::SignatureRecovery
        );
        // r + n just below p recovers when the point exists; r + n ≥ p never does.
        let small_r = {
            let mut d = [0u8; 65];
            d[0] = 33;
            d[32] = 1;
            d[64] = 1;
            Signature::from_bytes(&d).unwrap()
        };
        assert!(add_order(&small_r.0[1..33].try_into().unwrap()).is_some());
        let mut big = [0u8; 32];
        big[..16].copy_from_slice(&[0xff; 16]);
        assert!(add_order(&big).is_none());
        // Whatever recovers with recovery id 2 or 3 verifies.
        for seed in 0..200u32 {
            let mut d = [0u8; 65];
            d[0] = 33 + (seed % 2) as u8;
            d[1..33].copy_from_slice(&Sha256::digest(seed.to_le_bytes()));
            d[33..65].copy_from_slice(&Sha256::digest((seed + 1000).to_le_bytes()));
            d[1] = 0; // keep r + n below p
            if let Ok(sig) = Signature::from_bytes(&d)
                && sig.is_low_s()
                && let Ok(k) = sig.recover(&[7; 32])
            {
                sig.verify(&[7; 32], &k).unwrap();
            }
        }
    }

    #[test]
    fn spec_challenge_vectors() {
        let cases = [
            (
                r#"{"login":"arcange","ts":1690000000000}"#,
                "1f5833e89ab1f137ff572d054d41e17bab0ad0ed8be1fc14061e353a7290d4ee38643d83ee5f622484ffbde8b4b428e255dfd2ab6ee7febc3a8de69e18b002c102",
            ),
            (
                "msg4",
                "2036a6614a95391d8088875735cbf8f11410df96af9c05588070bb095f8026dacd70f02bca693e8cfbbb472d0343943e03c3ab32e5cd96088dc30f09f3028edc2a",
            ),
            (
                "msg7",
                "20334aa828af5163f5f2066c4802f721de185bbcb87e3cb5dd761fc0145a474f5557041fcd7a03495a4755f5550f79034d523212789a333cf71044f407abac72aa",
            ),
            (
                "msg9",
                "20558f13e89406b22e79b9b5ea2c8f96e0e2cf7220a290febf283ae34d827e617d19e71b6fcea6cd3835beabc337885f221193d8888da751c0211bd29a6cd354cb",
            ),
        ];
        let k = key();
        for (msg, hex) in cases {
            let sig = k.sign_buffer(msg.as_bytes());
            assert_eq!(sig.to_hex(), hex, "{msg}");
            assert_eq!(sig.recover_buffer(msg.as_bytes()).unwrap(), *k.public_key());
            sig.verify_buffer(msg.as_bytes(), k.public_key()).unwrap();
        }
    }

    #[test]
    fn verify_rejects_other_message_and_key() {
        let k = key();
        let sig = k.sign_buffer(b"a");
        assert_eq!(
            sig.verify_buffer(b"b", k.public_key()).unwrap_err(),
            Error::SignatureMismatch
        );
        let other = PrivateKey::from_seed(b"other").unwrap();
        assert_eq!(
            sig.verify_buffer(b"a", other.public_key()).unwrap_err(),
            Error::SignatureMismatch
        );
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            Signature::from_hex("00").unwrap_err(),
            Error::SignatureLength
        );
        assert_eq!(
            Signature::from_hex(&"zz".repeat(65)).unwrap_err(),
            Error::SignatureHex
        );
        assert_eq!(
            Signature::from_hex(&format!("23{}", "11".repeat(64))).unwrap_err(),
            Error::SignatureHeader
        );
        assert_eq!(
            Signature::from_hex(&format!("1f{}", "00".repeat(64))).unwrap_err(),
            Error::SignatureValue
        );
        assert_eq!(
            Signature::from_hex(&format!("1f{}", "ff".repeat(64))).unwrap_err(),
            Error::SignatureValue
        );
    }

    #[test]
    fn cross_check_with_k256_ecdsa() {
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        let k = key();
        for i in 0..20u32 {
            let digest: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            for sig in [k.sign_digest(&digest), k.sign_buffer_digest(&digest)] {
                let vk =
                    k256::ecdsa::VerifyingKey::from_sec1_bytes(&k.public_key().to_compressed())
                        .unwrap();
                let ks = k256::ecdsa::Signature::from_slice(&sig.to_bytes()[1..]).unwrap();
                vk.verify_prehash(&digest, &ks).unwrap();
                assert!(sig.is_fc_canonical() && sig.is_low_s());
                assert_eq!(sig.recover(&digest).unwrap(), *k.public_key());
            }
        }
    }
}
