//! Integration tests of the runtime, one binary with a module per concern.

#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions unwrap too.

mod chain;
mod codec;
mod execution;
