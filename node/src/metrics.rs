//! Prometheus metrics in the text exposition format, without a metrics
//! library: a handful of atomics and a tiny HTTP endpoint (`GET /metrics`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The node's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Height of the best block.
    pub best_height: AtomicU64,
    /// Height of the finalized block (equal to best: finality is instant).
    pub finalized_height: AtomicU64,
    /// Transactions in the pool.
    pub pool_size: AtomicU64,
    /// Bytes in the pool.
    pub pool_bytes: AtomicU64,
    /// Transactions in the last imported block.
    pub block_txs: AtomicU64,
    /// Transactions finalized since start.
    pub finalized_txs: AtomicU64,
    /// Time the last block import took, in microseconds.
    pub import_micros: AtomicU64,
    /// Transactions refused by the pool since start.
    pub rejected_txs: AtomicU64,
    /// Equivocations observed since start.
    pub equivocations: AtomicU64,
    /// Connected peers.
    pub peers: AtomicU64,
}

impl Metrics {
    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let gauges: [(&str, &str, &str, &AtomicU64); 10] = [
            (
                "lockstep_block_height_best",
                "gauge",
                "Height of the best block",
                &self.best_height,
            ),
            (
                "lockstep_block_height_finalized",
                "gauge",
                "Height of the finalized block",
                &self.finalized_height,
            ),
            (
                "lockstep_pool_transactions",
                "gauge",
                "Transactions in the pool",
                &self.pool_size,
            ),
            (
                "lockstep_pool_bytes",
                "gauge",
                "Bytes of transactions in the pool",
                &self.pool_bytes,
            ),
            (
                "lockstep_block_transactions",
                "gauge",
                "Transactions in the last imported block",
                &self.block_txs,
            ),
            (
                "lockstep_finalized_transactions_total",
                "counter",
                "Transactions finalized since start",
                &self.finalized_txs,
            ),
            (
                "lockstep_block_import_microseconds",
                "gauge",
                "Duration of the last block import",
                &self.import_micros,
            ),
            (
                "lockstep_pool_rejected_total",
                "counter",
                "Transactions refused by the pool",
                &self.rejected_txs,
            ),
            (
                "lockstep_equivocations_total",
                "counter",
                "Equivocations observed",
                &self.equivocations,
            ),
            ("lockstep_peers", "gauge", "Connected peers", &self.peers),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in gauges {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped. Requests
/// are read up to a small bound; anything else gets 404.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
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

/// Binds the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
