//! Prometheus metrics in the text exposition format: a handful of atomics
//! and a tiny HTTP endpoint (`GET /metrics`), like the node's. The endpoint
//! ([`serve`]) takes anything that [`Render`]s, so the account bridge serves
//! its own metrics with it.
//!
//! Besides the counters, [`Metrics::changed`] is bumped after every quorum
//! round and reconciler pass, so tests (and operators' tools) can await
//! progress instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The event system's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Events per state (refreshed by the reconciler and on every transition).
    pub registered: AtomicU64,
    /// Events in PendingAccount.
    pub pending_account: AtomicU64,
    /// Events completed.
    pub completed: AtomicU64,
    /// Events cancelled.
    pub cancelled: AtomicU64,
    /// Transitions recorded, registrations included (the global sequence).
    pub transitions: AtomicU64,
    /// Quorum checks of single events since start.
    pub quorum_checks: AtomicU64,
    /// Checks where nodes disagreed (conflicting answers).
    pub quorum_disagreements: AtomicU64,
    /// Checks that decided nothing (too few answers or not final yet).
    pub quorum_undecided: AtomicU64,
    /// Node calls that failed or timed out.
    pub node_errors: AtomicU64,
    /// Messages in the bus not acknowledged.
    pub bus_depth: AtomicU64,
    /// PendingAccount events past the overdue threshold.
    pub overdue: AtomicU64,
    /// Instructions re-queued by the reconciler.
    pub resends: AtomicU64,
    /// Last finalized height the watcher processed.
    pub watcher_height: AtomicU64,
    /// Times the watcher switched to another node.
    pub watcher_failovers: AtomicU64,
    changed: watch::Sender<u64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            registered: AtomicU64::new(0),
            pending_account: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
            quorum_checks: AtomicU64::new(0),
            quorum_disagreements: AtomicU64::new(0),
            quorum_undecided: AtomicU64::new(0),
            node_errors: AtomicU64::new(0),
            bus_depth: AtomicU64::new(0),
            overdue: AtomicU64::new(0),
            resends: AtomicU64::new(0),
            watcher_height: AtomicU64::new(0),
            watcher_failovers: AtomicU64::new(0),
            changed: watch::channel(0).0,
        }
    }
}

impl Metrics {
    /// Adds one to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Signals that a round (quorum check, reconciler pass, watcher block)
    /// finished.
    pub fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Changes each time [`Metrics::bump`] is called.
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP lockstep_offchain_events Events per state\n# TYPE lockstep_offchain_events gauge\n");
        for (state, value) in [
            ("Registered", &self.registered),
            ("PendingAccount", &self.pending_account),
            ("Completed", &self.completed),
            ("Cancelled", &self.cancelled),
        ] {
            out.push_str(&format!(
                "lockstep_offchain_events{{state=\"{state}\"}} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        let rest: [(&str, &str, &str, &AtomicU64); 10] = [
            (
                "lockstep_offchain_transitions_total",
                "counter",
                "Transitions recorded, registrations included",
                &self.transitions,
            ),
            (
                "lockstep_offchain_quorum_checks_total",
                "counter",
                "Quorum checks of single events",
                &self.quorum_checks,
            ),
            (
                "lockstep_offchain_quorum_disagreements_total",
                "counter",
                "Quorum checks with conflicting answers",
                &self.quorum_disagreements,
            ),
            (
                "lockstep_offchain_quorum_undecided_total",
                "counter",
                "Quorum checks that decided nothing",
                &self.quorum_undecided,
            ),
            (
                "lockstep_offchain_node_errors_total",
                "counter",
                "Node calls that failed or timed out",
                &self.node_errors,
            ),
            (
                "lockstep_offchain_bus_depth",
                "gauge",
                "Bus messages not acknowledged",
                &self.bus_depth,
            ),
            (
                "lockstep_offchain_overdue_events",
                "gauge",
                "PendingAccount events past the overdue threshold",
                &self.overdue,
            ),
            (
                "lockstep_offchain_resends_total",
                "counter",
                "Payment instructions re-queued",
                &self.resends,
            ),
            (
                "lockstep_offchain_watcher_height",
                "gauge",
                "Last finalized height processed",
                &self.watcher_height,
            ),
            (
                "lockstep_offchain_watcher_failovers_total",
                "counter",
                "Switches to another node",
                &self.watcher_failovers,
            ),
        ];
        for (name, kind, help, value) in rest {
            write_metric(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
        out
    }
}

/// Metrics that render themselves in the Prometheus text format.
pub trait Render: Send + Sync + 'static {
    /// The exposition text.
    fn render(&self) -> String;
}

impl Render for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

/// Appends one metric with its `HELP` and `TYPE` lines.
pub fn write_metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    ));
}

/// Serves `GET /metrics` on `listener` until the task is dropped. Requests
/// are read up to a small bound; anything else gets 404.
pub async fn serve<M: Render>(listener: TcpListener, metrics: Arc<M>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut request))
                    .await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&request[..n]);
            let response = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
                let body = metrics.render();
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
