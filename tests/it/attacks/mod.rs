//! Attacks on a running system, as a stranger on the same machine would
//! try them: real processes over loopback, one test per attack, each
//! asserting the refusal and that nothing was paid or moved.

mod auth;
mod commitment;
mod signatures;
