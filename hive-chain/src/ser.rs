//! hived's binary serialization ("legacy pack", hive-crypto.md §4.1) as a serde `Serializer`.
//!
//! The same `Serialize` impls produce JSON (human-readable) and binary (not human-readable):
//! types whose two forms differ (assets, public keys, times, hex bytes, static variants)
//! check [`serde::Serializer::is_human_readable`] and, in binary mode, hand their exact
//! encoding to `serialize_bytes`, which this serializer appends verbatim.
//!
//! Mapping: integers and bool little-endian fixed width; strings `varint(len) ‖ utf8`;
//! sequences and maps `varint(count) ‖ items`; structs and tuples their fields in order;
//! `Option` `0x00` or `0x01 ‖ value`; unit nothing. Floats and chars are refused.

use serde::ser::{self, Serialize};

use crate::error::{Error, Result};

/// Appends an unsigned LEB128 varint (ByteBuffer `writeVarint32`).
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
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

/// Serializes `value` in hived binary form.
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut s = BinarySerializer {
        out: Vec::with_capacity(256),
    };
    value.serialize(&mut s)?;
    Ok(s.out)
}

/// Writes hived binary into a buffer.
#[derive(Debug)]
pub struct BinarySerializer {
    out: Vec<u8>,
}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error::Serialize(msg.to_string())
    }
}

impl<'a> ser::Serializer for &'a mut BinarySerializer {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn is_human_readable(&self) -> bool {
        false
    }
    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.out.push(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<()> {
        Err(Error::Serialize("floats have no hived encoding".into()))
    }
    fn serialize_f64(self, _: f64) -> Result<()> {
        Err(Error::Serialize("floats have no hived encoding".into()))
    }
    fn serialize_char(self, _: char) -> Result<()> {
        Err(Error::Serialize("chars have no hived encoding".into()))
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        write_varint(&mut self.out, v.len() as u64);
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }
    /// Pre-encoded bytes, appended verbatim.
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<()> {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, idx: u32, _: &'static str) -> Result<()> {
        write_varint(&mut self.out, u64::from(idx));
        Ok(())
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        idx: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        write_varint(&mut self.out, u64::from(idx));
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>> {
        let len = len.ok_or_else(|| Error::Serialize("sequence without a known length".into()))?;
        write_varint(&mut self.out, len as u64);
        Ok(Compound { ser: self })
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>> {
        Ok(Compound { ser: self })
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>> {
        Ok(Compound { ser: self })
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        idx: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>> {
        write_varint(&mut self.out, u64::from(idx));
        Ok(Compound { ser: self })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a>> {
        let len = len.ok_or_else(|| Error::Serialize("map without a known length".into()))?;
        write_varint(&mut self.out, len as u64);
        Ok(Compound { ser: self })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>> {
        Ok(Compound { ser: self })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        idx: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Compound<'a>> {
        write_varint(&mut self.out, u64::from(idx));
        Ok(Compound { ser: self })
    }
}

/// Sequence/struct/map state: items are simply concatenated.
#[derive(Debug)]
pub struct Compound<'a> {
    ser: &'a mut BinarySerializer,
}

macro_rules! compound {
    ($tr:ident, $m:ident $(, $key:ident)?) => {
        impl ser::$tr for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn $m<T: ?Sized + Serialize>(&mut self, $($key: &'static str,)? value: &T) -> Result<()> {
                $(let _ = $key;)?
                value.serialize(&mut *self.ser)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    };
}
compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeStruct, serialize_field, key);
compound!(SerializeStructVariant, serialize_field, key);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut *self.ser)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for (v, hex) in [
            (0u64, "00"),
            (1, "01"),
            (127, "7f"),
            (128, "8001"),
            (300, "ac02"),
            (16384, "808001"),
        ] {
            let mut out = vec![];
            write_varint(&mut out, v);
            assert_eq!(hex::encode(out), hex);
        }
    }

    #[test]
    fn primitives() {
        #[derive(serde::Serialize)]
        struct S {
            a: u16,
            b: String,
            c: Option<u8>,
            d: Vec<i16>,
            e: bool,
        }
        let b = to_bytes(&S {
            a: 0x1027,
            b: "ab".into(),
            c: None,
            d: vec![-1],
            e: true,
        })
        .unwrap();
        assert_eq!(hex::encode(b), "27100261620001ffff01");
    }
}
