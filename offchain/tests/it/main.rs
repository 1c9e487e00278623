//! Integration tests of the event system: against real in-process dev
//! nodes (with fault injection around them: a lying proxy, a node that is
//! down), bad input, and kill -9 of the real binary.

#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod api;
mod bad_input;
mod chain;
mod crash;
mod harness;
mod proofs;
mod quorum;
mod registered_bound;
mod subscribe;
mod tls;
