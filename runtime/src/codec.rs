//! Decoding untrusted bytes.
//!
//! Everything that arrives from a network or an RPC call is decoded through
//! [`decode_exact`]: the input is refused outright when it is larger than the
//! bound the caller gives, and every byte must be consumed. SCALE decoding
//! from a slice never allocates more than a small multiple of the input's own
//! length (variable-length fields are checked against what remains before
//! they are allocated), so the size bound is also the memory bound.

use parity_scale_codec::Decode;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than allowed.
    #[error("{size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Bytes given.
        size: usize,
        /// Bytes allowed.
        limit: usize,
    },
    /// The bytes are not a valid encoding.
    #[error("invalid encoding: {0}")]
    Invalid(String),
    /// A valid value was decoded but bytes were left over.
    #[error("trailing bytes after the value")]
    TrailingBytes,
}

/// Decodes a `T` that must occupy all of `bytes`, which must be at most
/// `limit` bytes long.
pub fn decode_exact<T: Decode>(bytes: &[u8], limit: usize) -> Result<T, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let mut input = bytes;
    let value = T::decode(&mut input).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    if !input.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(value)
}
