//! Integration tests of the account bridge: real SQLite files in temporary
//! directories; a real dev chain and event system on loopback where the
//! scenario needs events in PendingAccount; the real `lockstep-bridge`
//! binary where a process must die.

#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod bad_input;
mod conservation;
mod crash;
mod exactly_once;
mod failures;
mod harness;
mod postgres;
