//! Each payment bound to its transfer: the transfer of every PendingAccount
//! or Completed event carries in its `reference` the
//! [`settlement_commitment`](lockstep_api::event::settlement_commitment) of
//! the event id and payment instruction; that of an event Cancelled as not
//! committed does not.
//!
//! The transfer's bytes come from the finalized block the quorum found it
//! in, from the first node that serves them. Bytes whose SHA-256 is the
//! transfer's hash are the transfer itself, so a node can withhold them but
//! not forge them. A PendingAccount or Completed event whose transfer does
//! not commit is a payment made (or owed) on the strength of someone else's
//! transfer; a Cancelled one whose transfer does commit is a payment its
//! payee is owed and will never get. A transfer no node serves is noted,
//! not judged.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{stream, StreamExt};
use lockstep_api::event::{bytes_commit_to, Event};
use lockstep_api::node::ChainApiClient;
use lockstep_runtime::primitives::from_hex;
use lockstep_runtime::Hash;
use serde_json::{json, Value};

use super::Findings;
use crate::chain::NodeClient;

/// What an event says of its transfer's commitment, to be checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Claim<'a> {
    /// The event.
    pub event: &'a Event,
    /// The finalized block that holds its transfer.
    pub block: Hash,
    /// PendingAccount or Completed: the transfer settles the event. False
    /// for an event Cancelled as not committed.
    pub settles: bool,
}

/// Checks every claim against its transfer's bytes.
pub(super) async fn check_commitments(
    nodes: &[NodeClient],
    concurrency: usize,
    claims: &[Claim<'_>],
    findings: &mut Findings,
) -> Value {
    let mut wanted: BTreeMap<Hash, HashSet<Hash>> = BTreeMap::new();
    for claim in claims {
        wanted
            .entry(claim.block)
            .or_default()
            .insert(claim.event.tx_hash);
    }
    let mut bodies: HashMap<Hash, Vec<u8>> = HashMap::new();
    let mut fetches = stream::iter(
        wanted
            .iter()
            .map(|(block, txs)| transfers_in_block(nodes, *block, txs)),
    )
    .buffer_unordered(concurrency.max(1));
    while let Some(found) = fetches.next().await {
        bodies.extend(found);
    }

    let (mut committed, mut not_committed, mut unchecked) = (0u64, 0u64, 0u64);
    for claim in claims {
        let event = claim.event;
        let id = Some(event.id.as_str());
        let Some(bytes) = bodies.get(&event.tx_hash) else {
            unchecked += 1;
            findings.notes.push(format!(
                "event {}: no node served transfer {} from block {}; its commitment was not checked",
                event.id, event.tx_hash, claim.block
            ));
            continue;
        };
        match (
            bytes_commit_to(bytes, &event.id, &event.payment),
            claim.settles,
        ) {
            (Ok(()), true) => committed += 1,
            (Err(e), true) => {
                not_committed += 1;
                findings.violation(
                    "not-committed",
                    id,
                    format!(
                        "{}, but its transfer {} (block {}) does not commit to it: {e}",
                        event.state, event.tx_hash, claim.block
                    ),
                );
            }
            (Err(_), false) => not_committed += 1,
            (Ok(()), false) => {
                committed += 1;
                findings.violation(
                    "cancelled-transfer-succeeded",
                    id,
                    format!(
                        "Cancelled as not committed, but its transfer {} (block {}) commits to it and succeeded: its payment is owed",
                        event.tx_hash, claim.block
                    ),
                );
            }
        }
    }
    json!({
        "checked": claims.len() as u64 - unchecked,
        "committed": committed,
        "notCommitted": not_committed,
        "unchecked": unchecked,
    })
}

/// The bytes of the transactions `txs` in block `block`, from the nodes in
/// order until every one is found (a node that does not answer, or serves a
/// copy without some of them, is passed over).
async fn transfers_in_block(
    nodes: &[NodeClient],
    block: Hash,
    txs: &HashSet<Hash>,
) -> HashMap<Hash, Vec<u8>> {
    let mut found = HashMap::with_capacity(txs.len());
    for node in nodes {
        if found.len() == txs.len() {
            break;
        }
        let Ok(Some(signed)) = node.http.block(Some(block)).await else {
            continue;
        };
        for hex in &signed.block.extrinsics {
            if let Ok(bytes) = from_hex(hex) {
                let hash = Hash::digest(&bytes);
                if txs.contains(&hash) {
                    found.insert(hash, bytes);
                }
            }
        }
    }
    found
}
