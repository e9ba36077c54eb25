//! MD5 over sixteen independent messages at once, for trial decryption: a PKSA tries one
//! ciphertext's salt against every session key of an account, which is sixteen (or ten
//! thousand) `EVP_BytesToKey` derivations of equal shape. Each operation is written lane by
//! lane over `[u32; 16]`, which the compiler turns into SIMD instructions: the baseline
//! target's (SSE2 on x86-64, NEON on aarch64), or, on an x86-64 CPU that has them, AVX2 or
//! AVX-512 (the same code compiled three times, picked once per call from what the CPU
//! reports). The result is checked against the `md-5` crate in the tests.
//!
//! Only what `EVP_BytesToKey` needs ([`evp_keys`]): passphrases of equal length, laid out
//! in lanes once for both of its MD5s.

// Lane indices run over fixed-size arrays with constant bounds.
#![allow(clippy::indexing_slicing)]

use std::ops::{Add, BitAnd, BitOr, BitXor, Not};

use zeroize::Zeroize;

/// Messages hashed together.
pub(crate) const LANES: usize = 16;

/// One 32-bit word of every lane.
#[derive(Clone, Copy)]
struct L([u32; LANES]);

macro_rules! lanewise {
    ($trait:ident, $fn:ident, $op:expr) => {
        impl $trait for L {
            type Output = L;
            #[inline(always)]
            fn $fn(self, o: L) -> L {
                let mut r = [0u32; LANES];
                for ((r, a), b) in r.iter_mut().zip(self.0).zip(o.0) {
                    *r = $op(a, b);
                }
                L(r)
            }
        }
    };
}
lanewise!(Add, add, u32::wrapping_add);
lanewise!(BitAnd, bitand, |a: u32, b: u32| a & b);
lanewise!(BitOr, bitor, |a: u32, b: u32| a | b);
lanewise!(BitXor, bitxor, |a: u32, b: u32| a ^ b);

impl Not for L {
    type Output = L;
    #[inline(always)]
    fn not(self) -> L {
        L(self.0.map(|x| !x))
    }
}

impl zeroize::Zeroize for L {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl L {
    #[inline(always)]
    fn splat(x: u32) -> L {
        L([x; LANES])
    }
}

#[inline(always)]
fn rotl<const S: u32>(x: L) -> L {
    L(x.0.map(|v| v.rotate_left(S)))
}

#[inline(always)]
fn f(b: L, c: L, d: L) -> L {
    (b & c) | (!b & d)
}
#[inline(always)]
fn g(b: L, c: L, d: L) -> L {
    (b & d) | (c & !d)
}
#[inline(always)]
fn h(b: L, c: L, d: L) -> L {
    b ^ c ^ d
}
#[inline(always)]
fn i(b: L, c: L, d: L) -> L {
    c ^ (b | !d)
}

/// One step on every lane, with its constants (RFC 1321 §3.4), so that each rotation is
/// by an immediate.
macro_rules! step {
    ($fun:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $k:expr, $s:expr) => {
        $a = $b + rotl::<$s>($a + $fun($b, $c, $d) + $w + L::splat($k));
    };
}

/// One MD5 compression of a 64-byte block per lane (`w[j].0[l]`: word `j` of lane `l`).
/// The 64 steps are written out (generated from RFC 1321's tables).
#[rustfmt::skip]
#[inline(always)]
fn compress_lanes(state: &mut [L; 4], w: &[L; 16]) {
    let [mut a, mut b, mut c, mut d] = *state;
    step!(f, a, b, c, d, w[0], 0xd76aa478, 7);
    step!(f, d, a, b, c, w[1], 0xe8c7b756, 12);
    step!(f, c, d, a, b, w[2], 0x242070db, 17);
    step!(f, b, c, d, a, w[3], 0xc1bdceee, 22);
    step!(f, a, b, c, d, w[4], 0xf57c0faf, 7);
    step!(f, d, a, b, c, w[5], 0x4787c62a, 12);
    step!(f, c, d, a, b, w[6], 0xa8304613, 17);
    step!(f, b, c, d, a, w[7], 0xfd469501, 22);
    step!(f, a, b, c, d, w[8], 0x698098d8, 7);
    step!(f, d, a, b, c, w[9], 0x8b44f7af, 12);
    step!(f, c, d, a, b, w[10], 0xffff5bb1, 17);
    step!(f, b, c, d, a, w[11], 0x895cd7be, 22);
    step!(f, a, b, c, d, w[12], 0x6b901122, 7);
    step!(f, d, a, b, c, w[13], 0xfd987193, 12);
    step!(f, c, d, a, b, w[14], 0xa679438e, 17);
    step!(f, b, c, d, a, w[15], 0x49b40821, 22);
    step!(g, a, b, c, d, w[1], 0xf61e2562, 5);
    step!(g, d, a, b, c, w[6], 0xc040b340, 9);
    step!(g, c, d, a, b, w[11], 0x265e5a51, 14);
    step!(g, b, c, d, a, w[0], 0xe9b6c7aa, 20);
    step!(g, a, b, c, d, w[5], 0xd62f105d, 5);
    step!(g, d, a, b, c, w[10], 0x02441453, 9);
    step!(g, c, d, a, b, w[15], 0xd8a1e681, 14);
    step!(g, b, c, d, a, w[4], 0xe7d3fbc8, 20);
    step!(g, a, b, c, d, w[9], 0x21e1cde6, 5);
    step!(g, d, a, b, c, w[14], 0xc33707d6, 9);
    step!(g, c, d, a, b, w[3], 0xf4d50d87, 14);
    step!(g, b, c, d, a, w[8], 0x455a14ed, 20);
    step!(g, a, b, c, d, w[13], 0xa9e3e905, 5);
    step!(g, d, a, b, c, w[2], 0xfcefa3f8, 9);
    step!(g, c, d, a, b, w[7], 0x676f02d9, 14);
    step!(g, b, c, d, a, w[12], 0x8d2a4c8a, 20);
    step!(h, a, b, c, d, w[5], 0xfffa3942, 4);
    step!(h, d, a, b, c, w[8], 0x8771f681, 11);
    step!(h, c, d, a, b, w[11], 0x6d9d6122, 16);
    step!(h, b, c, d, a, w[14], 0xfde5380c, 23);
    step!(h, a, b, c, d, w[1], 0xa4beea44, 4);
    step!(h, d, a, b, c, w[4], 0x4bdecfa9, 11);
    step!(h, c, d, a, b, w[7], 0xf6bb4b60, 16);
    step!(h, b, c, d, a, w[10], 0xbebfbc70, 23);
    step!(h, a, b, c, d, w[13], 0x289b7ec6, 4);
    step!(h, d, a, b, c, w[0], 0xeaa127fa, 11);
    step!(h, c, d, a, b, w[3], 0xd4ef3085, 16);
    step!(h, b, c, d, a, w[6], 0x04881d05, 23);
    step!(h, a, b, c, d, w[9], 0xd9d4d039, 4);
    step!(h, d, a, b, c, w[12], 0xe6db99e5, 11);
    step!(h, c, d, a, b, w[15], 0x1fa27cf8, 16);
    step!(h, b, c, d, a, w[2], 0xc4ac5665, 23);
    step!(i, a, b, c, d, w[0], 0xf4292244, 6);
    step!(i, d, a, b, c, w[7], 0x432aff97, 10);
    step!(i, c, d, a, b, w[14], 0xab9423a7, 15);
    step!(i, b, c, d, a, w[5], 0xfc93a039, 21);
    step!(i, a, b, c, d, w[12], 0x655b59c3, 6);
    step!(i, d, a, b, c, w[3], 0x8f0ccc92, 10);
    step!(i, c, d, a, b, w[10], 0xffeff47d, 15);
    step!(i, b, c, d, a, w[1], 0x85845dd1, 21);
    step!(i, a, b, c, d, w[8], 0x6fa87e4f, 6);
    step!(i, d, a, b, c, w[15], 0xfe2ce6e0, 10);
    step!(i, c, d, a, b, w[6], 0xa3014314, 15);
    step!(i, b, c, d, a, w[13], 0x4e0811a1, 21);
    step!(i, a, b, c, d, w[4], 0xf7537e82, 6);
    step!(i, d, a, b, c, w[11], 0xbd3af235, 10);
    step!(i, c, d, a, b, w[2], 0x2ad7d2bb, 15);
    step!(i, b, c, d, a, w[9], 0xeb86d391, 21);
    for (s, x) in state.iter_mut().zip([a, b, c, d]) {
        *s = *s + x;
    }
}

/// Longest passphrase [`evp_keys`] takes: the second MD5 message (16 + len + 8 bytes) fits
/// in two blocks with its padding.
pub(crate) const MAX_LEN: usize = 95;

/// The first 32 bytes of `EVP_BytesToKey` (MD5, one iteration) for `LANES` passphrases of
/// the same length and one salt, into `keys`: `D1 = MD5(p || salt)`, `D2 = MD5(D1 || p ||
/// salt)`, key `= D1 || D2`. None (and `keys` untouched) when the lengths differ or pass
/// [`MAX_LEN`].
///
/// `p || salt` is laid out in lanes once: in the second message it starts 16 bytes (four
/// words) later, after `D1`, whose words are the first state's as they are, so both
/// messages share it and nothing goes back to bytes in between. `scratch` holds the
/// passphrases' bytes and words; the caller zeroizes it once, not once per call.
pub(crate) fn evp_keys(
    scratch: &mut Scratch,
    passphrases: &[&[u8]; LANES],
    salt: &[u8; 8],
    keys: &mut [[u8; 32]; LANES],
) -> Option<()> {
    let len = passphrases.first()?.len();
    if len > MAX_LEN || passphrases.iter().any(|p| p.len() != len) {
        return None;
    }
    let used = layout(scratch, passphrases, salt);
    let n = len + 8;
    let Scratch { words, m, .. } = scratch;
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: a `#[target_feature]` function may run only on a CPU with that
            // feature; the CPU reported AVX-512F just above. Nothing else is required.
            #[allow(unsafe_code)]
            unsafe {
                hash_keys_avx512(words, m, used, n, keys)
            };
            return Some(());
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above, for AVX2.
            #[allow(unsafe_code)]
            unsafe {
                hash_keys_avx2(words, m, used, n, keys)
            };
            return Some(());
        }
    }
    hash_keys(words, m, used, n, keys);
    Some(())
}

/// `p || salt || 0x80` of every lane as little-endian words (word `j` of lane `l` at
/// `words[j][l]`), the last one completed with zeros; how many words that is. Compiled
/// for the baseline target on purpose: with AVX-512 the compiler turns these stores into
/// scatters, slower than plain ones.
fn layout(scratch: &mut Scratch, passphrases: &[&[u8]; LANES], salt: &[u8; 8]) -> usize {
    let len = passphrases[0].len();
    let n = len + 8;
    let used = n / 4 + 1;
    let b = &mut scratch.bytes;
    // The same in every lane: the salt, the padding's first byte, the zeros after it (a
    // longer passphrase of an earlier call may have left bytes there).
    b[len..n].copy_from_slice(salt);
    b[n] = 0x80;
    b[n + 1..used * 4].fill(0);
    for (l, p) in passphrases.iter().enumerate() {
        b[..len].copy_from_slice(p);
        for (word, bytes) in scratch.words[..used].iter_mut().zip(b.chunks_exact(4)) {
            word[l] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
    }
    used
}

/// Buffers for [`evp_keys`]: the passphrases' bytes and words, and the MD5 messages (the
/// first one's digest, that is half a key, sits in the second).
#[derive(zeroize::Zeroize)]
pub(crate) struct Scratch {
    bytes: [u8; 128],
    words: [[u32; LANES]; 32],
    m: [L; 32],
}

impl Scratch {
    pub(crate) fn new() -> Self {
        Scratch {
            bytes: [0; 128],
            words: [[0; LANES]; 32],
            m: [L::splat(0); 32],
        }
    }
}

/// [`hash_keys`] compiled for AVX-512 (16 lanes in one register).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn hash_keys_avx512(
    words: &[[u32; LANES]; 32],
    m: &mut [L; 32],
    used: usize,
    n: usize,
    keys: &mut [[u8; 32]; LANES],
) {
    hash_keys(words, m, used, n, keys);
}

/// [`hash_keys`] compiled for AVX2 (8 lanes per register).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hash_keys_avx2(
    words: &[[u32; LANES]; 32],
    m: &mut [L; 32],
    used: usize,
    n: usize,
    keys: &mut [[u8; 32]; LANES],
) {
    hash_keys(words, m, used, n, keys);
}

/// The two MD5s of [`evp_keys`] over the `used` words [`layout`] wrote (`n` bytes of
/// `p || salt` in each lane).
#[inline(always)]
fn hash_keys(
    words: &[[u32; LANES]; 32],
    m: &mut [L; 32],
    used: usize,
    n: usize,
    keys: &mut [[u8; 32]; LANES],
) {
    let init: [L; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476].map(L::splat);
    // One call site each for `hash` and the compression: each is inlined once (a debug
    // build's stack frame grows with every inlined copy).
    let mut d = [init; 2];
    let mut first = init;
    for (r, out) in d.iter_mut().enumerate() {
        *out = hash(words, m, used, &first, r * 4, n + r * 16);
        first = *out;
    }
    let [d1, d2] = &d;
    for (l, key) in keys.iter_mut().enumerate() {
        for (j, s) in d1.iter().chain(d2).enumerate() {
            key[j * 4..j * 4 + 4].copy_from_slice(&s.0[l].to_le_bytes());
        }
    }
    // The keys are in `keys` (the caller's, zeroized with its scratch); these copies go.
    d.zeroize();
    first.zeroize();
}

/// MD5 of one message per lane, `m_len` bytes long: the first `at` words from `first`,
/// then the `used` words of `p || salt || 0x80` in `words`, then zeros, and the bit
/// length in the last block's word 14 (word 15, its high half, is zero at these lengths).
#[inline(always)]
fn hash(
    words: &[[u32; LANES]; 32],
    m: &mut [L; 32],
    used: usize,
    first: &[L; 4],
    at: usize,
    m_len: usize,
) -> [L; 4] {
    m.fill(L::splat(0));
    m[..at].copy_from_slice(&first[..at]);
    for (x, w) in m[at..at + used].iter_mut().zip(words) {
        *x = L(*w);
    }
    let blocks = (m_len + 8) / 64 + 1;
    m[blocks * 16 - 2] = L::splat((m_len as u32) * 8);
    let mut state = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476].map(L::splat);
    for block in m.chunks_exact(16).take(blocks) {
        if let Ok(block) = <&[L; 16]>::try_from(block) {
            compress_lanes(&mut state, block);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    /// `EVP_BytesToKey`'s first 32 bytes, one message at a time with the `md5` crate.
    fn evp_key(p: &[u8], salt: &[u8; 8]) -> [u8; 32] {
        let d1: [u8; 16] = Md5::new()
            .chain_update(p)
            .chain_update(salt)
            .finalize()
            .into();
        let d2: [u8; 16] = Md5::new()
            .chain_update(d1)
            .chain_update(p)
            .chain_update(salt)
            .finalize()
            .into();
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(&d1);
        k[16..].copy_from_slice(&d2);
        k
    }

    fn messages(len: usize, seed: usize) -> Vec<Vec<u8>> {
        (0..LANES)
            .map(|l| {
                (0..len)
                    .map(|i| (i * 7 + l * 31 + len + seed) as u8)
                    .collect()
            })
            .collect()
    }

    /// Every length up to the limit (both messages cross the block edges at various
    /// places), in an order that leaves longer bytes in the scratch before shorter ones.
    #[test]
    fn evp_keys_match_md5_at_every_length() {
        let salt = [0x5a, 1, 2, 3, 4, 5, 6, 0xff];
        let mut scratch = Scratch::new();
        let lens: Vec<usize> = (0..=MAX_LEN).rev().chain(0..=MAX_LEN).collect();
        for (seed, &len) in lens.iter().enumerate() {
            let msgs = messages(len, seed);
            let refs: [&[u8]; LANES] = std::array::from_fn(|l| msgs[l].as_slice());
            let mut keys = [[0u8; 32]; LANES];
            evp_keys(&mut scratch, &refs, &salt, &mut keys).unwrap();
            for l in 0..LANES {
                assert_eq!(keys[l], evp_key(&msgs[l], &salt), "len {len} lane {l}");
            }
        }
        let mut keys = [[0u8; 32]; LANES];
        let long = messages(MAX_LEN + 1, 0);
        let refs: [&[u8]; LANES] = std::array::from_fn(|l| long[l].as_slice());
        assert!(evp_keys(&mut scratch, &refs, &salt, &mut keys).is_none());
        let mut mixed: [&[u8]; LANES] = [b"abc"; LANES];
        mixed[9] = b"abcd";
        assert!(evp_keys(&mut scratch, &mixed, &salt, &mut keys).is_none());
        assert_eq!(keys, [[0u8; 32]; LANES]);
    }

    /// Every compiled form this CPU can run gives the portable result (the test above runs
    /// only the widest one).
    #[test]
    #[allow(unsafe_code)]
    fn every_compiled_form_agrees() {
        let salt = [9u8; 8];
        let mut scratch = Scratch::new();
        for len in [0usize, 5, 36, 55, 56, 71, 72, MAX_LEN] {
            let msgs = messages(len, 3);
            let refs: [&[u8]; LANES] = std::array::from_fn(|l| msgs[l].as_slice());
            let used = layout(&mut scratch, &refs, &salt);
            let mut want = [[0u8; 32]; LANES];
            hash_keys(&scratch.words, &mut scratch.m, used, len + 8, &mut want);
            #[cfg(target_arch = "x86_64")]
            for (feature, f) in [
                (
                    "avx2",
                    hash_keys_avx2
                        as unsafe fn(
                            &[[u32; LANES]; 32],
                            &mut [L; 32],
                            usize,
                            usize,
                            &mut [[u8; 32]; LANES],
                        ),
                ),
                ("avx512f", hash_keys_avx512),
            ] {
                let have = match feature {
                    "avx2" => std::arch::is_x86_feature_detected!("avx2"),
                    _ => std::arch::is_x86_feature_detected!("avx512f"),
                };
                if have {
                    let mut got = [[0u8; 32]; LANES];
                    // SAFETY: the CPU reported the feature just above.
                    unsafe { f(&scratch.words, &mut scratch.m, used, len + 8, &mut got) };
                    assert_eq!(got, want, "{feature} len {len}");
                }
            }
        }
    }
}
