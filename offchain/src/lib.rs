//! # lockstep-offchain
//!
//! The off-chain event system: every transfer is registered here *before* it
//! is submitted to the chain, its outcome is confirmed with a quorum of nodes,
//! the fiat payment instruction leaves through a durable outbox and message
//! bus, and a reconciler re-checks and re-sends until every event is final
//! (`Completed` or `Cancelled`).
//!
//! Status: not built yet; the event-system issue fills this crate.
