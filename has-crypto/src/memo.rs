//! Hive encrypted memos (hive-crypto.md §5, has-protocol.md §4.5) and HAS Proof of Key
//! (has-protocol.md §4.6).
//!
//! Hazmat: memos are unauthenticated AES-256-CBC under an ECDH-derived key, with a 32-bit
//! checksum. They exist for compatibility with hive-js/dhive only.
//!
//! A memo text beginning with `#` is encrypted; anything else passes through unchanged, as in
//! the JS libraries. Decoding returns `#` + plaintext.
//!
//! The ECDH shared secret costs about 100 µs; a [`MemoChannel`] holds it for one (local key,
//! remote key) pair, and a [`SharedSecretCache`] keeps channels so that the Proof of Key on
//! every reply costs no fresh ECDH while the server key is unchanged.
//!
//! ```
//! use has_crypto::{memo, PrivateKey};
//! let alice = PrivateKey::from_seed(b"alice").unwrap();
//! let server = PrivateKey::from_seed(b"server").unwrap();
//! let m = memo::encode(&alice, server.public_key(), "#hello").unwrap();
//! assert_eq!(memo::decode(&server, &m).unwrap().text.expose_secret(), "#hello");
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use k256::ProjectivePoint;
use k256::elliptic_curve::point::AffineCoordinates;
use rand::CryptoRng;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::aes_cbc;
use crate::base58;
use crate::error::{Error, Result};
use crate::keys::{PrivateKey, PublicKey};
use crate::secret::SecretString;

/// The 64-byte memo shared secret `sha512(x(ECDH))`, zeroized on drop.
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<[u8; 64]>);

impl SharedSecret {
    /// Computes `sha512(x(local · remote))`; symmetric between the two parties.
    ///
    /// Like hive-js and dhive (and unlike fc), the x coordinate is hashed with its leading
    /// zero bytes stripped: both JS libraries call `BigInteger.toBuffer({size: 32})`, whose
    /// argument is ignored. For 1 key pair in 256 this changes the secret; matching the JS
    /// libraries is what lets HAS apps and wallets read our memos and POKs.
    pub fn derive(local: &PrivateKey, remote: &PublicKey) -> Self {
        let point = (ProjectivePoint::from(*remote.affine()) * local.scalar()).to_affine();
        let x = Zeroizing::new(point.x());
        let start = x.iter().position(|b| *b != 0).unwrap_or(x.len());
        let trimmed = x.get(start..).unwrap_or_default();
        SharedSecret(Zeroizing::new(Sha512::digest(trimmed).into()))
    }

    /// The 64 secret bytes (for vectors and tests).
    pub fn expose_secret(&self) -> &[u8; 64] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// Per-message key material: `E = sha512(nonce_le ‖ S)`, key = E[..32], iv = E[32..48],
/// check = u32 LE of sha256(E)[..4].
struct MessageKey {
    key: Zeroizing<[u8; 32]>,
    iv: Zeroizing<[u8; 16]>,
    check: u32,
}

fn message_key(shared: &SharedSecret, nonce: u64) -> MessageKey {
    let mut h = Sha512::new();
    h.update(nonce.to_le_bytes());
    h.update(shared.0.as_slice());
    let e = Zeroizing::new(<[u8; 64]>::from(h.finalize()));
    let mut key = Zeroizing::new([0u8; 32]);
    let mut iv = Zeroizing::new([0u8; 16]);
    let (k, rest) = e.split_at(32);
    key.copy_from_slice(k);
    iv.copy_from_slice(rest.get(..16).unwrap_or(&[0u8; 16]));
    let c: [u8; 32] = Sha256::digest(e.as_slice()).into();
    let check = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    MessageKey { key, iv, check }
}

/// An encryption channel between our private key and a remote public key, holding the
/// shared secret so that encoding and decoding need no ECDH.
#[derive(Clone, Debug)]
pub struct MemoChannel {
    local_public: PublicKey,
    remote: PublicKey,
    shared: SharedSecret,
}

impl MemoChannel {
    /// Derives the shared secret between `local` and `remote` (one ECDH).
    pub fn new(local: &PrivateKey, remote: &PublicKey) -> Self {
        MemoChannel {
            local_public: *local.public_key(),
            remote: *remote,
            shared: SharedSecret::derive(local, remote),
        }
    }

    /// Our public key.
    pub fn local_public(&self) -> &PublicKey {
        &self.local_public
    }

    /// The remote public key.
    pub fn remote(&self) -> &PublicKey {
        &self.remote
    }

    /// Encodes `text` (from us to the remote key) with a fresh unique nonce. Text not starting
    /// with `#` is returned unchanged.
    pub fn encode(&self, text: &str) -> String {
        self.encode_with_nonce(text, unique_nonce())
    }

    /// Encodes with a nonce from `rng` (injected randomness).
    pub fn encode_with_rng<R: CryptoRng + ?Sized>(&self, text: &str, rng: &mut R) -> String {
        self.encode_with_nonce(text, rng.next_u64())
    }

    /// Encodes with an explicit nonce (deterministic; the JS libraries' "test nonce").
    pub fn encode_with_nonce(&self, text: &str, nonce: u64) -> String {
        let Some(body) = text.strip_prefix('#') else {
            return text.to_owned();
        };
        let mk = message_key(&self.shared, nonce);
        let mut plain = Zeroizing::new(Vec::with_capacity(body.len() + 5));
        write_varint(&mut plain, body.len());
        plain.extend_from_slice(body.as_bytes());
        let ct = aes_cbc::encrypt(&mk.key, &mk.iv, &plain);
        let mut raw = Vec::with_capacity(33 + 33 + 8 + 4 + 5 + ct.len());
        raw.extend_from_slice(&self.local_public.to_compressed());
        raw.extend_from_slice(&self.remote.to_compressed());
        raw.extend_from_slice(&nonce.to_le_bytes());
        raw.extend_from_slice(&mk.check.to_le_bytes());
        write_varint(&mut raw, ct.len());
        raw.extend_from_slice(&ct);
        format!("#{}", base58::encode(&raw))
    }

    /// Decrypts memo parts with this channel's secret (the caller checked the keys).
    fn open(&self, nonce: u64, check: u32, ciphertext: &[u8]) -> Result<SecretString> {
        let mk = message_key(&self.shared, nonce);
        if mk.check != check {
            return Err(Error::Decrypt);
        }
        let plain = Zeroizing::new(aes_cbc::decrypt(&mk.key, &mk.iv, ciphertext)?);
        // Varint length prefix; legacy memos without it decode as the whole buffer.
        let text_bytes = match read_varint(&plain) {
            Some((len, used)) => match used.checked_add(len).and_then(|end| plain.get(used..end)) {
                Some(t) => t,
                None => plain.as_slice(),
            },
            None => plain.as_slice(),
        };
        let text = std::str::from_utf8(text_bytes).map_err(|_| Error::Decrypt)?;
        let mut out = String::with_capacity(text.len() + 1);
        out.push('#');
        out.push_str(text);
        Ok(SecretString::new(out))
    }
}

/// A parsed encrypted memo (public parts only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedMemo {
    /// Sender public key.
    pub from: PublicKey,
    /// Recipient public key.
    pub to: PublicKey,
    /// The 64-bit nonce.
    pub nonce: u64,
    /// The 32-bit key checksum.
    pub check: u32,
    /// AES-256-CBC ciphertext.
    pub ciphertext: Vec<u8>,
}

/// The fields of a memo with the keys still compressed (no point decompression).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawMemo {
    from: [u8; 33],
    to: [u8; 33],
    nonce: u64,
    check: u32,
    ciphertext: Vec<u8>,
}

impl RawMemo {
    fn parse(memo: &str) -> Result<Self> {
        let body = memo.strip_prefix('#').ok_or(Error::MemoFormat)?;
        let raw = base58::decode(body).ok_or(Error::MemoFormat)?;
        let take = |r: std::ops::Range<usize>| raw.get(r).ok_or(Error::MemoFormat);
        let from: [u8; 33] = take(0..33)?.try_into().map_err(|_| Error::MemoFormat)?;
        let to: [u8; 33] = take(33..66)?.try_into().map_err(|_| Error::MemoFormat)?;
        let nonce_bytes: [u8; 8] = take(66..74)?.try_into().map_err(|_| Error::MemoFormat)?;
        let check_bytes: [u8; 4] = take(74..78)?.try_into().map_err(|_| Error::MemoFormat)?;
        let rest = raw.get(78..).ok_or(Error::MemoFormat)?;
        let (len, used) = read_varint(rest).ok_or(Error::MemoFormat)?;
        let ciphertext = rest.get(used..).ok_or(Error::MemoFormat)?;
        if ciphertext.len() != len || len == 0 || !len.is_multiple_of(16) {
            return Err(Error::MemoFormat);
        }
        Ok(RawMemo {
            from,
            to,
            nonce: u64::from_le_bytes(nonce_bytes),
            check: u32::from_le_bytes(check_bytes),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl EncryptedMemo {
    /// Parses `#` + base58(from33 ‖ to33 ‖ nonce u64 LE ‖ check u32 LE ‖ varint len ‖ ct).
    pub fn parse(memo: &str) -> Result<Self> {
        let r = RawMemo::parse(memo)?;
        Ok(EncryptedMemo {
            from: PublicKey::from_compressed(&r.from).map_err(|_| Error::MemoFormat)?,
            to: PublicKey::from_compressed(&r.to).map_err(|_| Error::MemoFormat)?,
            nonce: r.nonce,
            check: r.check,
            ciphertext: r.ciphertext,
        })
    }

    /// The key that is not `mine`: `to` if we are the sender, else `from` (hive-js rule).
    pub fn other_party(&self, mine: &PublicKey) -> &PublicKey {
        if self.from == *mine {
            &self.to
        } else {
            &self.from
        }
    }
}

/// A decoded memo: the text (with its leading `#`) and the two keys.
#[derive(Debug)]
pub struct DecodedMemo {
    /// `#` + plaintext, as hive-js `memo.decode` returns it; a text without a leading `#`
    /// unchanged.
    pub text: SecretString,
    /// (sender, recipient) public keys; None for a text that is not an encrypted memo.
    pub keys: Option<(PublicKey, PublicKey)>,
}

impl DecodedMemo {
    /// hive-js and dhive return a memo without a leading `#` as it is: it was never
    /// encrypted.
    fn plain(memo: &str) -> Option<Self> {
        (!memo.starts_with('#')).then(|| DecodedMemo {
            text: SecretString::new(memo.to_owned()),
            keys: None,
        })
    }
}

/// Encodes `text` from `sender` to `recipient` with a unique nonce (one ECDH).
pub fn encode(sender: &PrivateKey, recipient: &PublicKey, text: &str) -> Result<String> {
    Ok(MemoChannel::new(sender, recipient).encode(text))
}

/// Encodes with an explicit nonce (deterministic).
pub fn encode_with_nonce(
    sender: &PrivateKey,
    recipient: &PublicKey,
    text: &str,
    nonce: u64,
) -> String {
    MemoChannel::new(sender, recipient).encode_with_nonce(text, nonce)
}

/// Decodes a memo with our private key, whether we are its sender or its recipient.
/// A memo between two other keys is [`Error::MemoKey`]; a wrong checksum, padding or UTF-8 is
/// the opaque [`Error::Decrypt`]. A text without a leading `#` is returned unchanged with no
/// keys, as hive-js and dhive do: callers that need an encrypted memo check
/// [`DecodedMemo::keys`].
pub fn decode(key: &PrivateKey, memo: &str) -> Result<DecodedMemo> {
    if let Some(plain) = DecodedMemo::plain(memo) {
        return Ok(plain);
    }
    let parsed = EncryptedMemo::parse(memo)?;
    let mine = key.public_key();
    if parsed.from != *mine && parsed.to != *mine {
        return Err(Error::MemoKey);
    }
    let channel = MemoChannel::new(key, parsed.other_party(mine));
    Ok(DecodedMemo {
        text: channel.open(parsed.nonce, parsed.check, &parsed.ciphertext)?,
        keys: Some((parsed.from, parsed.to)),
    })
}

/// (local public key, remote public key), compressed.
type ChannelId = ([u8; 33], [u8; 33]);

/// A bounded cache of [`MemoChannel`]s keyed by (local public key, remote public key).
#[derive(Debug)]
pub struct SharedSecretCache {
    capacity: usize,
    map: Mutex<HashMap<ChannelId, MemoChannel>>,
}

impl Default for SharedSecretCache {
    fn default() -> Self {
        SharedSecretCache::new(1024)
    }
}

impl SharedSecretCache {
    /// A cache holding at most `capacity` channels (cleared when full).
    pub fn new(capacity: usize) -> Self {
        SharedSecretCache {
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The channel between `local` and `remote`, computing the ECDH only on a miss.
    pub fn channel(&self, local: &PrivateKey, remote: &PublicKey) -> MemoChannel {
        let id = (local.public_key().to_compressed(), remote.to_compressed());
        if let Some(c) = self.map.lock().ok().and_then(|map| map.get(&id).cloned()) {
            return c;
        }
        let channel = MemoChannel::new(local, remote);
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(id, channel.clone());
        }
        channel
    }

    /// The channel between `local` and a remote key given as compressed bytes: on a cache hit
    /// nothing is decompressed or derived.
    fn channel_by_bytes(&self, local: &PrivateKey, remote: &[u8; 33]) -> Result<MemoChannel> {
        let id = (local.public_key().to_compressed(), *remote);
        if let Some(c) = self.map.lock().ok().and_then(|map| map.get(&id).cloned()) {
            return Ok(c);
        }
        let remote = PublicKey::from_compressed(remote).map_err(|_| Error::MemoFormat)?;
        Ok(self.channel(local, &remote))
    }

    /// Decodes a memo addressed to or from `key`, using a cached channel.
    /// On a cache hit no point is decompressed: the other party's key comes from the cache.
    pub fn decode(&self, key: &PrivateKey, memo: &str) -> Result<DecodedMemo> {
        if let Some(plain) = DecodedMemo::plain(memo) {
            return Ok(plain);
        }
        let parsed = RawMemo::parse(memo)?;
        let mine = key.public_key();
        let mine_bytes = mine.to_compressed();
        let from_me = parsed.from == mine_bytes;
        if !from_me && parsed.to != mine_bytes {
            return Err(Error::MemoKey);
        }
        let other = if from_me { &parsed.to } else { &parsed.from };
        let channel = self.channel_by_bytes(key, other)?;
        let text = channel.open(parsed.nonce, parsed.check, &parsed.ciphertext)?;
        let (from, to) = if from_me {
            (*mine, *channel.remote())
        } else {
            (*channel.remote(), *mine)
        };
        Ok(DecodedMemo {
            text,
            keys: Some((from, to)),
        })
    }

    /// Number of cached channels.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// hive-js `uniqueNonce`: `(now_ms << 16) | (entropy mod 0xFFFF)`, entropy a 16-bit counter
/// seeded randomly and incremented per call.
pub fn unique_nonce() -> u64 {
    static COUNTER: AtomicU16 = AtomicU16::new(0);
    static SEEDED: std::sync::Once = std::sync::Once::new();
    SEEDED.call_once(|| {
        let mut b = [0u8; 2];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
        COUNTER.store(u16::from_le_bytes(b), Ordering::Relaxed);
    });
    let entropy = u64::from(COUNTER.fetch_add(1, Ordering::Relaxed)) % 0xFFFF;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    (now << 16) | entropy
}

fn write_varint(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads a varint32 (at most 5 bytes). Returns (value, bytes used).
fn read_varint(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, b) in data.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return usize::try_from(u32::try_from(value).ok()?)
                .ok()
                .map(|v| (v, i + 1));
        }
    }
    None
}

/// HAS Proof of Key (has-protocol.md §4.6).
pub mod pok {
    use super::*;

    /// `pok = memo(lowest key → server key, "#" + value)`: exactly one `#` (the reference
    /// PKSA's form). The channel is our key to the server key.
    pub fn encode(channel: &MemoChannel, value: &str) -> String {
        let mut text = String::with_capacity(value.len() + 1);
        text.push('#');
        text.push_str(value);
        channel.encode(&text)
    }

    /// A verified Proof of Key: who sent it and the value it carries.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Proof {
        /// The sender's public key (must then be checked against the account's keys).
        pub from: PublicKey,
        /// The decoded value with every leading `#` stripped (HiveAuth Mobile doubles it).
        pub value: String,
    }

    /// Decodes a POK with the server key. Only a memo addressed *to* the server key counts.
    pub fn decode(server: &PrivateKey, cache: &SharedSecretCache, pok: &str) -> Result<Proof> {
        let parsed = RawMemo::parse(pok)?;
        if parsed.to != server.public_key().to_compressed() {
            return Err(Error::MemoKey);
        }
        let channel = cache.channel_by_bytes(server, &parsed.from)?;
        let text = channel.open(parsed.nonce, parsed.check, &parsed.ciphertext)?;
        Ok(Proof {
            from: *channel.remote(),
            value: text.expose_secret().trim_start_matches('#').to_owned(),
        })
    }

    /// Decodes and checks that the value equals `expected` (e.g. the request uuid).
    pub fn verify(
        server: &PrivateKey,
        cache: &SharedSecretCache,
        pok: &str,
        expected: &str,
    ) -> Result<PublicKey> {
        let proof = decode(server, cache, pok)?;
        if proof.value == expected {
            Ok(proof.from)
        } else {
            Err(Error::PokMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> PrivateKey {
        PrivateKey::from_wif("5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw").unwrap()
    }
    fn server() -> PrivateKey {
        PrivateKey::from_seed(b"has-server-test-key").unwrap()
    }

    #[test]
    fn spec_vectors() {
        let (a, s) = (account(), server());
        let shared = SharedSecret::derive(&a, s.public_key());
        assert_eq!(
            hex::encode(shared.expose_secret()),
            "3f34dd1055e7deda2067a44ee8635bb2a7a4bf62b48c5d5782b4245eddad5d652cff42299df48bc3253e44f3d2940283aeb04fb2c779b66cc134ba73aa07d7dd"
        );
        let nonce = 1234567890123456789;
        let m = encode_with_nonce(&a, s.public_key(), "#1690000000000", nonce);
        assert_eq!(
            m,
            "#K55WaPFbgNW8w8UiPzFGRejmMLZH3CA6guETaVLS7fUGgSECbGp2qSKQf3MdVsPkkBtGqxKv2gFC5ETEEGUSSGymRvoqbNdE77yVDEmjGy41DwYPjvKHnyWznu5W3PGqp"
        );
        assert_eq!(
            decode(&s, &m).unwrap().text.expose_secret(),
            "#1690000000000"
        );
        assert_eq!(
            decode(&a, &m).unwrap().text.expose_secret(),
            "#1690000000000"
        );
        let m2 = encode_with_nonce(
            &a,
            s.public_key(),
            "#9b0e2dc3-f574-4766-abdd-c429dce11284",
            nonce,
        );
        assert_eq!(
            m2,
            "#6NLxeG3G53UaNQyh21qfayQyXamNzFqnWxdPBcrCqi1ZunGJT7zhtcrxv2pqeEAhDRgX5DocxioGZtSycm4zNBrNvZfJ6qWWTtq3eNRfvbD86T4zvSpu9PUnW9mC3AiPUCMqR8zTQ4zKbbSk1nhq3peVhUNPS2oZtemokDHaZTEVf"
        );
        let m3 = encode_with_nonce(&s, a.public_key(), "#my secret", 42);
        assert_eq!(
            m3,
            "#Ab4jt6ZMojBGad1MJzuackHPRRQ3bDQsGkksKdtjatxnd2QGHts6AvvaNyWRkQ2MBzrrG2v8nQoaE1ASbpdCPguqaMh4aUzGvmkkE4mZN5gPJqLGyXgBB2oy4BK3zXHfr"
        );
        assert_eq!(decode(&a, &m3).unwrap().text.expose_secret(), "#my secret");
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(
            encode(&account(), server().public_key(), "hello").unwrap(),
            "hello"
        );
        // Decoding too, as hive-js (`if (!/^#/.test(memo)) return memo`) and dhive do.
        for text in ["hello", "", " #not first", "K55WaPFbgNW8w8UiPzF"] {
            for d in [
                decode(&server(), text).unwrap(),
                SharedSecretCache::default()
                    .decode(&server(), text)
                    .unwrap(),
            ] {
                assert_eq!(d.text.expose_secret(), text);
                assert!(d.keys.is_none());
            }
        }
        let m = encode(&account(), server().public_key(), "#hi").unwrap();
        let d = decode(&server(), &m).unwrap();
        assert_eq!(
            d.keys,
            Some((*account().public_key(), *server().public_key()))
        );
    }

    #[test]
    fn pok_round_trip_and_doubled_hash() {
        let (a, s) = (account(), server());
        let cache = SharedSecretCache::default();
        let ch = cache.channel(&a, s.public_key());
        let p = pok::encode(&ch, "abc");
        assert_eq!(pok::verify(&s, &cache, &p, "abc").unwrap(), *a.public_key());
        assert_eq!(
            pok::verify(&s, &cache, &p, "abd").unwrap_err(),
            Error::PokMismatch
        );
        // HiveAuth Mobile's doubled '#'
        let doubled = ch.encode("##abc");
        assert_eq!(
            pok::verify(&s, &cache, &doubled, "abc").unwrap(),
            *a.public_key()
        );
        // a memo from the server to the account is not a POK
        let reverse = encode_with_nonce(&s, a.public_key(), "#abc", 1);
        assert_eq!(
            pok::decode(&s, &cache, &reverse).unwrap_err(),
            Error::MemoKey
        );
        // (account → server) from encoding, (server → account) from decoding
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn third_party_and_garbage() {
        let (a, s) = (account(), server());
        let other = PrivateKey::from_seed(b"x").unwrap();
        let m = encode_with_nonce(&a, s.public_key(), "#hi", 7);
        assert_eq!(decode(&other, &m).unwrap_err(), Error::MemoKey);
        assert_eq!(decode(&s, "#abc").unwrap_err(), Error::MemoFormat);
        // Without `#` it is not a memo: handed back as it is (hive-js), never decrypted.
        assert!(decode(&s, "abc").unwrap().keys.is_none());
        // A POK must be a memo.
        let cache = SharedSecretCache::default();
        assert_eq!(
            pok::decode(&s, &cache, "abc").unwrap_err(),
            Error::MemoFormat
        );
    }

    #[test]
    fn varint() {
        for v in [0usize, 1, 127, 128, 300, 16384, u32::MAX as usize] {
            let mut out = vec![];
            write_varint(&mut out, v);
            assert_eq!(read_varint(&out), Some((v, out.len())));
        }
    }
}
