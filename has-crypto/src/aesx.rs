//! One AES-256 block decrypted under sixteen keys at once, for trial decryption: after
//! `md5x` has derived sixteen candidate keys, each is tested on the ciphertext's last block.
//! Done one key at a time through the `aes` crate, the key schedule and the block decrypt
//! were 43 % of a stranger request's cost; here the sixteen schedules and the sixteen
//! decrypts run round by round, so the CPU's AES units work on independent lanes instead
//! of waiting on one chain. On x86-64 with AES-NI (picked once per call from what the CPU
//! reports); elsewhere the `aes` crate, key by key. Both are checked against each other in
//! the tests.

use crate::md5x::LANES;

/// `last` decrypted under each of `keys` and XORed with `prev` (one CBC block), into `out`.
#[allow(unsafe_code)]
pub(crate) fn decrypt_lanes(
    keys: &[[u8; 32]; LANES],
    prev: &[u8; 16],
    last: &[u8; 16],
    out: &mut [[u8; 16]; LANES],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("aes") {
        // SAFETY: a `#[target_feature]` function may run only on a CPU with that feature;
        // the CPU reported AES-NI just above. Nothing else is required.
        unsafe { ni::decrypt_lanes(keys, prev, last, out) };
        return;
    }
    decrypt_lanes_portable(keys, prev, last, out);
}

fn decrypt_lanes_portable(
    keys: &[[u8; 32]; LANES],
    prev: &[u8; 16],
    last: &[u8; 16],
    out: &mut [[u8; 16]; LANES],
) {
    for (k, o) in keys.iter().zip(out.iter_mut()) {
        *o = *crate::aes_cbc::decrypt_block(k, prev, last);
    }
}

#[cfg(target_arch = "x86_64")]
mod ni {
    //! AES-NI: the key schedule of FIPS 197 §5.2 as Intel's AES-NI white paper writes it
    //! for 256-bit keys, and the equivalent inverse cipher (§5.3.5: the middle round keys
    //! through InvMixColumns, `aesimc`).

    use core::arch::x86_64::{
        __m128i, _mm_aesdec_si128, _mm_aesdeclast_si128, _mm_aesimc_si128,
        _mm_aeskeygenassist_si128, _mm_cvtsi128_si64, _mm_set_epi64x, _mm_shuffle_epi32,
        _mm_slli_si128, _mm_unpackhi_epi64, _mm_xor_si128,
    };

    use zeroize::Zeroize;

    use super::LANES;

    #[inline]
    #[target_feature(enable = "aes")]
    fn load(b: &[u8]) -> __m128i {
        let word = |s: Option<&[u8]>| {
            i64::from_le_bytes(s.and_then(|s| s.try_into().ok()).unwrap_or_default())
        };
        _mm_set_epi64x(word(b.get(8..16)), word(b.get(..8)))
    }

    #[inline]
    #[target_feature(enable = "aes")]
    fn store(x: __m128i, out: &mut [u8; 16]) {
        let lo = _mm_cvtsi128_si64(x).to_le_bytes();
        let hi = _mm_cvtsi128_si64(_mm_unpackhi_epi64(x, x)).to_le_bytes();
        let (a, b) = out.split_at_mut(8);
        a.copy_from_slice(&lo);
        b.copy_from_slice(&hi);
    }

    /// `x` XOR its words shifted up by one, two and three places (the running XOR of the
    /// key schedule's four words).
    #[inline]
    #[target_feature(enable = "aes")]
    fn spread(x: __m128i) -> __m128i {
        let a = _mm_xor_si128(x, _mm_slli_si128::<4>(x));
        _mm_xor_si128(
            a,
            _mm_xor_si128(_mm_slli_si128::<8>(x), _mm_slli_si128::<12>(x)),
        )
    }

    /// The next even round key, from the two before it (RotWord, SubWord and the round
    /// constant on the last word of the one before).
    #[inline]
    #[target_feature(enable = "aes")]
    fn even<const RCON: i32>(two_back: __m128i, one_back: __m128i) -> __m128i {
        let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<RCON>(one_back));
        _mm_xor_si128(spread(two_back), t)
    }

    /// The next odd round key (SubWord alone, no rotation or constant).
    #[inline]
    #[target_feature(enable = "aes")]
    fn odd(two_back: __m128i, one_back: __m128i) -> __m128i {
        let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(one_back));
        _mm_xor_si128(spread(two_back), t)
    }

    /// Key by key, the round keys in registers as far as the compiler keeps them there (no
    /// array copied per round): the keys are independent, so the CPU overlaps one key's
    /// schedule with the next.
    #[target_feature(enable = "aes")]
    pub(super) fn decrypt_lanes(
        keys: &[[u8; 32]; LANES],
        prev: &[u8; 16],
        last: &[u8; 16],
        out: &mut [[u8; 16]; LANES],
    ) {
        let c = load(last);
        let p = load(prev);
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            let (lo, hi) = k.split_at(16);
            let mut rk = [load(lo), load(hi), c, c, c, c, c, c, c, c, c, c, c, c, c];
            let [
                k0,
                k1,
                k2,
                k3,
                k4,
                k5,
                k6,
                k7,
                k8,
                k9,
                k10,
                k11,
                k12,
                k13,
                k14,
            ] = &mut rk;
            *k2 = even::<0x01>(*k0, *k1);
            *k3 = odd(*k1, *k2);
            *k4 = even::<0x02>(*k2, *k3);
            *k5 = odd(*k3, *k4);
            *k6 = even::<0x04>(*k4, *k5);
            *k7 = odd(*k5, *k6);
            *k8 = even::<0x08>(*k6, *k7);
            *k9 = odd(*k7, *k8);
            *k10 = even::<0x10>(*k8, *k9);
            *k11 = odd(*k9, *k10);
            *k12 = even::<0x20>(*k10, *k11);
            *k13 = odd(*k11, *k12);
            *k14 = even::<0x40>(*k12, *k13);
            let mut x = _mm_xor_si128(c, *k14);
            for r in [
                *k13, *k12, *k11, *k10, *k9, *k8, *k7, *k6, *k5, *k4, *k3, *k2, *k1,
            ] {
                x = _mm_aesdec_si128(x, _mm_aesimc_si128(r));
            }
            x = _mm_xor_si128(_mm_aesdeclast_si128(x, *k0), p);
            store(x, o);
            // Best effort: the round keys' array and the block are zeroized; registers and
            // the compiler's own spill slots are out of Rust's reach.
            rk.zeroize();
            x.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AES-NI lanes (when this CPU has them) give what the `aes` crate gives, key by key.
    #[test]
    fn lanes_match_the_aes_crate() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut byte = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for _ in 0..64 {
            let keys: [[u8; 32]; LANES] = std::array::from_fn(|_| std::array::from_fn(|_| byte()));
            let prev: [u8; 16] = std::array::from_fn(|_| byte());
            let last: [u8; 16] = std::array::from_fn(|_| byte());
            let mut want = [[0u8; 16]; LANES];
            decrypt_lanes_portable(&keys, &prev, &last, &mut want);
            let mut got = [[0u8; 16]; LANES];
            decrypt_lanes(&keys, &prev, &last, &mut got);
            assert_eq!(got, want);
        }
        // And against an encryption: the block comes back.
        let key = [7u8; 32];
        let iv = [9u8; 16];
        let ct = crate::aes_cbc::encrypt(&key, &iv, b"sixteen bytes!!");
        let block: [u8; 16] = ct[..16].try_into().unwrap();
        let mut got = [[0u8; 16]; LANES];
        decrypt_lanes(&[key; LANES], &iv, &block, &mut got);
        assert_eq!(&got[0][..15], b"sixteen bytes!!");
        assert_eq!(got[0][15], 1);
    }
}
