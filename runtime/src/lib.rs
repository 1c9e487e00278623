//! # lockstep-runtime
//!
//! The chain's primitives and its deterministic state transition. No I/O, no
//! async, no clock: every function here
//! is a pure function of its inputs, so every node that executes the same
//! block on the same state gets the same receipts and the same roots.
//!
//! ## Layout
//!
//! - [`primitives`]: `AccountId`, `Hash`, `AssetId`, `Balance`, `Nonce`,
//!   `BlockNumber`; `0x`-hex text forms.
//! - [`crypto`]: ed25519 keypairs (random, from a seed, dev names), single
//!   and batch verification.
//! - [`transaction`]: calls and signed transactions; the signing payload binds
//!   the genesis hash and spec version.
//! - [`block`]: headers, blocks, receipts, validator sets, justifications.
//! - [`state`]: the storage trait, the in-memory store, the per-block overlay.
//! - [`smt`]: the sparse Merkle tree behind the state root.
//! - [`merkle`]: binary Merkle roots and proofs for transactions and receipts.
//! - [`execution`]: includability, dispatch, executing, building and checking
//!   blocks. Start reading here.
//! - [`genesis`]: the JSON chain spec and the genesis block it defines.
//! - [`codec`]: bounded decoding of untrusted bytes.
//!
//! All consensus-critical encodings are SCALE (`parity-scale-codec`).

pub mod block;
pub mod codec;
pub mod crypto;
pub mod execution;
pub mod genesis;
pub mod merkle;
pub mod primitives;
pub mod smt;
pub mod state;
pub mod transaction;

pub use block::{
    Block, DispatchError, Header, Justification, JustificationError, Outcome, Receipt, ValidatorSet,
};
pub use crypto::{Keypair, Signature};
pub use execution::{BlockError, BlockLimits, BlockTemplate, Built, Candidates, Executed, TxError};
pub use genesis::{ChainSpec, Genesis, SpecError, DEFAULT_MAX_VALIDITY_BLOCKS};
pub use primitives::{AccountId, AssetId, Balance, BlockNumber, Hash, Nonce};
pub use state::{MemoryStore, StateError, StateReader, StateStore};
pub use transaction::{
    expired_after, includable_at, within_validity_window, Call, SignedTx, SigningContext,
    MAX_TX_SIZE, SPEC_VERSION,
};
