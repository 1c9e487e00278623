//! # lockstep-tests
//!
//! Multi-process scenarios: real `lockstep-node`, `lockstep-offchain` and
//! `lockstep-bridge` binaries on loopback ports, faults injected by killing and
//! restarting processes, and the protocol's invariants checked at the end.
//!
//! The scenarios are one integration binary, `tests/it/main.rs`, a module
//! per scenario; `tests/it/harness.rs` builds the `lockstep-node` binary
//! once, writes a chain spec and keys, and starts, kills (SIGKILL), wipes
//! and restarts node processes. Run them with `cargo test -p lockstep-tests`.
//!
//! Present: the 4-validator testnet scenarios of the networking issue
//! (finality and agreement, a validator killed and restarted, two killed,
//! a wiped node resyncing, a peer sending garbage). The event-system and
//! bridge scenarios arrive with their issues.
