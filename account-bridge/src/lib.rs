//! # lockstep-bridge
//!
//! The account bridge: consumes payment instructions from the message bus,
//! pays exactly once per event id in a double-entry ledger (SQLite by
//! default) and posts signed receipts back to the event system.
//!
//! Status: not built yet; the account-bridge issue fills this crate.
