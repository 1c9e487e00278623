//! JSON-RPC errors of the node: the codes are part of the API and listed
//! in `lockstep_api::node::error`; this module maps the node's own errors
//! onto them.

use jsonrpsee::types::ErrorObjectOwned;
pub use lockstep_api::node::error::*;

use crate::chain::SubmitError;
use crate::pool::PoolError;
use crate::storage::StorageError;

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
                PoolError::ValidityTooLong { .. } => VALIDITY_TOO_LONG,
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
