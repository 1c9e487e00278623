//! Where a consumer takes its batches from ([`MessageSource`]): the event
//! system's embedded bus (`bus_pull` leases a batch, `bus_ack` takes it
//! out), or NATS JetStream (`--bus nats://...`: a durable pull consumer
//! shared by every bridge, each fetch bounded by `--batch`, each message
//! double-acked after the ledger commit). The consumer loop
//! ([`crate::consumer`]) is the same for both: pull, verify, pay, ack.
//!
//! ## The JetStream consumer
//!
//! [`JetStreamSource`] reads the stream the event system publishes to
//! (`--bus-stream`, which the event system creates) through the durable
//! pull consumer `--bus-consumer`, created on first use if missing, with
//! explicit acks, the ack wait set to `--lease` (a delivery not acked
//! within it is delivered again, to this bridge or another), unlimited
//! redelivery (`max_deliver` -1: an instruction is never given up on) and
//! no bound on pending acks beyond what each bridge fetches. Bridges
//! sharing the consumer share its messages: JetStream hands each to one
//! of them at a time. A consumer that exists already is used as it is;
//! one whose ack wait or delivery limit differs from ours is reported.
//!
//! A fetch returns at once with what is there (up to `--batch`); an empty
//! one is polled again as an empty embedded bus is. Every message is
//! hostile until verified: one larger than [`MAX_MESSAGE_BYTES`] or not
//! JSON becomes a [`Delivery::Undecodable`] (set aside and acked, as on
//! the embedded bus), and its `attempt` is JetStream's delivery count.
//!
//! The ack is a double ack: it waits for the server's confirmation. That
//! is still not what makes a payment happen once: an ack that comes after
//! the ack wait expired is confirmed too although the message was handed
//! out again (nats-server#5113), and a confirmed ack can be lost with a
//! server. The ledger's unique event id is what pays once; a failed or
//! doubtful ack only means a redelivery, which the ledger absorbs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::PullConsumer};
use futures::StreamExt;
use lockstep_api::broker::{NatsServers, DEFAULT_CONSUMER, DEFAULT_STREAM, MAX_MESSAGE_BYTES};
use lockstep_api::bus::{BusMessage, Delivery};
use tokio::sync::Mutex;

use crate::client::{ClientError, EventSystemClient};

/// Why a pull or an ack failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The event system's bus failed (transport or refusal).
    #[error(transparent)]
    EventSystem(#[from] ClientError),
    /// NATS failed (not reachable, no stream, refused).
    #[error("NATS: {0}")]
    Nats(String),
}

/// A pulled batch: its deliveries, and what acknowledges them.
#[derive(Debug)]
pub struct Batch {
    /// The messages, as delivered.
    pub deliveries: Vec<Delivery>,
    /// What acknowledges them ([`MessageSource::ack`]).
    pub ack: AckHandle,
}

/// What acknowledges a batch.
pub enum AckHandle {
    /// The embedded bus's lease.
    Lease(String),
    /// JetStream's deliveries, each acked on its own.
    JetStream(Vec<jetstream::Message>),
}

impl fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckHandle::Lease(id) => write!(f, "lease {id}"),
            AckHandle::JetStream(messages) => write!(f, "{} JetStream deliveries", messages.len()),
        }
    }
}

/// Where the consumers' batches come from; see the [module docs](self).
#[derive(Debug, Clone)]
pub enum MessageSource {
    /// The event system's embedded bus.
    EventSystem(EventSystemClient),
    /// NATS JetStream.
    JetStream(Arc<JetStreamSource>),
}

impl MessageSource {
    /// Up to `max` messages, held for `lease` (the embedded bus's lease;
    /// JetStream's is the consumer's ack wait). Returns at once.
    pub async fn pull(&self, max: usize, lease: Duration) -> Result<Batch, SourceError> {
        match self {
            MessageSource::EventSystem(client) => {
                let pulled = client.pull(max, lease).await?;
                Ok(Batch {
                    deliveries: pulled.messages,
                    ack: AckHandle::Lease(pulled.lease_id),
                })
            }
            MessageSource::JetStream(source) => source.fetch(max).await,
        }
    }

    /// Acknowledges a batch (after its commit).
    pub async fn ack(&self, handle: &AckHandle) -> Result<(), SourceError> {
        match (self, handle) {
            (MessageSource::EventSystem(client), AckHandle::Lease(lease)) => {
                client.ack(lease).await?;
                Ok(())
            }
            (_, AckHandle::JetStream(messages)) => JetStreamSource::ack(messages).await,
            (MessageSource::JetStream(_), AckHandle::Lease(_)) => Err(SourceError::Nats(
                "a lease of the embedded bus cannot be acked on JetStream".into(),
            )),
        }
    }

    /// Whether failures count as the broker's (else the event system's).
    pub fn is_broker(&self) -> bool {
        matches!(self, MessageSource::JetStream(_))
    }
}

/// Where the JetStream consumer is.
#[derive(Debug, Clone)]
pub struct JetStreamSettings {
    /// The servers (`--bus`).
    pub servers: NatsServers,
    /// The stream (`--bus-stream`).
    pub stream: String,
    /// The durable consumer (`--bus-consumer`).
    pub consumer: String,
    /// The consumer's ack wait, when this bridge creates it (`--lease`).
    pub ack_wait: Duration,
    /// Timeout of each call to NATS.
    pub timeout: Duration,
}

impl JetStreamSettings {
    /// The defaults for `servers`, with `ack_wait`.
    pub fn new(servers: NatsServers, ack_wait: Duration) -> JetStreamSettings {
        JetStreamSettings {
            servers,
            stream: DEFAULT_STREAM.into(),
            consumer: DEFAULT_CONSUMER.into(),
            ack_wait,
            timeout: Duration::from_secs(10),
        }
    }

    /// The consumer this bridge creates when none exists.
    pub fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.consumer.clone()),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: -1,
            max_ack_pending: -1,
            ..Default::default()
        }
    }
}

/// A durable pull consumer of the instruction stream; see the [module
/// docs](self).
pub struct JetStreamSource {
    jetstream: jetstream::Context,
    settings: JetStreamSettings,
    /// Found or made on first use, then kept (a clone per fetch).
    consumer: Mutex<Option<PullConsumer>>,
}

impl fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("servers", &self.settings.servers.to_string())
            .field("stream", &self.settings.stream)
            .field("consumer", &self.settings.consumer)
            .finish()
    }
}

fn nats(what: &str, e: impl fmt::Display) -> SourceError {
    SourceError::Nats(format!("{what}: {e}"))
}

impl JetStreamSource {
    /// A source on `settings`' servers. Returns at once: the client
    /// connects and reconnects in the background, for as long as it
    /// takes; fetches fail meanwhile.
    pub async fn connect(settings: JetStreamSettings) -> Result<JetStreamSource, SourceError> {
        let client = async_nats::ConnectOptions::new()
            .name("lockstep-bridge")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(settings.timeout)
            .request_timeout(Some(settings.timeout))
            .connect(settings.servers.urls())
            .await
            .map_err(|e| nats("connect", e))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(settings.timeout)
            .build(client);
        Ok(JetStreamSource {
            jetstream,
            settings,
            consumer: Mutex::new(None),
        })
    }

    /// The consumer, found or made on first use.
    async fn consumer(&self) -> Result<PullConsumer, SourceError> {
        let mut slot = self.consumer.lock().await;
        if let Some(consumer) = slot.as_ref() {
            return Ok(consumer.clone());
        }
        let settings = &self.settings;
        let stream = self
            .jetstream
            .get_stream(&settings.stream)
            .await
            .map_err(|e| {
                nats(
                    &format!(
                        "stream {:?} (the event system creates it with --bus)",
                        settings.stream
                    ),
                    e,
                )
            })?;
        let mut consumer: PullConsumer = stream
            .get_or_create_consumer(&settings.consumer, settings.consumer_config())
            .await
            .map_err(|e| nats(&format!("consumer {:?}", settings.consumer), e))?;
        let info = consumer
            .info()
            .await
            .map_err(|e| nats(&format!("consumer {:?}", settings.consumer), e))?;
        let config = &info.config;
        if config.ack_wait != settings.ack_wait || config.max_deliver > 0 {
            tracing::warn!(target: "lockstep::bridge", "NATS consumer {:?} exists with ack wait {:?} and max deliver {}: it is used as it is (this bridge's --lease {:?} does not apply to it)", settings.consumer, config.ack_wait, config.max_deliver, settings.ack_wait);
        }
        tracing::info!(target: "lockstep::bridge", "NATS consumer {:?} on stream {:?} ready: ack wait {:?}, {} pending", settings.consumer, settings.stream, config.ack_wait, info.num_pending);
        *slot = Some(consumer.clone());
        Ok(consumer)
    }

    /// Up to `max` messages there now.
    async fn fetch(&self, max: usize) -> Result<Batch, SourceError> {
        let consumer = self.consumer().await?;
        let mut fetched = match consumer.fetch().max_messages(max).messages().await {
            Ok(fetched) => fetched,
            Err(e) => {
                // The consumer (or its stream) may be gone: found or made
                // again at the next fetch.
                *self.consumer.lock().await = None;
                return Err(nats("fetch", e));
            }
        };
        let mut deliveries = Vec::new();
        let mut messages = Vec::new();
        // A fetch's answer can be lost with a server that dies: bounded,
        // so the consumer tries again rather than wait forever.
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        loop {
            let item = match tokio::time::timeout_at(deadline, fetched.next()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) if !messages.is_empty() => break,
                Err(_) => return Err(SourceError::Nats("fetch: no answer in time".into())),
            };
            match item {
                Ok(message) => {
                    deliveries.push(delivery(&message));
                    messages.push(message);
                }
                // What came before the error is ours to pay and ack; the
                // rest is delivered again after the ack wait.
                Err(e) if !messages.is_empty() => {
                    tracing::debug!(target: "lockstep::bridge", "NATS fetch ended early: {e}");
                    break;
                }
                Err(e) => return Err(nats("fetch", e)),
            }
        }
        Ok(Batch {
            deliveries,
            ack: AckHandle::JetStream(messages),
        })
    }

    /// Double-acks every message (concurrently); an error if any was not
    /// confirmed (those are delivered again, and absorbed).
    async fn ack(messages: &[jetstream::Message]) -> Result<(), SourceError> {
        let results = futures::future::join_all(messages.iter().map(|m| m.double_ack())).await;
        let failed: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        match failed.first() {
            None => Ok(()),
            Some(first) => Err(SourceError::Nats(format!(
                "{} of {} acks not confirmed (first: {first})",
                failed.len(),
                messages.len()
            ))),
        }
    }
}

/// One JetStream message as a delivery: bounded, decoded, with its
/// delivery count as `attempt`.
fn delivery(message: &jetstream::Message) -> Delivery {
    let payload = &message.payload;
    if payload.len() > MAX_MESSAGE_BYTES {
        return Delivery::Undecodable(serde_json::json!({
            "error": format!("{} bytes, more than {MAX_MESSAGE_BYTES}", payload.len())
        }));
    }
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(e) => {
            return Delivery::Undecodable(serde_json::json!({ "error": format!("not JSON: {e}") }))
        }
    };
    match serde_json::from_value::<BusMessage>(value.clone()) {
        Ok(mut decoded) => {
            if let Ok(info) = message.info() {
                decoded.attempt = u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX);
            }
            Delivery::Message(decoded)
        }
        Err(_) => Delivery::Undecodable(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_is_durable_explicit_and_never_gives_up() {
        let servers = match "nats://127.0.0.1:4222".parse() {
            Ok(lockstep_api::broker::BusChoice::Nats(servers)) => servers,
            other => panic!("{other:?}"),
        };
        let settings = JetStreamSettings::new(servers, Duration::from_secs(7));
        let config = settings.consumer_config();
        assert_eq!(config.durable_name.as_deref(), Some(DEFAULT_CONSUMER));
        assert_eq!(config.ack_policy, jetstream::consumer::AckPolicy::Explicit);
        assert_eq!(config.ack_wait, Duration::from_secs(7));
        assert_eq!(config.max_deliver, -1);
        // Only fields a 2.9 server knows are sent.
        let json = serde_json::to_value(&config).expect("json");
        for field in ["filter_subjects", "metadata", "priority_groups"] {
            assert!(json.get(field).is_none(), "{field} in {json}");
        }
    }
}
