//! How long each JSON-RPC method takes, as a histogram per method: a
//! jsonrpsee middleware layer that every server puts in front of its
//! methods.
//!
//! Labels are bounded: a method the server does not serve is counted under
//! `method="other"`, so a caller inventing method names cannot grow the
//! metric. A JSON-RPC batch is timed as a whole, under `method="batch"`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use jsonrpsee::server::middleware::rpc::{Batch, Notification, Request, RpcServiceT};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::metrics::seconds_histogram;

/// The label of one series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

type Times = Family<MethodLabel, Histogram, fn() -> Histogram>;

/// Per-method call durations, shared by the server's middleware and the
/// metrics registry.
#[derive(Debug, Clone)]
pub struct RpcTimes {
    times: Times,
    served: Arc<OnceLock<HashSet<String>>>,
}

impl Default for RpcTimes {
    fn default() -> Self {
        RpcTimes {
            times: Family::new_with_constructor(seconds_histogram),
            served: Arc::new(OnceLock::new()),
        }
    }
}

impl RpcTimes {
    /// Names the methods the server serves (once; later calls are ignored).
    pub fn serve(&self, methods: impl IntoIterator<Item = String>) {
        let _ = self.served.set(methods.into_iter().collect());
    }

    /// Registers the histogram family as `name`.
    pub fn register(&self, registry: &mut Registry, name: &str) {
        registry.register(
            name,
            "How long JSON-RPC calls take, per method",
            self.times.clone(),
        );
    }

    fn label(&self, method: &str) -> MethodLabel {
        let known = self.served.get().is_some_and(|m| m.contains(method));
        MethodLabel {
            method: if known {
                method.to_owned()
            } else {
                "other".to_owned()
            },
        }
    }

    fn observe(&self, label: &MethodLabel, started: Instant) {
        self.times
            .get_or_create(label)
            .observe(started.elapsed().as_secs_f64());
    }

    /// The middleware around a server's methods
    /// (`RpcServiceBuilder::new().layer_fn(move |s| times.wrap(s))`).
    pub fn wrap<S>(&self, service: S) -> Timed<S> {
        Timed {
            service,
            times: self.clone(),
        }
    }
}

/// A JSON-RPC service whose calls are timed into [`RpcTimes`].
#[derive(Debug, Clone)]
pub struct Timed<S> {
    service: S,
    times: RpcTimes,
}

impl<S> RpcServiceT for Timed<S>
where
    S: RpcServiceT + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(
        &self,
        request: Request<'a>,
    ) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let label = self.times.label(request.method_name());
        let times = self.times.clone();
        let service = self.service.clone();
        async move {
            let started = Instant::now();
            let response = service.call(request).await;
            times.observe(&label, started);
            response
        }
    }

    fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        let times = self.times.clone();
        let service = self.service.clone();
        async move {
            let started = Instant::now();
            let response = service.batch(batch).await;
            times.observe(
                &MethodLabel {
                    method: "batch".to_owned(),
                },
                started,
            );
            response
        }
    }

    fn notification<'a>(
        &self,
        notification: Notification<'a>,
    ) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.service.notification(notification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_get_a_label_of_their_own() {
        let times = RpcTimes::default();
        times.serve(["event_get".to_owned()]);
        assert_eq!(times.label("event_get").method, "event_get");
        assert_eq!(times.label("event_made_up_by_a_stranger").method, "other");
        let mut registry = Registry::default();
        times.register(&mut registry, "lockstep_test_rpc_seconds");
        times.observe(&times.label("event_get"), Instant::now());
        times.observe(&times.label("x1"), Instant::now());
        times.observe(&times.label("x2"), Instant::now());
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains("lockstep_test_rpc_seconds_count{method=\"event_get\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lockstep_test_rpc_seconds_count{method=\"other\"} 2"),
            "{text}"
        );
    }
}
