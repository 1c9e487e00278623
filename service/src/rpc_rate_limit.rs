//! A per-connection bound on JSON-RPC calls, as Substrate's
//! `--rpc-rate-limit`: each connection may make so many calls a minute
//! (each call of a batch counts), and a call over the rate is answered at
//! once with a stable error code instead of being served.
//!
//! [`crate::rpc_server`] makes one [`ConnectionLimiter`] for each accepted
//! TCP connection ([`RateLimit::connection`]) and every request on it, HTTP
//! or WebSocket, draws from it: a caller that floods its own connection
//! slows nobody else's. The bucket is
//! `governor`'s GCRA: a connection may burst up to the per-minute figure,
//! then gets one call per 1/rate minute.
//!
//! Opening many connections at once to multiply the rate is bounded by the
//! server's connection limit (`RpcLimits::max_connections`); a caller that
//! opens one connection after another gets a fresh bucket each time, as
//! with Substrate's limit (a bound per address belongs in front of the
//! node, in a proxy).

use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonrpsee::server::middleware::rpc::{
    Batch, BatchEntry, BatchEntryErr, Notification, Request, RpcServiceT,
};
use jsonrpsee::types::ErrorObject;
use jsonrpsee::MethodResponse;

/// How many calls a minute one connection may make, and the error code a
/// call over it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls a minute per connection (also the largest burst).
    pub calls_per_minute: NonZeroU32,
    /// The JSON-RPC error code of a refused call.
    pub code: i32,
}

impl RateLimit {
    /// A new connection's limiter, with a full bucket.
    pub fn connection(&self) -> ConnectionLimiter {
        ConnectionLimiter {
            limiter: Arc::new(RateLimiter::direct(Quota::per_minute(
                self.calls_per_minute,
            ))),
            limit: *self,
        }
    }

    fn refusal(&self) -> ErrorObject<'static> {
        ErrorObject::owned(
            self.code,
            format!(
                "rate limit exceeded: at most {} calls a minute on one connection",
                self.calls_per_minute
            ),
            None::<()>,
        )
    }
}

/// One connection's bucket; every middleware it [wraps](Self::wrap)
/// draws from it.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    limiter: Arc<DefaultDirectRateLimiter>,
    limit: RateLimit,
}

impl ConnectionLimiter {
    /// The middleware of one request (HTTP) or of the whole connection
    /// (WebSocket), drawing from this connection's bucket.
    pub fn wrap<S>(&self, service: S) -> RateLimited<S> {
        RateLimited {
            service,
            limiter: self.limiter.clone(),
            limit: self.limit,
        }
    }
}

/// A JSON-RPC service behind a connection's rate limit.
#[derive(Debug, Clone)]
pub struct RateLimited<S> {
    service: S,
    limiter: Arc<DefaultDirectRateLimiter>,
    limit: RateLimit,
}

impl<S> RpcServiceT for RateLimited<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse, NotificationResponse = MethodResponse>
        + Send
        + Sync
        + Clone
        + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let allowed = self.limiter.check().is_ok();
        let refusal = self.limit.refusal();
        let service = self.service.clone();
        async move {
            if allowed {
                service.call(request).await
            } else {
                MethodResponse::error(request.id().into_owned(), refusal)
            }
        }
    }

    fn batch<'a>(
        &self,
        mut batch: Batch<'a>,
    ) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        // Each call of the batch takes its own permit; those over the rate
        // are answered with the refusal in their place of the batch.
        for entry in batch.iter_mut() {
            let id = match entry {
                Ok(BatchEntry::Call(call)) => call.id().into_owned(),
                // A notification has no answer to refuse with; it still
                // takes a permit.
                Ok(BatchEntry::Notification(_)) => {
                    let _ = self.limiter.check();
                    continue;
                }
                Err(_) => continue,
            };
            if self.limiter.check().is_err() {
                *entry = Err(BatchEntryErr::new(id, self.limit.refusal()));
            }
        }
        self.service.batch(batch)
    }

    fn notification<'a>(
        &self,
        notification: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        // A notification gets no answer, so one over the rate is dropped.
        let allowed = self.limiter.check().is_ok();
        let service = self.service.clone();
        async move {
            if allowed {
                service.notification(notification).await
            } else {
                MethodResponse::notification()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gets_its_burst_then_is_refused() {
        let limit = RateLimit {
            calls_per_minute: NonZeroU32::new(3).expect("non-zero"),
            code: 1019,
        };
        let limiter = RateLimiter::direct(Quota::per_minute(limit.calls_per_minute));
        assert!((0..3).all(|_| limiter.check().is_ok()));
        assert!(limiter.check().is_err());
        let refusal = limit.refusal();
        assert_eq!(refusal.code(), 1019);
        assert!(
            refusal.message().contains("3 calls a minute"),
            "{}",
            refusal.message()
        );
    }
}
