//! MD5 over sixteen independent messages at once, for trial decryption: a PKSA tries one
//! ciphertext's salt against every session key of an account, which is sixteen (or ten
//! thousand) `EVP_BytesToKey` derivations of equal shape. Each operation is written lane by
//! lane over `[u32; 16]`, which the compiler turns into SIMD instructions: the baseline
//! target's (SSE2 on x86-64, NEON on aarch64), or, on an x86-64 CPU that has them, AVX2 or
//! AVX-512 (the same code compiled three times, picked once per call from what the CPU
//! reports). The result is checked against the `md-5` crate in the tests.
//!
//! Only what `EVP_BytesToKey` needs: messages of equal length, padded here.

// Lane indices run over fixed-size arrays with constant bounds.
#![allow(clippy::indexing_slicing)]

use std::ops::{Add, BitAnd, BitOr, BitXor, Not};

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

/// [`compress_lanes`] compiled for AVX-512 (16 lanes in one register).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn compress_avx512(state: &mut [L; 4], w: &[L; 16]) {
    compress_lanes(state, w);
}

/// [`compress_lanes`] compiled for AVX2 (8 lanes per register).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn compress_avx2(state: &mut [L; 4], w: &[L; 16]) {
    compress_lanes(state, w);
}

/// [`compress_lanes`] with the widest instructions the CPU has.
#[allow(unsafe_code)]
fn compress(state: &mut [L; 4], w: &[L; 16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: a `#[target_feature]` function may run only on a CPU with that
            // feature; the CPU reported AVX-512F just above. Nothing else is required.
            unsafe { compress_avx512(state, w) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above, for AVX2.
            unsafe { compress_avx2(state, w) };
            return;
        }
    }
    compress_lanes(state, w);
}

/// Longest message [`digest`] takes (two blocks with their padding).
pub(crate) const MAX_LEN: usize = 119;

/// MD5 of `LANES` messages of the same length `len` (at most [`MAX_LEN`]): message `l` is
/// `msgs[l][..len]`, and the padding is written after it in place. None when `len` is too
/// long.
pub(crate) fn digest(msgs: &mut [[u8; 128]; LANES], len: usize) -> Option<[[u8; 16]; LANES]> {
    if len > MAX_LEN {
        return None;
    }
    let mut state: [L; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476].map(L::splat);
    let blocks = (len + 8) / 64 + 1;
    let end = blocks * 64;
    let padded = msgs;
    for m in padded.iter_mut() {
        m[len..end].fill(0);
        m[len] = 0x80;
        m[end - 8..end].copy_from_slice(&(len as u64 * 8).to_le_bytes());
    }
    for blk in 0..blocks {
        let mut w = [L::splat(0); 16];
        for (l, m) in padded.iter().enumerate() {
            let block: &[u8; 64] = m[blk * 64..blk * 64 + 64].try_into().ok()?;
            for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
                word.0[l] = u32::from_le_bytes(bytes.try_into().ok()?);
            }
        }
        compress(&mut state, &w);
    }
    let mut out = [[0u8; 16]; LANES];
    for (l, o) in out.iter_mut().enumerate() {
        for (j, s) in state.iter().enumerate() {
            o[j * 4..j * 4 + 4].copy_from_slice(&s.0[l].to_le_bytes());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};

    #[test]
    fn matches_md5_at_every_length_around_block_edges() {
        for len in [0usize, 1, 3, 44, 55, 56, 60, 63, 64, 65, 100, 119] {
            let mut msgs = [[0xAAu8; 128]; LANES];
            for (l, m) in msgs.iter_mut().enumerate() {
                for (i, b) in m.iter_mut().take(len).enumerate() {
                    *b = (i * 7 + l * 31 + len) as u8;
                }
            }
            let got = digest(&mut msgs.clone(), len).unwrap();
            for l in 0..LANES {
                let want: [u8; 16] = Md5::digest(&msgs[l][..len]).into();
                assert_eq!(got[l], want, "len {len} lane {l}");
            }
        }
        assert!(digest(&mut [[0; 128]; LANES], MAX_LEN + 1).is_none());
    }

    /// Every compiled form of the compression this CPU can run gives the portable result
    /// (the digest test above runs only the widest one).
    #[test]
    #[allow(unsafe_code)]
    fn every_compiled_form_agrees() {
        let mut x = 0x9e37_79b9u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..32 {
            let state: [L; 4] = std::array::from_fn(|_| L(std::array::from_fn(|_| next())));
            let w: [L; 16] = std::array::from_fn(|_| L(std::array::from_fn(|_| next())));
            let mut want = state;
            compress_lanes(&mut want, &w);
            let mut got = state;
            compress(&mut got, &w);
            assert!(want.iter().zip(&got).all(|(a, b)| a.0 == b.0));
            #[cfg(target_arch = "x86_64")]
            for (feature, f) in [
                ("avx2", compress_avx2 as unsafe fn(&mut [L; 4], &[L; 16])),
                ("avx512f", compress_avx512),
            ] {
                let have = match feature {
                    "avx2" => std::arch::is_x86_feature_detected!("avx2"),
                    _ => std::arch::is_x86_feature_detected!("avx512f"),
                };
                if have {
                    let mut got = state;
                    // SAFETY: the CPU reported the feature just above.
                    unsafe { f(&mut got, &w) };
                    assert!(want.iter().zip(&got).all(|(a, b)| a.0 == b.0), "{feature}");
                }
            }
        }
    }
}
