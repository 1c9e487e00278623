//! Prometheus metrics: each service registers its metrics in a
//! [`Registry`] of [`prometheus_client`] (histograms and the like as
//! metrics of their own; counters and gauges its code keeps in plain
//! atomics through [`Exposed`], read at each scrape), and [`serve`]
//! answers `GET /metrics` with the registry in the text exposition format.
//!
//! The endpoint reads at most 1 KiB of a request and waits at most 5 s for
//! it; anything but `GET /metrics` (or `GET /`) gets 404. Accept errors
//! (out of file descriptors, say) back off from 10 ms to 1 s instead of
//! spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use prometheus_client;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::backoff;

/// A gauge of a non-negative count.
pub type CountGauge = Gauge<u64, std::sync::atomic::AtomicU64>;

/// A histogram of durations in seconds, from 1 ms to about 33 s in powers
/// of two: what "how long" questions about calls, imports and settlement
/// need.
pub fn seconds_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 16,
    ))
}

/// A histogram of sizes (items per batch, transactions per block), 1 to
/// 65,536 in powers of two.
pub fn size_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 17,
    ))
}

/// Records the time since `start` in `histogram`, in seconds.
pub fn observe_since(histogram: &Histogram, start: std::time::Instant) {
    histogram.observe(start.elapsed().as_secs_f64());
}

/// Counters and gauges a service keeps in atomics of its own (cheap to
/// bump on hot paths, readable by tests), exposed at each scrape.
pub trait Exposed: std::fmt::Debug + Send + Sync + 'static {
    /// Writes every value.
    fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result;
}

/// Where [`Exposed::expose`] writes. Counter names are given without the
/// `_total` suffix, which the encoder adds.
#[derive(Debug)]
pub struct Exposition<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Exposition<'_> {
    /// A counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> std::fmt::Result {
        let counter = ConstCounter::new(value);
        let metric = self
            .encoder
            .encode_descriptor(name, help, None, counter.metric_type())?;
        counter.encode(metric)
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) -> std::fmt::Result {
        let gauge = ConstGauge::new(value);
        let metric = self
            .encoder
            .encode_descriptor(name, help, None, gauge.metric_type())?;
        gauge.encode(metric)
    }

    /// A gauge with one label, a value per label value.
    pub fn gauge_family(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) -> std::fmt::Result {
        let mut metric = self.encoder.encode_descriptor(
            name,
            help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (value_label, value) in values {
            let labels = [(label, *value_label)];
            let family = metric.encode_family(&labels)?;
            ConstGauge::new(*value).encode(family)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Collected<T>(Arc<T>);

impl<T: Exposed> Collector for Collected<T> {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.0.expose(&mut Exposition { encoder })
    }
}

/// Registers `metrics` so that each scrape reads its current values.
pub fn register_exposed<T: Exposed>(registry: &mut Registry, metrics: Arc<T>) {
    registry.register_collector(Box::new(Collected(metrics)));
}

/// The registry in the text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

/// Binds `addr` and serves the registry there; returns the task and the
/// bound address (port 0 picks one).
pub async fn start(
    addr: SocketAddr,
    registry: Arc<Registry>,
) -> std::io::Result<(JoinHandle<()>, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((tokio::spawn(serve(listener, registry)), bound))
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let mut errors = 0u32;
    loop {
        let mut socket = match listener.accept().await {
            Ok((socket, _)) => {
                errors = 0;
                socket
            }
            Err(e) => {
                errors = errors.saturating_add(1);
                let pause = backoff(Duration::from_millis(10), Duration::from_secs(1), errors);
                tracing::warn!(target: "lockstep::metrics", "metrics endpoint: accept failed ({e}); retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read =
                tokio::time::timeout(Duration::from_secs(5), socket.read(&mut request)).await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&request[..n]);
            let response = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
                let body = render(&registry);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        let gauge = CountGauge::default();
        let histogram = seconds_histogram();
        registry.register("lockstep_test_things", "Things", counter.clone());
        registry.register("lockstep_test_depth", "Depth", gauge.clone());
        registry.register("lockstep_test_seconds", "Time", histogram.clone());
        counter.inc_by(3);
        gauge.set(7);
        histogram.observe(0.004);
        let text = render(&registry);
        assert!(text.contains("lockstep_test_things_total 3"), "{text}");
        assert!(text.contains("lockstep_test_depth 7"), "{text}");
        assert!(text.contains("lockstep_test_seconds_count 1"), "{text}");
        assert!(
            text.contains("lockstep_test_seconds_bucket{le=\"0.004\"} 1"),
            "{text}"
        );
    }

    #[derive(Debug, Default)]
    struct Atomics {
        hits: std::sync::atomic::AtomicU64,
    }

    impl Exposed for Atomics {
        fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
            let hits = self.hits.load(std::sync::atomic::Ordering::Relaxed);
            out.counter("lockstep_test_atomic_hits", "Hits", hits)?;
            out.gauge("lockstep_test_atomic_depth", "Depth", 2)?;
            out.gauge_family(
                "lockstep_test_atomic_events",
                "Events",
                "state",
                &[("A", 1), ("B", 4)],
            )
        }
    }

    #[test]
    fn exposed_atomics_are_read_at_each_scrape() {
        let mut registry = Registry::default();
        let atomics = Arc::new(Atomics::default());
        register_exposed(&mut registry, atomics.clone());
        assert!(render(&registry).contains("lockstep_test_atomic_hits_total 0"));
        atomics
            .hits
            .fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        let text = render(&registry);
        assert!(text.contains("lockstep_test_atomic_hits_total 5"), "{text}");
        assert!(
            text.contains("# TYPE lockstep_test_atomic_hits counter"),
            "{text}"
        );
        assert!(text.contains("lockstep_test_atomic_depth 2"), "{text}");
        assert!(
            text.contains("lockstep_test_atomic_events{state=\"B\"} 4"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_endpoint_serves_metrics_and_refuses_other_paths() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("lockstep_test_hits", "Hits", counter.clone());
        counter.inc();
        let (task, addr) = start(([127, 0, 0, 1], 0).into(), Arc::new(registry))
            .await
            .unwrap();
        let get = |path: &'static str| async move {
            let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            socket
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut answer = String::new();
            socket.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("lockstep_test_hits_total 1"), "{ok}");
        assert!(get("/secret").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
