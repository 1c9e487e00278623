//! The message bus on NATS JetStream (`lockstep-offchain run --bus
//! nats://...`): [`NatsBus`] implements [`MessageBus`] on a JetStream
//! stream, and its [`Relay`] makes the first send of every instruction
//! after the move that wrote it committed (see "The first send" in the
//! [parent module](super)).
//!
//! ## The stream
//!
//! One stream (`--bus-stream`, [`DEFAULT_STREAM`]) on one subject
//! (`--bus-subject`, [`DEFAULT_SUBJECT`]), created at first use if
//! missing, with
//!
//! - **work-queue retention**: a message leaves the stream when a bridge
//!   acknowledges it, so the stream holds exactly the instructions in
//!   flight (its message count is [`MessageBus::depth`]) and its disk use
//!   is bounded by the backlog, not by the history; JetStream refuses a
//!   second consumer whose filter overlaps, so every bridge must share one
//!   durable consumer, which is how they share the work. (Limits
//!   retention would keep every instruction until an age or size limit:
//!   a replay log nobody here reads, since the outbox is the source of
//!   truth, and a depth that needs the consumer's numbers.)
//! - **file storage**, `--bus-replicas` replicas (1 by default; 3 on a
//!   cluster that must survive the loss of a server);
//! - a **duplicate window** (`--bus-duplicate-window`, 2 minutes): a
//!   publish whose `Nats-Msg-Id` ([`Outgoing::dedup_id`], `event
//!   id:generation`) the stream saw within the window is acknowledged as a
//!   duplicate and not stored again. The relay's repeats after a crash or
//!   a lost acknowledgement (same generation) fall inside it; the
//!   reconciler's re-sends carry the next generation and get through. A
//!   repeat outside the window, or after the server lost its dedup state,
//!   is delivered twice, and the bridge's ledger pays it once.
//! - a largest message of [`MAX_MESSAGE_BYTES`].
//!
//! An existing stream is used as it is (an operator may have made it with
//! more replicas or other limits); one without work-queue retention, file
//! storage or our subject is reported at start, since the bridges rely on
//! the first two and publishes need the third.
//!
//! ## What a publish acknowledgement means
//!
//! That the stream's leader stored the message, not that it reached a disk
//! (JetStream syncs every two minutes unless told otherwise,
//! nats-server#7564). Nothing here relies on more: the outbox keeps every
//! instruction until its receipt, and the reconciler publishes again (the
//! next generation) what a broker lost.
//!
//! ## The relay
//!
//! [`Relay::run`] reads the store's transition feed (keys that are never
//! deleted, read from a cursor: flat in the history) from its cursor
//! (`relay_seq` in `meta`), publishes generation 0 of each transition into
//! PendingAccount whose event is still owed an instruction, waits for every
//! acknowledgement of the batch, and only then advances the cursor. A crash
//! or a broker failure before that re-publishes the batch with the same
//! generation, which the duplicate window drops. The first run on a store
//! starts at the end of the feed: instructions owed from before (a store
//! that ran with the embedded bus) are sent by the reconciler's re-sends.
//! While the broker is down the relay retries with capped exponential
//! backoff; the client reconnects by itself, for as long as it takes.
//!
//! `bus_pull` and `bus_ack` are refused ([`BusError::NotServed`]): bridges
//! consume from the stream.

use std::fmt;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, stream};
use jsonrpsee::core::async_trait;
use lockstep_api::broker::{
    NatsServers, DEFAULT_STREAM, DEFAULT_SUBJECT, MAX_MESSAGE_BYTES, MSG_ID_HEADER,
};
use lockstep_api::bus::Pulled;
use lockstep_api::lifecycle::State;
use lockstep_runtime::Keypair;
use lockstep_service::backoff;
use tokio::sync::watch;

use super::{BusError, BusResult, MessageBus, Outgoing, Published};
use crate::store::EventStore;

/// Most transitions the relay reads (and instructions it publishes at
/// once) per round.
pub const RELAY_BATCH: usize = 512;

/// The relay's longest pause between attempts while the broker fails.
const RELAY_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Where the stream is and how it is made.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// The servers (`--bus`).
    pub servers: NatsServers,
    /// The stream's name.
    pub stream: String,
    /// The subject instructions are published on.
    pub subject: String,
    /// The stream's duplicate window, when this bus creates it.
    pub duplicate_window: Duration,
    /// The stream's replicas, when this bus creates it.
    pub replicas: usize,
    /// How long a publish (or a JetStream API call) waits for its
    /// acknowledgement.
    pub timeout: Duration,
}

impl NatsSettings {
    /// The defaults for `servers`.
    pub fn new(servers: NatsServers) -> NatsSettings {
        NatsSettings {
            servers,
            stream: DEFAULT_STREAM.into(),
            subject: DEFAULT_SUBJECT.into(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            timeout: Duration::from_secs(5),
        }
    }

    /// The stream this bus creates when none exists.
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![self.subject.clone()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            max_message_size: MAX_MESSAGE_BYTES as i32,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        }
    }
}

/// The bus on a JetStream stream; see the [module docs](self). Cheap to
/// clone.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    jetstream: jetstream::Context,
    settings: NatsSettings,
    key: Keypair,
    /// The stream was found or made once: publishes need not ask again.
    stream_ready: AtomicBool,
}

impl fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBus")
            .field("servers", &self.inner.settings.servers.to_string())
            .field("stream", &self.inner.settings.stream)
            .field("subject", &self.inner.settings.subject)
            .finish()
    }
}

fn unavailable(what: &str, e: impl fmt::Display) -> BusError {
    BusError::Unavailable(format!("NATS {what}: {e}"))
}

impl NatsBus {
    /// A bus on `settings`' servers, signing with the event system's
    /// `key`. Returns at once: the client connects (and reconnects) in the
    /// background, for as long as it takes; calls fail with
    /// [`BusError::Unavailable`] meanwhile.
    pub async fn connect(settings: NatsSettings, key: Keypair) -> BusResult<NatsBus> {
        let client = async_nats::ConnectOptions::new()
            .name("lockstep-offchain")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(settings.timeout)
            .request_timeout(Some(settings.timeout))
            .connect(settings.servers.urls())
            .await
            .map_err(|e| unavailable("connect", e))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(settings.timeout)
            .ack_timeout(settings.timeout)
            .build(client);
        Ok(NatsBus {
            inner: Arc::new(Inner {
                jetstream,
                settings,
                key,
                stream_ready: AtomicBool::new(false),
            }),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &NatsSettings {
        &self.inner.settings
    }

    /// Finds the stream, or creates it ([`NatsSettings::stream_config`]);
    /// warns of an existing one the bridges cannot rely on.
    pub async fn ensure_stream(&self) -> BusResult<()> {
        if self.inner.stream_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let settings = &self.inner.settings;
        let mut stream = self
            .inner
            .jetstream
            .get_or_create_stream(settings.stream_config())
            .await
            .map_err(|e| unavailable(&format!("stream {:?}", settings.stream), e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| unavailable(&format!("stream {:?}", settings.stream), e))?;
        let config = &info.config;
        if !config.subjects.contains(&settings.subject) {
            return Err(BusError::Unavailable(format!(
                "NATS stream {:?} does not hold subject {:?} (it holds {:?})",
                settings.stream, settings.subject, config.subjects
            )));
        }
        if config.retention != stream::RetentionPolicy::WorkQueue
            || config.storage != stream::StorageType::File
        {
            tracing::warn!(target: "lockstep::offchain", "NATS stream {:?} has retention {:?} and storage {:?}: the bus is meant for work-queue retention on file storage (see the README)", settings.stream, config.retention, config.storage);
        }
        tracing::info!(target: "lockstep::offchain", "NATS stream {:?} ready: subject {:?}, {} replica(s), duplicate window {:?}, {} message(s)", settings.stream, settings.subject, config.num_replicas, config.duplicate_window, info.state.messages);
        self.inner.stream_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Signs the instruction and hands it to the client, with its dedup id;
    /// the acknowledgement is awaited by the caller.
    async fn send(&self, outgoing: &Outgoing) -> BusResult<PublishAckFuture> {
        let mut message = outgoing.message.clone();
        // Deliveries so far as the event system counts them: unsigned, a
        // hint for logs; the bridge pays on the event id.
        message.attempt = outgoing.generation.saturating_add(1);
        message.sign(&self.inner.key);
        let payload = serde_json::to_vec(&message)
            .map_err(|e| BusError::Unavailable(format!("encoding an instruction: {e}")))?;
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(BusError::Unavailable(format!(
                "instruction of event {:?} is {} bytes, more than {MAX_MESSAGE_BYTES}",
                outgoing.message.event_id,
                payload.len()
            )));
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .header(MSG_ID_HEADER, outgoing.dedup_id().as_str());
        self.inner
            .jetstream
            .send_publish(self.inner.settings.subject.clone(), publish)
            .await
            .map_err(|e| unavailable("publish", e))
    }

    /// The relay of new outbox entries (see the [module docs](self)).
    pub fn relay(&self, store: Arc<EventStore>) -> Relay {
        Relay {
            bus: self.clone(),
            store,
        }
    }
}

#[async_trait]
impl MessageBus for NatsBus {
    /// Publishes and waits for the stream's acknowledgement; a duplicate
    /// (the same generation, inside the window) is acknowledged too, and
    /// is [`Published::Sent`]: that copy is on its way.
    async fn publish(&self, outgoing: &Outgoing) -> BusResult<Published> {
        self.ensure_stream().await?;
        let ack = self.send(outgoing).await?;
        ack.await.map_err(|e| unavailable("publish ack", e))?;
        Ok(Published::Sent)
    }

    async fn pull(&self, _max: usize, _lease: Duration) -> BusResult<Pulled> {
        Err(BusError::NotServed)
    }

    async fn ack(&self, _lease_id: &str, _messages: Option<Vec<String>>) -> BusResult<usize> {
        Err(BusError::NotServed)
    }

    /// The stream's messages: with work-queue retention, those not yet
    /// acknowledged by a bridge.
    async fn depth(&self) -> BusResult<u64> {
        let settings = &self.inner.settings;
        let mut stream = self
            .inner
            .jetstream
            .get_stream(&settings.stream)
            .await
            .map_err(|e| unavailable(&format!("stream {:?}", settings.stream), e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| unavailable(&format!("stream {:?}", settings.stream), e))?;
        Ok(info.state.messages)
    }
}

/// Publishes every new outbox entry with generation 0 once its move has
/// committed; see the [module docs](self).
#[derive(Debug)]
pub struct Relay {
    bus: NatsBus,
    store: Arc<EventStore>,
}

impl Relay {
    /// Relays until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut feed = self.store.watch_seq();
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.round().await {
                Ok(0) => {
                    if failures > 0 {
                        tracing::info!(target: "lockstep::offchain", "NATS relay: publishing again after {failures} failed attempt(s)");
                    }
                    failures = 0;
                    // Caught up: wait for the next transitions.
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        changed = feed.changed() => if changed.is_err() { return },
                    }
                }
                Ok(_) => {
                    if failures > 0 {
                        tracing::info!(target: "lockstep::offchain", "NATS relay: publishing again after {failures} failed attempt(s)");
                    }
                    failures = 0;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(target: "lockstep::offchain", "NATS relay: {e}; retrying (attempt {failures})");
                    }
                    let pause = backoff(Duration::from_millis(100), RELAY_BACKOFF_CAP, failures);
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Relays one batch of transitions from the cursor: returns how many
    /// transitions it moved past (0: caught up).
    pub async fn round(&self) -> BusResult<usize> {
        // First of all, so that the stream exists before the first
        // instruction does (a bridge started first waits for it).
        self.bus.ensure_stream().await?;
        let read = self
            .store
            .blocking(|store| {
                let cursor = match store.relay_cursor()? {
                    Some(cursor) => cursor,
                    None => {
                        // First run on this store: from the end of the feed.
                        let start = store.next_seq();
                        store.set_relay_cursor(start)?;
                        tracing::info!(target: "lockstep::offchain", "NATS relay starts at transition {start}; instructions owed from before are sent by the reconciler's re-sends");
                        start
                    }
                };
                let transitions = store.transitions_from(cursor, RELAY_BATCH)?;
                let mut owed = Vec::new();
                for t in &transitions {
                    if t.to != State::PendingAccount {
                        continue;
                    }
                    // None: paid meanwhile (a re-send got there first).
                    if let Some(pending) = store.pending_instruction(&t.event_id)? {
                        owed.push(pending.message);
                    }
                }
                Ok((cursor, transitions.last().map(|t| t.seq), owed))
            })
            .await?;
        let (cursor, last, owed) = read;
        let Some(last) = last else {
            return Ok(0);
        };
        if !owed.is_empty() {
            // Every publish of the batch is sent before any ack is awaited.
            let mut acks = Vec::with_capacity(owed.len());
            for message in owed {
                let outgoing = Outgoing {
                    message,
                    generation: 0,
                };
                acks.push(self.bus.send(&outgoing).await?);
            }
            for ack in
                futures::future::join_all(acks.into_iter().map(|ack| ack.into_future())).await
            {
                ack.map_err(|e| unavailable("publish ack", e))?;
            }
        }
        self.store
            .blocking(move |store| store.set_relay_cursor(last + 1))
            .await?;
        Ok(usize::try_from(last + 1 - cursor).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Move;
    use lockstep_api::broker::BusChoice;
    use lockstep_api::event::{Evidence, PaymentInstruction, Registration};
    use lockstep_api::lifecycle::Reason;
    use lockstep_runtime::Hash;
    use lockstep_service::now_ms;
    use lockstep_service::test_utils::NatsServer;

    fn settings(server: &NatsServer) -> NatsSettings {
        match server.url().parse() {
            Ok(BusChoice::Nats(servers)) => NatsSettings::new(servers),
            other => panic!("{other:?}"),
        }
    }

    /// Moves event `id` to PendingAccount: its instruction is in the outbox.
    fn pending_event(store: &EventStore, id: &str, tx: u8) {
        let now = now_ms();
        let registration = Registration {
            id: id.into(),
            tx_hash: Hash([tx; 32]),
            valid_until: 100,
            payment: PaymentInstruction {
                payer: "bob".into(),
                payee: "alice".into(),
                amount: "100".into(),
                currency: "EUR".into(),
            },
        };
        store.register(&registration, now, now).expect("register");
        let moves = [Move {
            id: id.into(),
            reason: Reason::Succeeded,
            evidence: Some(Evidence {
                block_hash: Some(Hash([7; 32])),
                block_number: 5,
                outcome: Some(lockstep_runtime::Outcome::Success),
                confirmed_by: vec!["a".into()],
                nodes_asked: 1,
            }),
            proof: None,
        }];
        store.transition_many(&moves, now, now).expect("move");
    }

    #[tokio::test]
    async fn a_resend_with_the_next_generation_gets_through_and_a_repeat_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = NatsServer::start(dir.path(), "nats");
        let key = Keypair::dev("event-system");
        let bus = NatsBus::connect(settings(&server), key.clone())
            .await
            .expect("connect");
        bus.ensure_stream().await.expect("stream");
        let store = EventStore::open(&dir.path().join("events"), false).expect("open");
        pending_event(&store, "e1", 1);
        let owed = store
            .pending_instruction("e1")
            .expect("read")
            .expect("owed");
        let send = |generation| Outgoing {
            message: owed.message.clone(),
            generation,
        };
        let first = bus.send(&send(0)).await.expect("send").await.expect("ack");
        assert!(!first.duplicate);
        // The same generation again (a relay after a crash): dropped.
        let repeat = bus.send(&send(0)).await.expect("send").await.expect("ack");
        assert!(repeat.duplicate);
        assert_eq!(repeat.sequence, first.sequence);
        assert_eq!(bus.depth().await.expect("depth"), 1);
        // The reconciler's re-send: the next generation, a new message.
        assert_eq!(
            bus.publish(&send(1)).await.expect("publish"),
            Published::Sent
        );
        assert_eq!(bus.depth().await.expect("depth"), 2);
        // And its repeat is dropped in turn.
        let again = bus.send(&send(1)).await.expect("send").await.expect("ack");
        assert!(again.duplicate);
        assert_eq!(bus.depth().await.expect("depth"), 2);
        // The consumers read from the stream, not from the event system.
        assert!(matches!(
            bus.pull(10, Duration::from_secs(1)).await,
            Err(BusError::NotServed)
        ));
        assert!(matches!(
            bus.ack("lease-1", None).await,
            Err(BusError::NotServed)
        ));
    }

    #[tokio::test]
    async fn the_relay_publishes_each_new_instruction_once_from_its_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = NatsServer::start(dir.path(), "nats");
        let key = Keypair::dev("event-system");
        let bus = NatsBus::connect(settings(&server), key.clone())
            .await
            .expect("connect");
        let store = Arc::new(EventStore::open(&dir.path().join("events"), false).expect("open"));
        // Owed before the relay first ran: left to the reconciler.
        pending_event(&store, "before", 1);
        let relay = bus.relay(store.clone());
        assert_eq!(relay.round().await.expect("round"), 0);
        let start = store.relay_cursor().expect("cursor").expect("written");
        assert_eq!(start, store.next_seq());

        pending_event(&store, "e1", 2);
        pending_event(&store, "e2", 3);
        // Two registrations and two moves, two of them into PendingAccount.
        assert_eq!(relay.round().await.expect("round"), 4);
        assert_eq!(relay.round().await.expect("round"), 0);
        assert_eq!(bus.depth().await.expect("depth"), 2);
        assert_eq!(store.relay_cursor().expect("cursor"), Some(start + 4));

        // A crash before the cursor was written: the same batch again,
        // dropped as duplicates.
        store.set_relay_cursor(start).expect("rewind");
        assert_eq!(relay.round().await.expect("round"), 4);
        assert_eq!(bus.depth().await.expect("depth"), 2);

        // What is published is signed by the event system's key.
        let stream = bus
            .inner
            .jetstream
            .get_stream(DEFAULT_STREAM)
            .await
            .expect("stream");
        let raw = stream.get_raw_message(1).await.expect("first message");
        let message: lockstep_api::bus::BusMessage =
            serde_json::from_slice(&raw.payload).expect("a bus message");
        assert_eq!(message.event_id, "e1");
        assert_eq!(message.verify(&key.public()), Ok(()));
        let id = raw
            .headers
            .get(MSG_ID_HEADER)
            .map(|v| v.as_str().to_owned());
        assert_eq!(id.as_deref(), Some("e1:0"));
    }
}
