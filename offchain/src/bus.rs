//! The message bus between the event system and the account bridge.
//!
//! [`MessageBus`] is the interface; [`EmbeddedBus`] the default
//! implementation: a durable queue kept in the event store itself.
//! [`nats::NatsBus`] implements the same trait on a broker (NATS
//! JetStream: a work-queue stream that the bridges read with a durable
//! pull consumer, explicit acks and `AckWait` as the lease).
//!
//! ## Who does what
//!
//! - **The event system's outbox** (in the [`EventStore`]) is the source of
//!   truth: a payment instruction is written there in the same write batch
//!   as its event's move to PendingAccount, so no instruction is lost and
//!   none exists without its state; it stays there until the receipt
//!   arrives, however the bus fares meanwhile.
//! - **The bus** carries instructions from the outbox to consumers
//!   ([`MessageBus::publish`]); consumers [`pull`](MessageBus::pull) and
//!   [`ack`](MessageBus::ack). Leases, acknowledgement and redelivery of
//!   unacknowledged messages are the bus's business.
//! - **The reconciler** decides *when* an instruction whose receipt has not
//!   come is sent again (capped exponential backoff) and hands that send to
//!   the bus, with the next generation number.
//!
//! ## Semantics every implementation keeps
//!
//! - **at least once**: `pull` leases up to N visible messages until a
//!   deadline; a message not acknowledged by then becomes visible again
//!   (with `attempt` one higher) and is handed out anew;
//! - `ack` by lease id (optionally naming some of its messages) takes them
//!   out of the queue; an unknown or expired lease, or a message the lease
//!   does not hold, is refused and nothing changes;
//! - the message id is the event id: the consumer dedups on it, which makes
//!   the payment exactly-once in effect;
//! - **every message handed out is signed** by the event system's own key
//!   ([`BusMessage::sign`], the bytes in [`lockstep_api::bus`]): the bridge
//!   pays nothing else, so access to the bus (a broker's publishers) is no
//!   way to order a payment;
//! - each send has a generation ([`Outgoing::generation`]): 0 for the first
//!   send, n for the n-th re-send; a broker dedups on
//!   [`Outgoing::dedup_id`] (`event id:generation`), so a send repeated
//!   after a crash is dropped while a deliberate re-send gets through (a
//!   dedup window keyed on the event id alone would swallow it).
//!
//! ## Where instructions are signed
//!
//! When they leave: the outbox keeps each instruction unsigned, and the bus
//! signs every delivery ([`EmbeddedBus::pull`]; a broker's relay signs what
//! it publishes). So the store's format is unchanged (entries written
//! before signing existed are delivered signed like any other), a new key
//! (`--key-file`) applies at once to every instruction still owed, and no
//! signature on disk can go stale. The signature does not cover `attempt`,
//! so a redelivery carries the same signed content. The cost is one
//! signature per delivery, about as much as one per instruction, since
//! redeliveries are rare.
//!
//! ## The first send
//!
//! The embedded bus's queue lives in the same RocksDB as the outbox, so its
//! first send is part of the move's own write batch: when the move commits,
//! the message is already queued, and nothing calls `publish` with
//! generation 0. A broker cannot join that batch; its implementation must
//! instead **relay from the outbox after the commit**: publish each new
//! outbox entry with generation 0 (and again, with the same generation,
//! after a crash until the broker confirmed it), and never delete the
//! outbox entry itself: only the receipt does. A broker that loses an
//! acknowledged message only delays the payment until the reconciler's
//! next re-send.

use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::async_trait;
use lockstep_api::bus::{BusMessage, Delivery, Pulled};
use lockstep_runtime::{AccountId, Keypair};

use crate::store::{EventStore, Requeue, StoreError};
use lockstep_service::now_ms;

pub mod nats;

/// How long the embedded bus keeps an expired lease before pruning it: an
/// ack in that window is refused as expired (2021), later as unknown (2020).
pub const EXPIRED_LEASE_RETENTION: Duration = Duration::from_secs(60);

/// Why a bus operation failed. The first three are refusals of the
/// consumer's request (nothing changed); the others are failures.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No lease has this id (never issued, fully acknowledged, or pruned).
    #[error("unknown lease {0:?}")]
    UnknownLease(String),
    /// The lease's deadline has passed; its messages are back in the queue.
    #[error("lease {0:?} has expired; its messages were returned to the queue")]
    LeaseExpired(String),
    /// A message id that the lease does not hold.
    #[error("lease {lease:?} does not hold message {message:?}")]
    NotInLease {
        /// The lease.
        lease: String,
        /// The message.
        message: String,
    },
    /// The bus could not be reached or did not confirm: whether the request
    /// took effect is unknown, and the caller tries again later (a broker's
    /// failure; the embedded bus fails with [`BusError::Store`]).
    #[error("message bus unavailable: {0}")]
    Unavailable(String),
    /// The bus is a broker: consumers read from it, not through the event
    /// system (`bus_pull` and `bus_ack` are not served).
    #[error("the message bus is a broker (NATS JetStream): bridges consume from it with `--bus`, not through bus_pull/bus_ack")]
    NotServed,
    /// The event store failed (it holds the outbox, and the embedded bus's
    /// queue).
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for BusError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownLease(lease) => BusError::UnknownLease(lease),
            StoreError::LeaseExpired(lease) => BusError::LeaseExpired(lease),
            StoreError::NotInLease { lease, message } => BusError::NotInLease { lease, message },
            other => BusError::Store(other),
        }
    }
}

/// The bus's `Result`.
pub type BusResult<T> = Result<T, BusError>;

/// One send of a payment instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The instruction, as the outbox holds it (unsigned: the bus signs
    /// what it delivers).
    pub message: BusMessage,
    /// 0 for the first send, n for the n-th re-send (the event's `resends`
    /// once this send is recorded).
    pub generation: u32,
}

impl Outgoing {
    /// The id a broker dedups this send on: `event id:generation`.
    pub fn dedup_id(&self) -> String {
        format!("{}:{}", self.message.message_id, self.generation)
    }
}

/// What [`MessageBus::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The bus accepted this send: a delivery of the message is on its way
    /// (for a broker, also when it dropped the send as a duplicate of the
    /// same generation: that one is on its way). The reconciler counts a
    /// resend.
    Sent,
    /// The bus still holds an undelivered or unacknowledged copy of the
    /// message, which it will deliver (or redeliver) anyway: nothing was
    /// added, no resend is counted.
    StillQueued,
    /// Nothing was owed any more (the receipt arrived meanwhile): nothing
    /// was sent.
    Settled,
}

/// A queue of payment instructions with leases. See the module docs for
/// the division of work between the outbox, the bus and the reconciler.
///
/// Calls may come concurrently (RPC handlers and the reconciler); each
/// must be atomic on its own.
#[async_trait]
pub trait MessageBus: Send + Sync + std::fmt::Debug {
    /// Hands one send of an instruction to the bus.
    ///
    /// Called by the reconciler when a PendingAccount event's re-send is
    /// due, with the outbox's message and the next generation (and, for a
    /// broker, by its relay with generation 0 after the move committed).
    /// `Ok` means the outcome is durable in the bus ([`Published`] says
    /// which); an error means nothing is known to have happened, and the
    /// reconciler tries again at its next pass with the same generation, so
    /// an implementation must accept a repeated `(message id, generation)`
    /// without delivering it twice.
    async fn publish(&self, outgoing: &Outgoing) -> BusResult<Published>;

    /// Leases up to `max` visible messages (at most
    /// [`lockstep_api::bus::MAX_PULL`]) for `lease`. Called by `bus_pull`
    /// for a consumer. Returns at once, possibly with no message (then the
    /// lease id cannot be acked). Each message's `attempt` counts its
    /// deliveries, this one included; a message not acknowledged before
    /// the deadline becomes visible again. Every message is signed by the
    /// event system's key.
    async fn pull(&self, max: usize, lease: Duration) -> BusResult<Pulled>;

    /// Acknowledges a lease's messages (all of them when `messages` is
    /// none); returns how many left the queue (fewer than named when some
    /// were settled or re-leased meanwhile). Called by `bus_ack`.
    /// Refusals, with nothing changed: [`BusError::UnknownLease`],
    /// [`BusError::LeaseExpired`] (its messages are back in the queue),
    /// [`BusError::NotInLease`].
    async fn ack(&self, lease_id: &str, messages: Option<Vec<String>>) -> BusResult<usize>;

    /// Messages not yet acknowledged, leased or not.
    async fn depth(&self) -> BusResult<u64>;

    /// Forgets leases that expired long ago. Called by the reconciler on
    /// every pass; a bus that keeps no such bookkeeping (a broker) does
    /// nothing. Returns how many were forgotten.
    async fn prune_expired_leases(&self) -> BusResult<usize> {
        Ok(0)
    }
}

/// The queue kept in the event store (see `store/queue.rs` for its layout):
/// at most one copy of each instruction, keyed by event id, so it needs no
/// generation to dedup. It signs each message it hands out with `key`.
#[derive(Debug, Clone)]
pub struct EmbeddedBus {
    store: Arc<EventStore>,
    key: Arc<Keypair>,
}

impl EmbeddedBus {
    /// A bus over `store`'s outbox, signing with the event system's `key`.
    pub fn new(store: Arc<EventStore>, key: Keypair) -> EmbeddedBus {
        EmbeddedBus {
            store,
            key: Arc::new(key),
        }
    }

    /// The public key it signs with: the one a bridge is given as
    /// `--event-system-key`.
    pub fn signing_key(&self) -> AccountId {
        self.key.public()
    }
}

#[async_trait]
impl MessageBus for EmbeddedBus {
    /// Puts an acknowledged (and unreceipted) message back in the queue,
    /// visible now; a message still queued or leased is left as it is. The
    /// queue's copy is the outbox's: `outgoing.message` only names it.
    async fn publish(&self, outgoing: &Outgoing) -> BusResult<Published> {
        let id = outgoing.message.event_id.clone();
        let requeued = self
            .store
            .blocking(move |store| store.requeue(&id, now_ms()))
            .await?;
        Ok(match requeued {
            Requeue::Requeued => Published::Sent,
            Requeue::StillQueued => Published::StillQueued,
            Requeue::NotInOutbox => Published::Settled,
        })
    }

    /// Leases from the store's queue (off the async workers: a pull that
    /// leases writes, and waits for its fsync), then signs each message:
    /// outside the store's writer lock, so signing never holds up a write.
    async fn pull(&self, max: usize, lease: Duration) -> BusResult<Pulled> {
        let lease_ms = lease.as_millis() as u64;
        let key = self.key.clone();
        let pulled = self
            .store
            .blocking(move |store| {
                let (lease, messages) = store.pull(max, lease_ms, now_ms())?;
                Ok(Pulled {
                    lease_id: lease.lease_id,
                    deadline_ms: lease.deadline_ms,
                    messages: messages
                        .into_iter()
                        .map(|message| Delivery::Message(message.signed(&key)))
                        .collect(),
                })
            })
            .await?;
        Ok(pulled)
    }

    async fn ack(&self, lease_id: &str, messages: Option<Vec<String>>) -> BusResult<usize> {
        let lease_id = lease_id.to_owned();
        Ok(self
            .store
            .blocking(move |store| store.ack(&lease_id, messages.as_deref(), now_ms()))
            .await?)
    }

    async fn depth(&self) -> BusResult<u64> {
        Ok(self.store.bus_depth()?)
    }

    async fn prune_expired_leases(&self) -> BusResult<usize> {
        let before = now_ms().saturating_sub(EXPIRED_LEASE_RETENTION.as_millis() as u64);
        Ok(self
            .store
            .blocking(move |store| store.prune_leases(before))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Move;
    use lockstep_api::event::{Evidence, PaymentInstruction, Registration};
    use lockstep_api::lifecycle::{Reason, State};
    use lockstep_runtime::Hash;

    fn pending_event(store: &EventStore, id: &str) {
        let now = now_ms();
        store
            .register(
                &Registration {
                    id: id.into(),
                    tx_hash: Hash([1; 32]),
                    valid_until: 100,
                    payment: PaymentInstruction {
                        payer: "bob".into(),
                        payee: "alice".into(),
                        amount: "100".into(),
                        currency: "EUR".into(),
                    },
                },
                now,
                now,
            )
            .expect("register");
        let moved = store
            .transition_many(
                &[Move {
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
                }],
                now,
                now,
            )
            .expect("move");
        assert_eq!(
            moved[0].as_ref().expect("moved").state,
            State::PendingAccount
        );
    }

    #[tokio::test]
    async fn embedded_bus_delivers_resends_and_refuses_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(EventStore::open(dir.path(), false).expect("open"));
        pending_event(&store, "e1");
        let key = Keypair::dev("event-system");
        let bus = EmbeddedBus::new(store.clone(), key.clone());
        assert_eq!(bus.signing_key(), key.public());
        let owed = store
            .pending_instruction("e1")
            .expect("read")
            .expect("owed");
        let resend = Outgoing {
            message: owed.message,
            generation: owed.resends + 1,
        };
        assert_eq!(resend.dedup_id(), "e1:1");
        // The first send was part of the move: a re-send now adds nothing.
        assert_eq!(
            bus.publish(&resend).await.expect("publish"),
            Published::StillQueued
        );
        assert_eq!(bus.depth().await.expect("depth"), 1);

        let pulled = bus.pull(10, Duration::from_secs(60)).await.expect("pull");
        assert_eq!(pulled.messages.len(), 1);
        // Signed on the way out, over what the outbox holds.
        match pulled.messages.as_slice() {
            [Delivery::Message(m)] => {
                assert_eq!(m.verify(&key.public()), Ok(()));
                assert_eq!(m.signing_bytes(), resend.message.signing_bytes());
                assert!(m.verify(&Keypair::dev("forger").public()).is_err());
            }
            other => panic!("expected one message, got {other:?}"),
        }
        assert!(matches!(
            bus.ack(&pulled.lease_id, Some(vec!["e2".into()])).await,
            Err(BusError::NotInLease { .. })
        ));
        assert_eq!(bus.ack(&pulled.lease_id, None).await.expect("ack"), 1);
        assert!(matches!(
            bus.ack(&pulled.lease_id, None).await,
            Err(BusError::UnknownLease(_))
        ));
        assert_eq!(bus.depth().await.expect("depth"), 0);

        // Acknowledged without a receipt: the re-send puts it back.
        assert_eq!(
            bus.publish(&resend).await.expect("publish"),
            Published::Sent
        );
        let again = bus.pull(10, Duration::from_secs(60)).await.expect("pull");
        match again.messages.as_slice() {
            [Delivery::Message(m)] => {
                assert_eq!((m.event_id.as_str(), m.attempt), ("e1", 2));
                assert_eq!(m.verify(&key.public()), Ok(()));
            }
            other => panic!("expected one message, got {other:?}"),
        }
        assert_eq!(bus.prune_expired_leases().await.expect("prune"), 0);
    }
}
