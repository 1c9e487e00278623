//! The message bus between the event system and the account bridge.
//!
//! [`MessageBus`] is the interface; [`EmbeddedBus`] the default, a durable
//! queue kept in the event store itself (the outbox). A payment instruction
//! enters the queue in the same write batch as its event's move to
//! PendingAccount, so no instruction is lost and none exists without its
//! state. Semantics, which a broker (NATS JetStream: a work-queue stream
//! with explicit acks and `AckWait` as the lease) can provide too:
//!
//! - **at least once**: `pull` leases up to N visible messages until a
//!   deadline; a message not acknowledged by then becomes visible again
//!   (with `attempt` one higher) and is handed out anew;
//! - `ack` by lease id (optionally naming some of its messages) takes them
//!   out of the queue; an unknown or expired lease is refused and nothing is
//!   written;
//! - the message id is the event id: the consumer dedups on it, which makes
//!   the payment exactly-once in effect;
//! - an acknowledged instruction whose receipt does not follow is put back
//!   by the reconciler with capped exponential backoff; a receipt removes
//!   the message for good.

use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::async_trait;
use lockstep_api::bus::{Delivery, Pulled};

use crate::store::{EventStore, StoreResult};
use lockstep_service::now_ms;

/// A queue of payment instructions with leases.
#[async_trait]
pub trait MessageBus: Send + Sync + std::fmt::Debug {
    /// Leases up to `max` visible messages for `lease`. Returns at once
    /// (possibly with none).
    async fn pull(&self, max: usize, lease: Duration) -> StoreResult<Pulled>;

    /// Acknowledges a lease's messages (all when `messages` is none);
    /// returns how many left the queue.
    async fn ack(&self, lease_id: &str, messages: Option<Vec<String>>) -> StoreResult<usize>;

    /// Messages not yet acknowledged.
    async fn depth(&self) -> StoreResult<u64>;
}

/// The queue kept in the event store.
#[derive(Debug, Clone)]
pub struct EmbeddedBus {
    store: Arc<EventStore>,
}

impl EmbeddedBus {
    /// A bus over `store`'s outbox.
    pub fn new(store: Arc<EventStore>) -> EmbeddedBus {
        EmbeddedBus { store }
    }
}

#[async_trait]
impl MessageBus for EmbeddedBus {
    async fn pull(&self, max: usize, lease: Duration) -> StoreResult<Pulled> {
        let (lease, messages) = self.store.pull(max, lease.as_millis() as u64, now_ms())?;
        Ok(Pulled {
            lease_id: lease.lease_id,
            deadline_ms: lease.deadline_ms,
            messages: messages.into_iter().map(Delivery::Message).collect(),
        })
    }

    async fn ack(&self, lease_id: &str, messages: Option<Vec<String>>) -> StoreResult<usize> {
        self.store.ack(lease_id, messages.as_deref(), now_ms())
    }

    async fn depth(&self) -> StoreResult<u64> {
        self.store.bus_depth()
    }
}
