//! Field types of Hive operations, each with its JSON forms and its binary encoding
//! (hive-crypto.md §4.1, §4.3).

use std::fmt;
use std::str::FromStr;

use has_crypto::PublicKey;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::ser::write_varint;

// ------------------------------------------------------------------ integers from JSON

/// A 64-bit integer that JSON may carry as a number or a decimal string (appbase writes
/// 64-bit values as strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct U64(pub u64);

/// Signed counterpart of [`U64`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct I64(pub i64);

macro_rules! flexible_int {
    ($t:ident, $inner:ty, $ser:ident, $name:literal) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.$ser(self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", $name, " as a number or a decimal string"))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$t, E> {
                        <$inner>::try_from(v)
                            .map($t)
                            .map_err(|_| E::custom(concat!("out of range for ", $name)))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$t, E> {
                        <$inner>::try_from(v)
                            .map($t)
                            .map_err(|_| E::custom(concat!("out of range for ", $name)))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse::<$inner>()
                            .map($t)
                            .map_err(|_| E::custom(concat!("not a ", $name, ": ").to_owned() + v))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
flexible_int!(U64, u64, serialize_u64, "u64");
flexible_int!(I64, i64, serialize_i64, "i64");

// ------------------------------------------------------------------ assets

/// The asset symbols a client can sign for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Symbol {
    /// HIVE (legacy binary name STEEM), precision 3, NAI @@000000021.
    Hive,
    /// HBD (legacy binary name SBD), precision 3, NAI @@000000013.
    Hbd,
    /// VESTS, precision 6, NAI @@000000037.
    Vests,
    /// Testnet HIVE.
    Tests,
    /// Testnet HBD.
    Tbd,
}

impl Symbol {
    /// Decimal places.
    pub fn precision(&self) -> u8 {
        match self {
            Symbol::Vests => 6,
            _ => 3,
        }
    }

    /// The name in the legacy string form.
    pub fn name(&self) -> &'static str {
        match self {
            Symbol::Hive => "HIVE",
            Symbol::Hbd => "HBD",
            Symbol::Vests => "VESTS",
            Symbol::Tests => "TESTS",
            Symbol::Tbd => "TBD",
        }
    }

    /// The 7-byte symbol of the legacy binary form (HIVE packs as STEEM, HBD as SBD).
    fn legacy_bytes(&self) -> [u8; 7] {
        let s: &[u8] = match self {
            Symbol::Hive => b"STEEM",
            Symbol::Hbd => b"SBD",
            Symbol::Vests => b"VESTS",
            Symbol::Tests => b"TESTS",
            Symbol::Tbd => b"TBD",
        };
        let mut out = [0u8; 7];
        for (o, b) in out.iter_mut().zip(s) {
            *o = *b;
        }
        out
    }

    /// The NAI of the object form.
    pub fn nai(&self) -> &'static str {
        match self {
            Symbol::Hive | Symbol::Tests => "@@000000021",
            Symbol::Hbd | Symbol::Tbd => "@@000000013",
            Symbol::Vests => "@@000000037",
        }
    }

    fn from_name(s: &str) -> Option<Symbol> {
        Some(match s {
            "HIVE" | "STEEM" => Symbol::Hive,
            "HBD" | "SBD" => Symbol::Hbd,
            "VESTS" => Symbol::Vests,
            "TESTS" => Symbol::Tests,
            "TBD" => Symbol::Tbd,
            _ => return None,
        })
    }

    fn from_nai(nai: &str) -> Option<Symbol> {
        Some(match nai {
            "@@000000021" => Symbol::Hive,
            "@@000000013" => Symbol::Hbd,
            "@@000000037" => Symbol::Vests,
            _ => return None,
        })
    }
}

/// An amount of an asset, held as an exact integer of its smallest unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asset {
    /// Amount in units of 10^-precision (1.000 HIVE = 1000).
    pub amount: i64,
    /// The symbol.
    pub symbol: Symbol,
}

impl Asset {
    /// An amount of HIVE in thousandths.
    pub fn hive(milli: i64) -> Self {
        Asset {
            amount: milli,
            symbol: Symbol::Hive,
        }
    }

    /// An amount of HBD in thousandths.
    pub fn hbd(milli: i64) -> Self {
        Asset {
            amount: milli,
            symbol: Symbol::Hbd,
        }
    }

    /// An amount of VESTS in millionths.
    pub fn vests(micro: i64) -> Self {
        Asset {
            amount: micro,
            symbol: Symbol::Vests,
        }
    }

    /// Binary form: i64 amount, u8 precision, 7-byte legacy symbol.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.amount.to_le_bytes());
        out[8] = self.symbol.precision();
        out[9..].copy_from_slice(&self.symbol.legacy_bytes());
        out
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = u32::from(self.symbol.precision());
        let scale = 10i128.pow(p);
        let a = i128::from(self.amount);
        let sign = if a < 0 { "-" } else { "" };
        let abs = a.abs();
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.symbol.name(),
            width = p as usize
        )
    }
}

impl FromStr for Asset {
    type Err = String;
    /// Parses the legacy form exactly: `"1.000 HIVE"` (the symbol's precision is required;
    /// STEEM and SBD are accepted as aliases of HIVE and HBD).
    fn from_str(s: &str) -> Result<Self, String> {
        let (num, sym) = s
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("asset {s:?} must be \"<amount> <SYMBOL>\""))?;
        let symbol =
            Symbol::from_name(sym.trim()).ok_or_else(|| format!("unknown asset symbol {sym:?}"))?;
        let (neg, digits) = match num.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, num),
        };
        let (int, frac) = digits.split_once('.').ok_or_else(|| {
            format!(
                "asset {s:?} must have {} decimal places",
                symbol.precision()
            )
        })?;
        if frac.len() != usize::from(symbol.precision()) {
            return Err(format!(
                "asset {s:?} must have exactly {} decimal places",
                symbol.precision()
            ));
        }
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!("asset {s:?} has a malformed amount"));
        }
        let mut joined = String::with_capacity(int.len() + frac.len());
        joined.push_str(int);
        joined.push_str(frac);
        let value: i64 = joined
            .parse()
            .map_err(|_| format!("asset {s:?} is out of range"))?;
        Ok(Asset {
            amount: if neg { -value } else { value },
            symbol,
        })
    }
}

impl Serialize for Asset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.to_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for Asset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Legacy(String),
            Nai {
                amount: U64OrString,
                precision: u8,
                nai: String,
            },
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum U64OrString {
            S(String),
            N(i64),
        }
        match Form::deserialize(d)? {
            Form::Legacy(s) => s.parse().map_err(de::Error::custom),
            Form::Nai {
                amount,
                precision,
                nai,
            } => {
                let symbol = Symbol::from_nai(&nai)
                    .ok_or_else(|| de::Error::custom(format!("unknown NAI {nai:?}")))?;
                if precision != symbol.precision() {
                    return Err(de::Error::custom(format!(
                        "NAI {nai} has precision {}, not {precision}",
                        symbol.precision()
                    )));
                }
                let amount = match amount {
                    U64OrString::N(n) => n,
                    U64OrString::S(s) => s.parse().map_err(|_| {
                        de::Error::custom(format!("NAI amount {s:?} is not an integer"))
                    })?,
                };
                Ok(Asset { amount, symbol })
            }
        }
    }
}

// ------------------------------------------------------------------ time

/// `time_point_sec`: seconds since the epoch; JSON `"YYYY-MM-DDTHH:MM:SS"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimePointSec(pub u32);

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for TimePointSec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = i64::from(self.0);
        let (y, m, d) = civil_from_days(secs.div_euclid(86400));
        let r = secs.rem_euclid(86400);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            r / 3600,
            (r / 60) % 60,
            r % 60
        )
    }
}

impl FromStr for TimePointSec {
    type Err = String;
    /// `YYYY-MM-DDTHH:MM:SS`, optionally followed by `Z` or `.000` (fc accepts both).
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.strip_suffix('Z').unwrap_or(s);
        let t = t.strip_suffix(".000").unwrap_or(t);
        let b = t.as_bytes();
        let ok_shape = b.len() == 19
            && b.get(4) == Some(&b'-')
            && b.get(7) == Some(&b'-')
            && b.get(10) == Some(&b'T')
            && b.get(13) == Some(&b':')
            && b.get(16) == Some(&b':');
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = t.get(r)?;
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        let fields = (
            num(0..4),
            num(5..7),
            num(8..10),
            num(11..13),
            num(14..16),
            num(17..19),
        );
        let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = fields else {
            return Err(format!("time {s:?} must be YYYY-MM-DDTHH:MM:SS"));
        };
        if !ok_shape
            || !(1..=12).contains(&mo)
            || !(1..=31).contains(&d)
            || h > 23
            || mi > 59
            || se > 59
        {
            return Err(format!("time {s:?} must be YYYY-MM-DDTHH:MM:SS"));
        }
        let days = days_from_civil(y, mo, d);
        if civil_from_days(days) != (y, mo, d) {
            return Err(format!("time {s:?} is not a calendar date"));
        }
        let secs = days * 86400 + h * 3600 + mi * 60 + se;
        u32::try_from(secs)
            .map(TimePointSec)
            .map_err(|_| format!("time {s:?} is out of range"))
    }
}

impl Serialize for TimePointSec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u32(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for TimePointSec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

// ------------------------------------------------------------------ public keys

/// A public key field: a valid key, or hived's all-zero "empty" key. Keeps the address prefix
/// it was written with (`STM` mainnet, `TST` testnet) for the JSON round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKeyField {
    key: Option<PublicKey>,
    testnet: bool,
}

/// The text of the empty key.
pub const EMPTY_KEY_SUFFIX: &str = "1111111111111111111111111111111114T1Anm";

impl PublicKeyField {
    /// A mainnet key.
    pub fn new(key: PublicKey) -> Self {
        PublicKeyField {
            key: Some(key),
            testnet: false,
        }
    }

    /// The key, unless it is the empty key.
    pub fn key(&self) -> Option<&PublicKey> {
        self.key.as_ref()
    }

    /// The 33 bytes (zeros for the empty key).
    pub fn to_bytes(&self) -> [u8; 33] {
        self.key.map(|k| k.to_compressed()).unwrap_or([0u8; 33])
    }

    fn prefix(&self) -> &'static str {
        if self.testnet { "TST" } else { "STM" }
    }
}

impl fmt::Display for PublicKeyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => f.write_str(&k.to_string_with_prefix(self.prefix())),
            None => write!(f, "{}{EMPTY_KEY_SUFFIX}", self.prefix()),
        }
    }
}

impl FromStr for PublicKeyField {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let testnet = s.starts_with("TST");
        let prefix = if testnet { "TST" } else { "STM" };
        if s.strip_prefix(prefix) == Some(EMPTY_KEY_SUFFIX) {
            return Ok(PublicKeyField { key: None, testnet });
        }
        PublicKey::from_str_with_prefix(s, prefix)
            .map(|k| PublicKeyField {
                key: Some(k),
                testnet,
            })
            .map_err(|e| format!("public key {s:?}: {e}"))
    }
}

impl Serialize for PublicKeyField {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_bytes(&self.to_bytes())
        }
    }
}

impl<'de> Deserialize<'de> for PublicKeyField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl PartialOrd for PublicKeyField {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PublicKeyField {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_bytes().cmp(&other.to_bytes())
    }
}

// ------------------------------------------------------------------ bytes

/// Variable-length binary (`custom.data`, witness props): JSON hex, binary `varint ‖ bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct HexBytes(pub Vec<u8>);

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(&self.0))
        } else {
            let mut out = Vec::with_capacity(self.0.len() + 5);
            write_varint(&mut out, self.0.len() as u64);
            out.extend_from_slice(&self.0);
            s.serialize_bytes(&out)
        }
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .map(HexBytes)
            .map_err(|_| de::Error::custom("expected hexadecimal bytes"))
    }
}

/// Fixed-length binary (block ids, digests, signatures): JSON hex, binary raw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedBytes<const N: usize>(pub [u8; N]);

impl<const N: usize> Serialize for FixedBytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de, const N: usize> Deserialize<'de> for FixedBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(|_| de::Error::custom("expected hexadecimal bytes"))?;
        let arr: [u8; N] = v
            .try_into()
            .map_err(|_| de::Error::custom(format!("expected {N} bytes of hex")))?;
        Ok(FixedBytes(arr))
    }
}

// ------------------------------------------------------------------ sets and maps

/// `flat_set<account_name_type>`: serialized sorted; duplicates are an error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AccountSet(pub Vec<String>);

impl AccountSet {
    fn sorted(&self) -> Vec<&String> {
        let mut v: Vec<&String> = self.0.iter().collect();
        v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        v
    }
}

impl Serialize for AccountSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Parsed sets are already sorted; only a hand-built one needs the sorted copy.
        if self.0.is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes()) {
            return s.collect_seq(&self.0);
        }
        let sorted = self.sorted();
        let mut seq = s.serialize_seq(Some(sorted.len()))?;
        for a in sorted {
            seq.serialize_element(a)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for AccountSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Kept in hived's order (a flat_set is sorted), so that two JSON spellings of one set
        // are one value and JSON → op → JSON → op is a fixed point.
        let mut v = Vec::<String>::deserialize(d)?;
        v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if v.windows(2).any(|w| w.first() == w.get(1)) {
            return Err(de::Error::custom("duplicate account in set"));
        }
        Ok(AccountSet(v))
    }
}

/// A `flat_map<K, V>` written in JSON as `[[k, v], …]`; serialized sorted by key; duplicate
/// keys are an error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FlatMap<K, V>(pub Vec<(K, V)>);

impl<K: Serialize + Ord, V: Serialize> Serialize for FlatMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<&(K, V)> = self.0.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut seq = s.serialize_seq(Some(sorted.len()))?;
        for (k, v) in sorted {
            seq.serialize_element(&Pair(k, v))?;
        }
        seq.end()
    }
}

struct Pair<'a, K, V>(&'a K, &'a V);

impl<K: Serialize, V: Serialize> Serialize for Pair<'_, K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(self.0)?;
        t.serialize_element(self.1)?;
        t.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for FlatMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Kept sorted by key, as hived's flat_map is (see AccountSet).
        let mut v = Vec::<(K, V)>::deserialize(d)?;
        v.sort_by(|a, b| a.0.cmp(&b.0));
        if v.windows(2)
            .any(|w| w.first().map(|p| &p.0) == w.get(1).map(|p| &p.0))
        {
            return Err(de::Error::custom("duplicate key in map"));
        }
        Ok(FlatMap(v))
    }
}

/// An account or key authority.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// Sum of weights needed.
    pub weight_threshold: u32,
    /// Accounts whose authority (of the same level) counts, with weights.
    pub account_auths: FlatMap<String, u16>,
    /// Keys, with weights.
    pub key_auths: FlatMap<PublicKeyField, u16>,
}

impl Authority {
    /// A 1-of-1 key authority.
    pub fn single_key(key: PublicKey) -> Self {
        Authority {
            weight_threshold: 1,
            account_auths: FlatMap(vec![]),
            key_auths: FlatMap(vec![(PublicKeyField::new(key), 1)]),
        }
    }
}

/// `price`: base / quote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Base.
    pub base: Asset,
    /// Quote.
    pub quote: Asset,
}

/// `legacy_chain_properties` (witness_update, pow).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainProperties {
    /// Account creation fee.
    pub account_creation_fee: Asset,
    /// Maximum block size.
    pub maximum_block_size: u32,
    /// HBD interest rate (basis points).
    pub hbd_interest_rate: u16,
}

/// `extensions` with no defined alternative (`future_extensions`): must be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct NoExtensions;

impl Serialize for NoExtensions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_seq(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for NoExtensions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<serde_json::Value>::deserialize(d)?;
        if v.is_empty() {
            Ok(NoExtensions)
        } else {
            Err(de::Error::custom("extensions must be empty"))
        }
    }
}

// ------------------------------------------------------------------ static variants

/// Reads a static-variant element in any of its JSON forms: `[tag, value]`,
/// `{"type": tag, "value": …}` or `{"type": "name", "value": …}`; returns (tag, value).
pub(crate) fn variant_parts(
    v: serde_json::Value,
    names: &[&str],
) -> Result<(u64, serde_json::Value), String> {
    let (tag, value) = match v {
        serde_json::Value::Array(mut a) if a.len() == 2 => {
            let value = a.pop().unwrap_or_default();
            let tag = a.pop().unwrap_or_default();
            (tag, value)
        }
        serde_json::Value::Object(mut o) => {
            let tag = o.remove("type").ok_or("extension without type")?;
            (
                tag,
                o.remove("value")
                    .unwrap_or(serde_json::Value::Object(Default::default())),
            )
        }
        _ => return Err("extension must be [tag, value] or {type, value}".into()),
    };
    let idx = match &tag {
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or("extension tag must be a non-negative integer")?,
        serde_json::Value::String(s) => names
            .iter()
            .position(|n| n == s)
            .map(|p| p as u64)
            .ok_or_else(|| format!("unknown extension {s:?}"))?,
        _ => return Err("extension tag must be a number or a name".into()),
    };
    Ok((idx, value))
}

/// Serializes one static-variant element: JSON `[tag, value]`, binary `varint(tag) ‖ value`.
pub(crate) struct VariantRef<'a, T: Serialize>(pub u64, pub &'a T);

impl<T: Serialize> Serialize for VariantRef<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&self.0)?;
            t.serialize_element(self.1)?;
            t.end()
        } else {
            let mut out = Vec::new();
            write_varint(&mut out, self.0);
            out.extend(crate::ser::to_bytes(self.1).map_err(serde::ser::Error::custom)?);
            s.serialize_bytes(&out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets() {
        for (s, hexs) in [
            ("1.000 HIVE", "e80300000000000003535445454d0000"),
            ("0.001 HBD", "01000000000000000353424400000000"),
            ("1.000000 VESTS", "40420f00000000000656455354530000"),
        ] {
            let a: Asset = s.parse().unwrap();
            assert_eq!(hex::encode(a.to_bytes()), hexs);
            assert_eq!(a.to_string(), s);
        }
        assert_eq!("1.000 STEEM".parse::<Asset>().unwrap(), Asset::hive(1000));
        assert_eq!("-0.500 SBD".parse::<Asset>().unwrap(), Asset::hbd(-500));
        assert_eq!(Asset::hbd(-500).to_string(), "-0.500 HBD");
        for bad in [
            "1 HIVE",
            "1.0001 HIVE",
            "1.000 BTC",
            "1.000HIVE",
            "x.000 HIVE",
            "9999999999999999.999 HIVE",
        ] {
            assert!(bad.parse::<Asset>().is_err(), "{bad}");
        }
        assert_eq!(
            "9007199254.740993 VESTS".parse::<Asset>().unwrap().amount,
            9007199254740993
        );
        let nai: Asset =
            serde_json::from_str(r#"{"amount":"1000","precision":3,"nai":"@@000000021"}"#).unwrap();
        assert_eq!(nai, Asset::hive(1000));
        assert!(
            serde_json::from_str::<Asset>(r#"{"amount":"1","precision":6,"nai":"@@000000021"}"#)
                .is_err()
        );
    }

    #[test]
    fn times() {
        let t: TimePointSec = "2023-11-14T22:13:20".parse().unwrap();
        assert_eq!(t.0, 1700000000);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20");
        assert_eq!("2023-11-14T22:13:20Z".parse::<TimePointSec>().unwrap(), t);
        assert_eq!("1970-01-01T00:00:00".parse::<TimePointSec>().unwrap().0, 0);
        assert_eq!(TimePointSec(u32::MAX).to_string(), "2106-02-07T06:28:15");
        for bad in [
            "2023-02-30T00:00:00",
            "2023-11-14 22:13:20",
            "2023-11-14T24:00:00",
            "1969-12-31T23:59:59",
            "",
        ] {
            assert!(bad.parse::<TimePointSec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn keys() {
        let empty: PublicKeyField = format!("STM{EMPTY_KEY_SUFFIX}").parse().unwrap();
        assert_eq!(empty.to_bytes(), [0u8; 33]);
        assert_eq!(empty.to_string(), format!("STM{EMPTY_KEY_SUFFIX}"));
        let k: PublicKeyField = "STM8m5UgaFAAYQRuaNejYdS8FVLVp9Ss3K1qAVk5de6F8s3HnVbvA"
            .parse()
            .unwrap();
        assert!(k.key().is_some());
    }
}
