//! # lockstep-tests
//!
//! Multi-process scenarios: real `lockstep-node`, `lockstep-offchain` and
//! `lockstep-bridge` binaries on loopback ports, faults injected by killing and
//! restarting processes, and the protocol's invariants checked at the end.
//!
//! Status: the scenarios arrive with the node, event-system and bridge issues.
