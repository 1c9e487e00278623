//! Multi-process scenarios on real binaries over loopback: testnets of
//! `lockstep-node` validators, and the whole system with the event system
//! and the account bridge. Each scenario starts its own processes; they run
//! one at a time (see [`harness::exclusive`]) so that two cores are not
//! shared by twenty nodes.

mod agreement;
mod attacks;
mod chaos;
mod end_to_end;
mod faultnet;
mod faults;
mod garbage;
mod harness;
mod load;
mod nats;
mod partitions;
mod pauses;
mod resync;
mod seeded;
mod system;
mod tls;
