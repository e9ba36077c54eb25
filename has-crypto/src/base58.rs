//! Base58 (the Bitcoin alphabet Hive uses for WIF keys, public keys and memos).
//!
//! Works on 32-bit limbs, five base58 digits at a time (58⁵ < 2³⁰), instead of the byte-wise
//! quadratic loop of the `bs58` crate: a relay decodes a memo-sized POK (~170 characters) on
//! every reply, and this is about an order of magnitude faster there. Byte-for-byte the same
//! results as `bs58` (a property test checks it against that crate). WIF keys pass through
//! here, so the intermediate limbs and digits are zeroized and buffers are sized up front
//! (no reallocation leaves a copy behind).

use zeroize::Zeroizing;

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// ASCII → digit value, 0xff for characters outside the alphabet.
#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time: an out-of-range index fails the build"
)]
const INDEX: [u8; 128] = {
    let mut t = [0xffu8; 128];
    let mut i = 0;
    while i < 58 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// 58⁵.
const BIG: u64 = 58 * 58 * 58 * 58 * 58;

/// Decodes base58 text; `None` on a character outside the alphabet.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let zeros = bytes.iter().take_while(|&&c| c == b'1').count();
    let digits = bytes.get(zeros..).unwrap_or_default();
    // Little-endian 32-bit limbs of the number the digits after the leading '1's spell.
    let mut limbs: Zeroizing<Vec<u32>> =
        Zeroizing::new(Vec::with_capacity(digits.len() * 3 / 16 + 2));
    for chunk in digits.chunks(5) {
        let (mut mul, mut add) = (1u64, 0u64);
        for &c in chunk {
            let d = *INDEX.get(usize::from(c))?;
            if d == 0xff {
                return None;
            }
            add = add * 58 + u64::from(d);
            mul *= 58;
        }
        let mut carry = add;
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * mul + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        while carry > 0 {
            limbs.push(carry as u32);
            carry >>= 32;
        }
    }
    let mut out = Vec::with_capacity(zeros + limbs.len() * 4);
    out.resize(zeros, 0);
    let mut significant = false;
    for limb in limbs.iter().rev() {
        for b in limb.to_be_bytes() {
            significant |= b != 0;
            if significant {
                out.push(b);
            }
        }
    }
    Some(out)
}

/// Encodes bytes as base58 text.
pub fn encode(data: &[u8]) -> String {
    let zeros = data.iter().take_while(|&&b| b == 0).count();
    let rest = data.get(zeros..).unwrap_or_default();
    // Big-endian 32-bit limbs (the first one padded on the left).
    let mut limbs: Zeroizing<Vec<u32>> = Zeroizing::new(Vec::with_capacity(rest.len() / 4 + 1));
    let head = rest.len() % 4;
    if head > 0 {
        limbs.push(
            rest.iter()
                .take(head)
                .fold(0u32, |acc, &b| (acc << 8) | u32::from(b)),
        );
    }
    for c in rest.get(head..).unwrap_or_default().chunks_exact(4) {
        limbs.push(c.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)));
    }
    // Little-endian base58 digits, five per division by 58⁵.
    let mut digits: Zeroizing<Vec<u8>> =
        Zeroizing::new(Vec::with_capacity(rest.len() * 138 / 100 + 5));
    let mut start = limbs.iter().take_while(|&&l| l == 0).count();
    while start < limbs.len() {
        let mut rem = 0u64;
        for limb in limbs.iter_mut().skip(start) {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / BIG) as u32;
            rem = cur % BIG;
        }
        for _ in 0..5 {
            digits.push((rem % 58) as u8);
            rem /= 58;
        }
        while limbs.get(start) == Some(&0) {
            start += 1;
        }
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(
        digits
            .iter()
            .rev()
            .map(|&d| char::from(ALPHABET.get(usize::from(d)).copied().unwrap_or(b'1'))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges() {
        assert_eq!(encode(&[]), "");
        assert_eq!(decode(""), Some(vec![]));
        assert_eq!(encode(&[0, 0, 1]), "112");
        assert_eq!(decode("112"), Some(vec![0, 0, 1]));
        assert_eq!(encode(&[0xff; 4]), bs58::encode([0xff; 4]).into_string());
        assert_eq!(decode("0"), None);
        assert_eq!(decode("I"), None);
        assert_eq!(decode("é"), None);
        let known = "5JdeC9P7Pbd1uGdFVEsJ41EkEnADbbHGq6p1BwFxm6txNBsQnsw";
        assert_eq!(
            decode(known).unwrap(),
            bs58::decode(known).into_vec().unwrap()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn same_as_bs58(data in proptest::collection::vec(
            prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], 0..200)) {
            let ours = encode(&data);
            prop_assert_eq!(&ours, &bs58::encode(&data).into_string());
            prop_assert_eq!(decode(&ours), Some(data));
        }

        #[test]
        fn decode_same_as_bs58(text in "[1-9A-Za-z]{0,200}") {
            prop_assert_eq!(decode(&text), bs58::decode(&text).into_vec().ok());
        }
    }
}
