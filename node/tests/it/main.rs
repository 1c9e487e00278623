//! In-process tests of a dev node: real RocksDB, real sockets on port 0.

#![allow(clippy::unwrap_used)] // Helpers outside #[test] functions unwrap too.

mod api;
mod bad_input;
mod cli;
mod crash;
mod harness;
mod tls;
mod transfers;
