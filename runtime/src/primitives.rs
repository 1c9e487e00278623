//! The chain's primitive types.
//!
//! Fixed-size byte types (`AccountId`, `Hash`) are SCALE-encoded as their raw
//! bytes and shown to humans and JSON as `0x`-prefixed lower-case hex. Numbers
//! are plain integers; in JSON a `Balance` (u128) is a decimal string, because
//! JSON numbers lose precision past 2^53.

use parity_scale_codec::{Decode, Encode};
use sha2::{Digest, Sha256};

/// Identifier of an asset.
pub type AssetId = u32;
/// An amount of an asset, in its smallest unit.
pub type Balance = u128;
/// Per-account transaction counter: the next transaction must carry exactly this.
pub type Nonce = u64;
/// Height of a block; genesis is 0.
pub type BlockNumber = u64;

/// Error parsing a `0x`-hex value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The text does not start with `0x`.
    #[error("expected a 0x-prefixed hex string")]
    MissingPrefix,
    /// A character is not a hex digit, or the digit count is odd.
    #[error("invalid hex: {0}")]
    Invalid(String),
    /// The value decodes to the wrong number of bytes.
    #[error("expected {expected} bytes, got {actual}")]
    Length {
        /// Bytes the type needs.
        expected: usize,
        /// Bytes the text holds.
        actual: usize,
    },
}

/// Decodes `0x`-prefixed hex into bytes.
pub fn from_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let digits = text.strip_prefix("0x").ok_or(HexError::MissingPrefix)?;
    hex::decode(digits).map_err(|e| HexError::Invalid(e.to_string()))
}

/// Encodes bytes as `0x`-prefixed lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// Implements hex `Display`/`Debug`/`FromStr` and hex-string serde for a
/// newtype over `[u8; N]`.
macro_rules! hex_bytes_type {
    ($name:ident, $len:expr) => {
        impl $name {
            /// Number of bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl $name {
            /// `0x` and the bytes in lower-case hex, on the stack: one
            /// write for the whole (ids are formatted for every JSON
            /// answer, and a write per byte showed in profiles).
            fn hex_text(&self) -> [u8; 2 + 2 * $len] {
                let mut text = [0u8; 2 + 2 * $len];
                text[0] = b'0';
                text[1] = b'x';
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                for (i, byte) in self.0.iter().enumerate() {
                    text[2 + 2 * i] = DIGITS[usize::from(byte >> 4)];
                    text[3 + 2 * i] = DIGITS[usize::from(byte & 0x0f)];
                }
                text
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let text = self.hex_text();
                // Only ASCII digits were written.
                f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::primitives::HexError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let bytes = $crate::primitives::from_hex(text)?;
                let array: [u8; $len] = bytes.as_slice().try_into().map_err(|_| {
                    $crate::primitives::HexError::Length {
                        expected: $len,
                        actual: bytes.len(),
                    }
                })?;
                Ok(Self(array))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let text = self.hex_text();
                // Only ASCII digits were written.
                serializer
                    .serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use hex_bytes_type;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Encode, Decode)]
pub struct Hash(pub [u8; 32]);
hex_bytes_type!(Hash, 32);

impl Hash {
    /// The all-zero hash: the parent of genesis, and the root of an empty tree.
    pub const ZERO: Hash = Hash([0; 32]);

    /// SHA-256 of `data`.
    pub fn digest(data: &[u8]) -> Hash {
        Hash(Sha256::digest(data).into())
    }

    /// SHA-256 of the concatenation of `parts`, without copying them together.
    pub fn digest_parts(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        Hash(hasher.finalize().into())
    }
}

/// An account: an ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct AccountId(pub [u8; 32]);
hex_bytes_type!(AccountId, 32);

/// Serde for `u128` as a decimal string, for JSON fields holding balances.
pub mod balance_string {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the balance as a decimal string.
    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }

    /// Reads a balance from a decimal string or a (small enough) JSON number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr<'a> {
            Text(std::borrow::Cow<'a, str>),
            Number(u64),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Text(text) => text.parse().map_err(serde::de::Error::custom),
            Repr::Number(n) => Ok(u128::from(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_errors() {
        let hash = Hash::digest(b"lockstep");
        let text = hash.to_string();
        assert_eq!(text, to_hex(hash.as_bytes()));
        assert_eq!(text.len(), 66);
        // Every digit, in display and in JSON alike.
        let all = AccountId(
            (0..32)
                .map(|i| i * 8 + 7)
                .collect::<Vec<u8>>()
                .try_into()
                .unwrap(),
        );
        assert_eq!(all.to_string(), to_hex(all.as_bytes()));
        assert_eq!(
            serde_json::to_string(&all).unwrap(),
            format!("\"{}\"", to_hex(all.as_bytes()))
        );
        assert_eq!(text.parse::<Hash>().unwrap(), hash);
        assert_eq!("abcd".parse::<Hash>(), Err(HexError::MissingPrefix));
        assert!(matches!("0xzz".parse::<Hash>(), Err(HexError::Invalid(_))));
        assert_eq!(
            "0xabcd".parse::<AccountId>(),
            Err(HexError::Length {
                expected: 32,
                actual: 2
            })
        );
    }

    #[test]
    fn serde_as_hex_string() {
        let account = AccountId([7; 32]);
        let json = serde_json::to_string(&account).unwrap();
        assert_eq!(json, format!("\"{account}\""));
        assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), account);
        assert!(serde_json::from_str::<AccountId>("\"0x01\"").is_err());
    }

    #[test]
    fn digest_parts_equals_digest_of_concatenation() {
        assert_eq!(
            Hash::digest_parts(&[b"lock", b"step"]),
            Hash::digest(b"lockstep")
        );
    }
}
