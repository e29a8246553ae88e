//! Kafka's variable-length integers: zigzag-encoded signed integers in base-128 groups, low group
//! first, the high bit of each byte set when another byte follows (the protobuf `sint32`/`sint64`
//! encoding).
//!
//! | type    | Rust  | bytes  | zigzag                   |
//! |---------|-------|--------|--------------------------|
//! | varint  | `i32` | 1 to 5 | `(n << 1) ^ (n >> 31)`   |
//! | varlong | `i64` | 1 to 10| `(n << 1) ^ (n >> 63)`   |
//!
//! Zigzag maps small magnitudes of either sign to small codes: 0 → 0, -1 → 1, 1 → 2, -2 → 3.
//! Example: 300 zigzags to 600 = 0b100_1011000, encoded as `D8 04`.
//!
//! Decoding accepts padded encodings (`80 00` for 0) because Kafka's `ByteUtils.readVarint`
//! does, but rejects an encoding whose last byte carries bits that do not fit the type: Kafka
//! silently drops them, and no correct encoder writes them, so they only ever mean corruption.

use core::fmt;

/// Longest encoding of an `i32` varint: 5 groups of 7 bits hold 32 bits.
pub const VARINT_LEN_MAX: usize = 5;
/// Longest encoding of an `i64` varlong: 10 groups of 7 bits hold 64 bits.
pub const VARLONG_LEN_MAX: usize = 10;

/// Why a varint or varlong could not be decoded.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VarintError {
    /// The input ended while the last byte read still had its continuation bit set.
    Truncated,
    /// The continuation bit is set on byte 5 (varint) or byte 10 (varlong).
    TooLong,
    /// The last byte carries bits beyond bit 31 (varint) or bit 63 (varlong).
    Overflow,
}

impl fmt::Display for VarintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("input ends inside a varint"),
            Self::TooLong => write!(
                f,
                "varint longer than its maximum ({VARINT_LEN_MAX} bytes for 32 bits, \
                 {VARLONG_LEN_MAX} for 64)"
            ),
            Self::Overflow => f.write_str("varint's last byte has bits beyond the integer's width"),
        }
    }
}

impl core::error::Error for VarintError {}

/// An encoder was handed a buffer too small for what it had to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferTooSmall {
    /// Bytes the encoding needs.
    pub needed: usize,
    /// Bytes the buffer has.
    pub available: usize,
}

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buffer too small: need {} bytes, have {}", self.needed, self.available)
    }
}

impl core::error::Error for BufferTooSmall {}

/// Decodes a zigzag varint from the start of `bytes`; returns the value and the bytes it used.
pub fn decode_varint(bytes: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, len) = decode_unsigned(bytes, VARINT_LEN_MAX)?;
    // 5 groups carry 35 bits; the top 3 must be zero for the value to fit 32 bits.
    let raw = u32::try_from(raw).map_err(|_| VarintError::Overflow)?;
    Ok((zigzag_decode_32(raw), len))
}

/// Decodes a zigzag varlong from the start of `bytes`; returns the value and the bytes it used.
pub fn decode_varlong(bytes: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, len) = decode_unsigned(bytes, VARLONG_LEN_MAX)?;
    Ok((zigzag_decode_64(raw), len))
}

/// Encodes `value` as a zigzag varint at the start of `out`; returns the bytes written.
pub fn encode_varint(value: i32, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    encode_unsigned(u64::from(zigzag_encode_32(value)), out)
}

/// Encodes `value` as a zigzag varlong at the start of `out`; returns the bytes written.
pub fn encode_varlong(value: i64, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    encode_unsigned(zigzag_encode_64(value), out)
}

/// Bytes [`encode_varint`] writes for `value`.
pub const fn varint_len(value: i32) -> usize {
    unsigned_len(zigzag_encode_32(value) as u64)
}

/// Bytes [`encode_varlong`] writes for `value`.
pub const fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag_encode_64(value))
}

const fn zigzag_encode_32(value: i32) -> u32 {
    // The arithmetic shift spreads the sign over all bits: all-ones for negatives flips them.
    ((value as u32) << 1) ^ ((value >> 31) as u32)
}

const fn zigzag_encode_64(value: i64) -> u64 {
    ((value as u64) << 1) ^ ((value >> 63) as u64)
}

const fn zigzag_decode_32(raw: u32) -> i32 {
    ((raw >> 1) as i32) ^ ((raw & 1) as i32).wrapping_neg()
}

const fn zigzag_decode_64(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ ((raw & 1) as i64).wrapping_neg()
}

/// Decodes base-128 groups, reading at most `len_max` bytes (at most 10, so shifts stay < 64).
fn decode_unsigned(bytes: &[u8], len_max: usize) -> Result<(u64, usize), VarintError> {
    debug_assert!(len_max <= VARLONG_LEN_MAX);
    let mut value: u64 = 0;
    for (index, &byte) in bytes.iter().take(len_max).enumerate() {
        let shift = 7 * index as u32;
        let group = u64::from(byte & 0x7f);
        // Bits of this group that a shift by `shift` would push past bit 63.
        if shift > 0 && group >> (64 - shift) != 0 {
            return Err(VarintError::Overflow);
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    if bytes.len() < len_max { Err(VarintError::Truncated) } else { Err(VarintError::TooLong) }
}

fn encode_unsigned(mut value: u64, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let needed = unsigned_len(value);
    let available = out.len();
    let Some(out) = out.get_mut(..needed) else {
        return Err(BufferTooSmall { needed, available });
    };
    for (index, slot) in out.iter_mut().enumerate() {
        let last = index + 1 == needed;
        *slot = if last { value as u8 } else { (value as u8 & 0x7f) | 0x80 };
        value >>= 7;
    }
    debug_assert_eq!(value, 0, "unsigned_len undercounted");
    Ok(needed)
}

const fn unsigned_len(value: u64) -> usize {
    // One byte per started group of 7 significant bits; zero still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // (value, encoding): the zigzag table from the protobuf docs plus multi-byte cases.
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-2, &[0x03]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (300, &[0xd8, 0x04]),
            (i64::from(i32::MAX), &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i64::from(i32::MIN), &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, encoding) in cases {
            let mut buf = [0u8; VARLONG_LEN_MAX];
            let len = encode_varlong(value, &mut buf).unwrap();
            assert_eq!(&buf[..len], encoding, "varlong {value}");
            assert_eq!(decode_varlong(encoding), Ok((value, encoding.len())));
            if let Ok(value) = i32::try_from(value) {
                let len = encode_varint(value, &mut buf).unwrap();
                assert_eq!(&buf[..len], encoding, "varint {value}");
                assert_eq!(decode_varint(encoding), Ok((value, encoding.len())));
            }
        }
        let max = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_varlong(&max), Ok((i64::MAX, 10)));
        let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(decode_varlong(&min), Ok((i64::MIN, 10)));
    }

    #[test]
    fn malformed_encodings() {
        assert_eq!(decode_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(decode_varint(&[0x80, 0x80]), Err(VarintError::Truncated));
        assert_eq!(decode_varint(&[0x80; 5]), Err(VarintError::TooLong));
        assert_eq!(decode_varlong(&[0x80; 10]), Err(VarintError::TooLong));
        // Byte 5 of a varint holds bits 28..35: only 28..32 fit an i32.
        assert_eq!(decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]), Err(VarintError::Overflow));
        // Byte 10 of a varlong holds bit 63 only.
        let mut long = [0xff; 10];
        long[9] = 0x02;
        assert_eq!(decode_varlong(&long), Err(VarintError::Overflow));
        // Padding is accepted, as in Kafka.
        assert_eq!(decode_varint(&[0x80, 0x00]), Ok((0, 2)));
    }

    #[test]
    fn small_buffer() {
        let mut buf = [0u8; 1];
        assert_eq!(encode_varint(300, &mut buf), Err(BufferTooSmall { needed: 2, available: 1 }));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn varint_round_trip(value: i32) {
            let mut buf = [0u8; VARINT_LEN_MAX];
            let len = encode_varint(value, &mut buf).unwrap();
            prop_assert_eq!(len, varint_len(value));
            prop_assert_eq!(decode_varint(&buf[..len]), Ok((value, len)));
        }

        #[test]
        fn varlong_round_trip(value: i64) {
            let mut buf = [0u8; VARLONG_LEN_MAX];
            let len = encode_varlong(value, &mut buf).unwrap();
            prop_assert_eq!(len, varlong_len(value));
            prop_assert_eq!(decode_varlong(&buf[..len]), Ok((value, len)));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Ok((value, len)) = decode_varint(&bytes) {
                prop_assert!((1..=VARINT_LEN_MAX).contains(&len) && len <= bytes.len());
                // Whatever decodes re-encodes to at most as many bytes (padding is dropped).
                prop_assert!(varint_len(value) <= len);
            }
            if let Ok((value, len)) = decode_varlong(&bytes) {
                prop_assert!((1..=VARLONG_LEN_MAX).contains(&len) && len <= bytes.len());
                prop_assert!(varlong_len(value) <= len);
            }
        }
    }
}
