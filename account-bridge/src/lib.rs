//! # lockstep-bridge
//!
//! The account bridge: the account-system side of Lockstep, as its own
//! process. It takes payment instructions from the event system's message
//! bus, pays each exactly once per event id in a double-entry ledger
//! (SQLite by default), and tells the event system with a receipt signed
//! by the bridge's ed25519 key. The binary (`src/main.rs`) only parses the
//! command line and calls [`start`] or the [`ledger`] operations.
//!
//! ## Tasks
//!
//! - **consumers** ([`consumer`], `--concurrency` of them): each pulls a
//!   batch from `bus_pull` (or, with `--bus nats://...`, fetches it from
//!   a durable JetStream pull consumer shared with the other bridges:
//!   [`source`]), checks that the event system's key signed each
//!   instruction (`--event-system-key`; one that it did not sign is set
//!   aside, never paid), pays the whole batch in one SQL transaction
//!   (each payment atomic on its own), and only after the commit
//!   acknowledges it (`bus_ack`, or a double ack per JetStream message).
//!   At most one batch per consumer is in
//!   memory; a crash before the ack means re-delivery, which the ledger
//!   absorbs as a duplicate.
//! - the **receipt poster** ([`poster`]): the ledger's outbox is the queue of
//!   receipts to deliver, written in the payment's own transaction; the
//!   poster signs them, sends them to `event_postReceipt` in JSON-RPC
//!   batches, removes the acknowledged ones, and retries the rest with
//!   capped exponential backoff, for as long as it takes;
//! - the log summary ([`summary`]): one INFO line per interval in which
//!   something happened (payments, refusals, receipts, errors); each
//!   payment's own lines are DEBUG;
//! - the Prometheus endpoint ([`metrics`]), if enabled.
//!
//! ## Failure policy
//!
//! A payment the ledger refuses for a reason that may heal (insufficient
//! funds, an account not opened yet) is recorded as failed and reported
//! with a signed `"failed"` receipt; the event stays PendingAccount with the
//! failure visible on it. The event system's reconciler re-sends the
//! instruction with capped exponential backoff, and each delivery tries
//! again, so the payment is made on the first delivery after the funds
//! arrive. An instruction the ledger can never pay (malformed, amount out
//! of range, a currency it does not hold) writes nothing; the bridge posts
//! a failure receipt for it straight away (not from the outbox: it is
//! rebuilt on every re-delivery) and acknowledges the message.
//!
//! An instruction the event system's key did not sign (no signature, a bad
//! one, or a message id other than its event id), and a message that does
//! not decode (so its signature cannot be checked), is never paid and
//! never answered with a receipt: it is counted
//! (`lockstep_bridge_unsigned_instructions_total`, `_invalid_total`),
//! logged as a warning naming its event id, and acknowledged, which drops
//! it. Dropping is what keeps it safe and the bus moving: whoever sent it
//! chose every field, so there is nothing in it worth keeping in the
//! ledger, and not acknowledging it would have the bus re-deliver it
//! forever. A genuine instruction refused because the bridge was given the
//! wrong key is not lost: the event system keeps it in its outbox until a
//! receipt arrives and re-sends it, so it is paid once the key is fixed.
//!
//! ## Where to start reading
//!
//! [`ledger`] (the trait [`ledger::PaymentLedger`], [`ledger::SqliteLedger`],
//! the schema and its invariants), then [`consumer`] and [`poster`];
//! [`client`] is the event system's API as the bridge uses it.
//!
//! ## Test-only hook
//!
//! Built with the `test-hooks` feature (the crate's own tests enable it;
//! release builds do not have it), and with
//! `LOCKSTEP_BRIDGE_CRASH_AFTER_COMMIT=1` in its environment, the process
//! aborts right after the first ledger commit that made a payment, before
//! acknowledging the bus and before any receipt leaves: the crash tests use
//! it to kill the bridge at the worst moment.

pub mod client;
pub mod consumer;
pub mod ledger;
pub mod metrics;
pub mod poster;
pub mod source;
pub mod summary;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lockstep_runtime::{AccountId, Keypair};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::client::EventSystemClient;
use crate::ledger::PaymentLedger;
use crate::metrics::BridgeMetrics;
use crate::source::{JetStreamSettings, JetStreamSource, MessageSource};

/// The test-only crash hook's variable (see the crate docs).
#[cfg(feature = "test-hooks")]
pub const CRASH_AFTER_COMMIT_ENV: &str = "LOCKSTEP_BRIDGE_CRASH_AFTER_COMMIT";

pub use lockstep_service::now_ms;

/// Everything the bridge needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The event system's JSON-RPC URL (`http://host:port`, or
    /// `https://` for one with TLS).
    pub event_system: String,
    /// The bearer token presented to the event system (a credential with
    /// the bridge role; `--token` or `--token-file`).
    pub token: Option<lockstep_api::client::BearerToken>,
    /// The CAs an `https://` event system's certificate is verified
    /// against (`--ca-file`); the system's roots when `None`.
    pub cas: Option<lockstep_api::client::TrustedCas>,
    /// The event system's public key: only instructions it signed are
    /// paid.
    pub event_system_key: AccountId,
    /// Consumers pulling and paying batches concurrently.
    pub concurrency: usize,
    /// Most instructions per pull (one SQL transaction per batch).
    pub batch: usize,
    /// How long a pulled batch is ours before the bus re-delivers it.
    pub lease: Duration,
    /// Pause after an empty pull (doubling with each further one, up to
    /// [`consumer::IDLE_POLL_CAP`]) or a failed call.
    pub poll_interval: Duration,
    /// Timeout of each call to the event system.
    pub call_timeout: Duration,
    /// First delay before an unacknowledged receipt is posted again.
    pub receipt_retry_base: Duration,
    /// Largest such delay.
    pub receipt_retry_cap: Duration,
    /// Receipt batches in flight at once.
    pub post_concurrency: usize,
    /// Prometheus endpoint, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// The bus on NATS JetStream (`--bus nats://...`); none: the event
    /// system's embedded bus (`bus_pull`/`bus_ack`). Receipts go to the
    /// event system either way.
    pub nats: Option<JetStreamSettings>,
    /// Abort after the first commit that pays (tests only).
    #[cfg(feature = "test-hooks")]
    pub crash_after_commit: bool,
}

impl Config {
    /// Defaults for everything but the event system's URL and key.
    pub fn new(event_system: impl Into<String>, event_system_key: AccountId) -> Config {
        Config {
            event_system: event_system.into(),
            token: None,
            cas: None,
            event_system_key,
            concurrency: 4,
            batch: 500,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            call_timeout: Duration::from_secs(10),
            receipt_retry_base: Duration::from_millis(500),
            receipt_retry_cap: Duration::from_secs(60),
            post_concurrency: 4,
            metrics_addr: None,
            nats: None,
            #[cfg(feature = "test-hooks")]
            crash_after_commit: false,
        }
    }
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A setting is unusable.
    #[error("invalid setting: {0}")]
    Config(String),
    /// The event system URL is unusable.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The bus could not be set up.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running bridge.
#[derive(Debug)]
pub struct RunningBridge {
    /// The metrics.
    pub metrics: Arc<BridgeMetrics>,
    /// The bound metrics address.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    metrics_task: Option<JoinHandle<()>>,
}

/// Starts the consumers, the receipt poster and the metrics endpoint.
pub async fn start(
    config: Config,
    ledger: Arc<dyn PaymentLedger>,
    key: Keypair,
) -> Result<RunningBridge, BridgeError> {
    if config.concurrency == 0 || config.concurrency > 64 {
        return Err(BridgeError::Config("concurrency must be 1 to 64".into()));
    }
    if config.batch == 0 || config.batch > lockstep_api::bus::MAX_PULL {
        return Err(BridgeError::Config(format!(
            "batch must be 1 to {}",
            lockstep_api::bus::MAX_PULL
        )));
    }
    if config.post_concurrency == 0 || config.post_concurrency > 64 {
        return Err(BridgeError::Config(
            "post concurrency must be 1 to 64".into(),
        ));
    }
    let client = EventSystemClient::new(
        &config.event_system,
        config.call_timeout,
        config.token.clone(),
        config.cas.clone(),
    )?;
    let source = match &config.nats {
        None => MessageSource::EventSystem(client.clone()),
        Some(settings) => {
            tracing::info!(target: "lockstep::bridge", "message bus: NATS JetStream at {}, stream {:?}, durable consumer {:?}", settings.servers, settings.stream, settings.consumer);
            MessageSource::JetStream(Arc::new(JetStreamSource::connect(settings.clone()).await?))
        }
    };
    let metrics = Arc::new(BridgeMetrics::default());
    let (metrics_task, metrics_addr) = match config.metrics_addr {
        Some(addr) => {
            let registry = Arc::new(metrics::registry(&metrics));
            let (task, bound) = lockstep_service::metrics::start(addr, registry)
                .await
                .map_err(|source| BridgeError::Bind { addr, source })?;
            tracing::info!(target: "lockstep::bridge", "Prometheus metrics on http://{bound}/metrics");
            (Some(task), Some(bound))
        }
        None => (None, None),
    };
    // The ledger is called on a blocking thread, never on an async worker.
    let counted = ledger.clone();
    if let Ok(Ok(backlog)) = tokio::task::spawn_blocking(move || counted.receipt_backlog()).await {
        metrics.set_backlog(backlog);
    }
    let key = Arc::new(key);
    let wake_poster = Arc::new(Notify::new());
    let work = Arc::new(Notify::new());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for n in 0..config.concurrency {
        let consumer = consumer::Consumer {
            id: n,
            source: source.clone(),
            client: client.clone(),
            ledger: ledger.clone(),
            key: key.clone(),
            event_system_key: config.event_system_key,
            metrics: metrics.clone(),
            wake_poster: wake_poster.clone(),
            work: work.clone(),
            batch: config.batch,
            lease: config.lease,
            poll_interval: config.poll_interval,
            #[cfg(feature = "test-hooks")]
            crash_after_commit: config.crash_after_commit,
        };
        tasks.push(tokio::spawn(consumer.run(shutdown_rx.clone())));
    }
    let poster = poster::ReceiptPoster {
        client,
        ledger,
        key,
        metrics: metrics.clone(),
        wake: wake_poster,
        retry_base: config.receipt_retry_base,
        retry_cap: config.receipt_retry_cap,
        concurrency: config.post_concurrency,
        idle_check: config.poll_interval.max(Duration::from_millis(50)) * 5,
    };
    tasks.push(tokio::spawn(summary::run(
        metrics.clone(),
        summary::SUMMARY_INTERVAL,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(poster.run(shutdown_rx)));
    Ok(RunningBridge {
        metrics,
        metrics_addr,
        shutdown,
        tasks,
        metrics_task,
    })
}

impl RunningBridge {
    /// Stops the consumers (each finishes the batch it holds: paid and
    /// acknowledged, or left to its lease) and the poster (receipts not yet
    /// delivered stay in the outbox for the next start).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        if let Some(task) = self.metrics_task.take() {
            task.abort();
        }
    }
}
