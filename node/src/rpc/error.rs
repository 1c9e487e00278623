//! JSON-RPC error codes. They are part of the API: a code, once given a
//! meaning, keeps it. Messages are for people and may be reworded.
//!
//! | code | meaning |
//! |---|---|
//! | -32700, -32600, -32601, -32602 | JSON-RPC's own: parse error, invalid request, unknown method, invalid params |
//! | -32603 | internal error (the database failed) |
//! | 1000 | the extrinsic is not valid hex, does not decode, or is too large |
//! | 1010 | bad signature, or signed for another chain (genesis) or runtime version |
//! | 1011 | stale nonce: the account has used it already |
//! | 1012 | expired: `valid_until` is behind the next block |
//! | 1013 | already known: in the pool or finalized |
//! | 1014 | nonce taken by another transaction in the pool |
//! | 1015 | the pool is full |
//! | 1016 | too many pending transactions for this account |
//! | 1017 | too many watched transactions |
//! | 1030 | historical state requested: only the finalized head's state is kept |

use jsonrpsee::types::ErrorObjectOwned;

use crate::chain::SubmitError;
use crate::pool::PoolError;
use crate::storage::StorageError;

/// The extrinsic is not valid hex, does not decode, or is too large.
pub const BAD_EXTRINSIC: i32 = 1000;
/// Bad signature, or signed for another chain or runtime version.
pub const BAD_SIGNATURE: i32 = 1010;
/// The nonce is used.
pub const STALE_NONCE: i32 = 1011;
/// `valid_until` has passed.
pub const EXPIRED: i32 = 1012;
/// In the pool or finalized already.
pub const ALREADY_KNOWN: i32 = 1013;
/// Another pooled transaction has this nonce.
pub const NONCE_TAKEN: i32 = 1014;
/// The pool is full.
pub const POOL_FULL: i32 = 1015;
/// The account has too many pending transactions.
pub const ACCOUNT_FULL: i32 = 1016;
/// Too many watched transactions.
pub const TOO_MANY_WATCHERS: i32 = 1017;
/// Only the head's state is kept.
pub const HISTORICAL_STATE: i32 = 1030;
/// JSON-RPC's internal error.
pub const INTERNAL: i32 = -32603;

/// An error object with a code and a message.
pub fn error(code: i32, message: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code, message.into(), None::<()>)
}

/// A database failure: logged, and reported without internals.
pub fn internal(error: StorageError) -> ErrorObjectOwned {
    tracing::error!(target: "lockstep::rpc", "database error while serving RPC: {error}");
    self::error(INTERNAL, format!("internal error: {error}"))
}

impl From<SubmitError> for ErrorObjectOwned {
    fn from(e: SubmitError) -> Self {
        let code = match &e {
            SubmitError::Decode(_) => BAD_EXTRINSIC,
            SubmitError::BadSignature(_) => BAD_SIGNATURE,
            SubmitError::AlreadyFinalized(_) => ALREADY_KNOWN,
            SubmitError::TooManyWatchers => TOO_MANY_WATCHERS,
            SubmitError::Pool(pool) => match pool {
                PoolError::AlreadyImported(_) => ALREADY_KNOWN,
                PoolError::StaleNonce { .. } => STALE_NONCE,
                PoolError::Expired { .. } => EXPIRED,
                PoolError::NonceTaken { .. } => NONCE_TAKEN,
                PoolError::AccountFull(_) => ACCOUNT_FULL,
                PoolError::Full { .. } => POOL_FULL,
            },
            SubmitError::Storage(_) => {
                tracing::error!(target: "lockstep::rpc", "database error on submit: {e}");
                INTERNAL
            }
        };
        error(code, e.to_string())
    }
}
