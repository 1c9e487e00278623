//! Multi-process scenarios on real `lockstep-node` binaries over loopback.
//! Each scenario starts its own testnet; they run one at a time (see
//! [`harness::exclusive`]) so that two cores are not shared by twenty nodes.

mod agreement;
mod faults;
mod garbage;
mod harness;
mod resync;
