//! A request's lengths and element counts checked against the bytes it actually has, before
//! anything decodes it.
//!
//! Why: kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(count)` with the count
//! read off the wire, before it decodes a single element. An 18-byte request claiming `i32::MAX`
//! elements asks for ~150 GB; an allocator that cannot give it aborts the process, a remote crash
//! no `catch_unwind` can stop. On a 64-bit host the kernel would hand out that much address space
//! lazily; a 32-bit gateway has 3 GiB of it in all. So the check is made at the root, the same on
//! every target: [`check`] walks the request by its schema ([`super::schemas`]), reading only
//! lengths and counts, and refuses a request where
//! - an array claims more elements than the bytes left could hold, each element counted at its
//!   smallest encoding (so a claim is refused before the decoder reserves memory for it), or
//! - a string or bytes field claims more bytes than are left, or
//! - what decoding would allocate for its arrays passes [`DECODE_AMPLIFICATION_MAX`] times the
//!   request's own size (or [`DECODE_BYTES_FLOOR`] for small requests).
//!
//! A request the check passes decodes into at most that much memory, whatever its bytes are. The
//! walk reads every length and count once, skips strings and record batches without reading them,
//! and allocates nothing.

use kafka_protocol::messages::ApiKey;

use super::schemas::{self, STR_IN_MEMORY, Struct, Ty};
use crate::limits::{DECODE_AMPLIFICATION_MAX, DECODE_BYTES_FLOOR};

/// Why a request was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{field} claims {count} elements but only {left} bytes are left")]
    TooManyElements { field: &'static str, count: u64, left: usize },
    #[error("{field} claims {len} bytes but only {left} are left")]
    TooLong { field: &'static str, len: u64, left: usize },
    #[error("{field} has a negative length ({len})")]
    NegativeLength { field: &'static str, len: i64 },
    #[error("the request ends inside {field}")]
    Truncated { field: &'static str },
    #[error("decoding it would take {bytes} bytes of memory, over {limit} for a {frame}-byte request")]
    Amplified { bytes: usize, limit: usize, frame: usize },
    #[error("no schema for {0:?}")]
    NoSchema(ApiKey),
}

/// What an unknown tagged field costs once decoded: a map entry holding a tag and a `Bytes`, with
/// the map's node overhead spread over its entries.
const UNKNOWN_TAG_IN_MEMORY: usize = 64;

/// A request that passed: where its schema ended (bytes after that are ignored, as Kafka ignores
/// them) and what decoding it will allocate for arrays, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    pub end: usize,
    pub decoded: usize,
}

/// The most a request body of `len` bytes may decode into.
pub fn decode_limit(len: usize) -> usize {
    len.saturating_mul(DECODE_AMPLIFICATION_MAX).max(DECODE_BYTES_FLOOR)
}

/// Checks the body (the bytes after the request header) of a `key` request at `version`.
pub fn check(key: ApiKey, version: i16, body: &[u8]) -> Result<Walked, Refused> {
    let schema = schemas::schema(key).ok_or(Refused::NoSchema(key))?;
    let flexible = version >= schema.flexible_since;
    let mut walk = Walk { bytes: body, at: 0, version, flexible, decoded: 0, limit: decode_limit(body.len()) };
    walk.message(schema.body)?;
    Ok(Walked { end: walk.at, decoded: walk.decoded })
}

/// A position in a request body and what decoding it so far would allocate.
struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    version: i16,
    flexible: bool,
    decoded: usize,
    limit: usize,
}

impl Walk<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn message(&mut self, shape: &'static Struct) -> Result<(), Refused> {
        let version = self.version;
        for field in shape.fields.iter().filter(|f| f.tag.is_none() && f.is_in(version)) {
            self.field(field.name, &field.ty)?;
        }
        if self.flexible {
            self.tagged_fields(shape)?;
        }
        Ok(())
    }

    /// The tagged section: a count, then (tag, size, value) each. A tag the decoder knows is read
    /// by its type, from where it starts, as the decoder does (it ignores the size); any other is
    /// kept as `size` opaque bytes.
    fn tagged_fields(&mut self, shape: &'static Struct) -> Result<(), Refused> {
        let count = self.varint("tagged fields")?;
        for _ in 0..count {
            let tag = self.varint("a field tag")?;
            let size = self.varint("a tagged field's size")?;
            let known = shape.fields.iter().find(|f| f.tag == Some(tag) && f.is_in(self.version));
            match known {
                Some(field) => self.field(field.name, &field.ty)?,
                None => {
                    self.skip("a tagged field", u64::from(size))?;
                    self.account(1, UNKNOWN_TAG_IN_MEMORY)?;
                }
            }
        }
        Ok(())
    }

    fn field(&mut self, name: &'static str, ty: &Ty) -> Result<(), Refused> {
        match ty {
            Ty::Fixed(width) => self.skip(name, *width as u64),
            Ty::Str => {
                let len = self.length(name, Width::Short)?;
                self.skip(name, len)
            }
            Ty::Bytes => {
                let len = self.length(name, Width::Long)?;
                self.skip(name, len)
            }
            Ty::Structs(element) => {
                let smallest = self.smallest(element);
                let count = self.count(name, smallest)?;
                self.account(count, element.in_memory)?;
                (0..count).try_for_each(|_| self.message(element))
            }
            Ty::Int32s => {
                let count = self.count(name, 4)?;
                self.account(count, 4)?;
                self.skip(name, count * 4)
            }
            Ty::Strs => {
                let count = self.count(name, if self.flexible { 1 } else { 2 })?;
                self.account(count, STR_IN_MEMORY)?;
                (0..count).try_for_each(|_| self.field(name, &Ty::Str))
            }
        }
    }

    /// The fewest bytes an element of `shape` can be encoded in at this version (never zero, so
    /// every claimed element costs the sender at least a byte).
    fn smallest(&self, shape: &'static Struct) -> u64 {
        let length = if self.flexible { 1 } else { 2 };
        let fields: u64 = shape
            .fields
            .iter()
            .filter(|f| f.tag.is_none() && f.is_in(self.version))
            .map(|f| match f.ty {
                Ty::Fixed(width) => width as u64,
                Ty::Str => length,
                Ty::Bytes | Ty::Structs(_) | Ty::Int32s | Ty::Strs => {
                    if self.flexible {
                        1
                    } else {
                        4
                    }
                }
            })
            .sum();
        (fields + u64::from(self.flexible)).max(1)
    }

    /// An array's element count (0 for a null array), refused when `count × smallest` bytes are not
    /// left.
    fn count(&mut self, field: &'static str, smallest: u64) -> Result<u64, Refused> {
        let count = self.length(field, Width::Long)?;
        let left = self.left();
        if count.saturating_mul(smallest) > left as u64 {
            return Err(Refused::TooManyElements { field, count, left });
        }
        Ok(count)
    }

    /// A length or count: int16 or int32 (−1 is null), or when flexible an unsigned varint holding
    /// the length + 1 (0 is null). Null reads as 0.
    fn length(&mut self, field: &'static str, width: Width) -> Result<u64, Refused> {
        if self.flexible {
            return Ok(u64::from(self.varint(field)?).saturating_sub(1));
        }
        let len = match width {
            Width::Short => i64::from(i16::from_be_bytes(self.take(field)?)),
            Width::Long => i64::from(i32::from_be_bytes(self.take(field)?)),
        };
        match len {
            -1 => Ok(0),
            len if len < 0 => Err(Refused::NegativeLength { field, len }),
            len => Ok(len as u64),
        }
    }

    /// An unsigned varint as kafka-protocol reads it: at most 5 bytes, 7 bits each, high bits of
    /// the fifth byte dropped.
    fn varint(&mut self, field: &'static str) -> Result<u32, Refused> {
        let mut value = 0u32;
        for i in 0..5 {
            let [byte] = self.take(field)?;
            value |= u32::from(byte & 0x7f).wrapping_shl(i * 7);
            if byte < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Refused> {
        let bytes = self.bytes.get(self.at..self.at + N).ok_or(Refused::Truncated { field })?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn skip(&mut self, field: &'static str, len: u64) -> Result<(), Refused> {
        let left = self.left();
        if len > left as u64 {
            return Err(Refused::TooLong { field, len, left });
        }
        self.at += len as usize;
        Ok(())
    }

    /// Adds what decoding `count` elements of `in_memory` bytes allocates.
    fn account(&mut self, count: u64, in_memory: usize) -> Result<(), Refused> {
        let bytes = usize::try_from(count).unwrap_or(usize::MAX).saturating_mul(in_memory);
        self.decoded = self.decoded.saturating_add(bytes);
        if self.decoded > self.limit {
            return Err(Refused::Amplified { bytes: self.decoded, limit: self.limit, frame: self.bytes.len() });
        }
        Ok(())
    }
}

/// The width of a non-flexible length: strings have int16 lengths, bytes and arrays int32.
#[derive(Clone, Copy)]
enum Width {
    Short,
    Long,
}
