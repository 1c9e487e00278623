//! The chain's side, event by event: each transfer's outcome as a quorum of
//! nodes reports it (`tx_getStatus`, batched), against the event's state
//! and evidence. The transfers whose commitment to their event must then be
//! checked ([`commitment`](super::commitment)) are collected as claims.

use std::collections::HashSet;

use anyhow::bail;
use futures::{stream, StreamExt, TryStreamExt};
use lockstep_api::event::Event;
use lockstep_api::lifecycle::State;
use lockstep_api::node::{TxState, TxStatusView};
use lockstep_api::quorum::{decide, Decision};
use lockstep_runtime::Hash;
use serde_json::{json, Value};

use super::commitment::Claim;
use super::{Findings, NODE_BATCH};
use crate::chain::NodeClient;

/// Checks every non-Registered event's transfer on the quorum. `not_committed`
/// holds the events Cancelled as not committed: a successful transfer is
/// expected for them, and is claimed (in `claims`) not to commit; every
/// PendingAccount or Completed event with a successful transfer is claimed
/// to commit.
pub(super) async fn check_chain<'a>(
    nodes: &[NodeClient],
    threshold: usize,
    concurrency: usize,
    all: &'a [Event],
    not_committed: &HashSet<String>,
    claims: &mut Vec<Claim<'a>>,
    findings: &mut Findings,
) -> anyhow::Result<Value> {
    // Registered events have no on-chain claim to check.
    let checked: Vec<&'a Event> = all
        .iter()
        .filter(|e| e.state != State::Registered)
        .collect();
    let hashes: Vec<Hash> = checked.iter().map(|e| e.tx_hash).collect();
    let per_node = futures::future::join_all(nodes.iter().map(|node| async {
        let chunks: Vec<&[Hash]> = hashes.chunks(NODE_BATCH).collect();
        let answers: Vec<Vec<Option<TxStatusView>>> = stream::iter(chunks)
            .map(|chunk| node.tx_statuses(chunk))
            .buffered(concurrency)
            .try_collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(answers.into_iter().flatten().collect::<Vec<_>>())
    }))
    .await;
    let mut reachable = 0;
    let mut columns = Vec::new();
    for (node, answers) in nodes.iter().zip(per_node) {
        match answers {
            Ok(answers) => {
                reachable += 1;
                columns.push(Some(answers));
            }
            Err(e) => {
                findings
                    .notes
                    .push(format!("node {} did not answer: {e}", node.url));
                columns.push(None);
            }
        }
    }
    if !hashes.is_empty() && reachable < threshold {
        bail!(
            "only {reachable} of {} nodes answered; the quorum needs {threshold}: the chain cannot be audited",
            nodes.len()
        );
    }
    let (mut succeeded, mut failed, mut expired, mut undecided) = (0u64, 0u64, 0u64, 0u64);
    for (i, &event) in checked.iter().enumerate() {
        let id = Some(event.id.as_str());
        let answers: Vec<(String, Option<TxStatusView>)> = nodes
            .iter()
            .zip(&columns)
            .map(|(node, column)| {
                (
                    node.url.clone(),
                    column.as_ref().and_then(|c| c.get(i).cloned().flatten()),
                )
            })
            .collect();
        let decision = decide(&answers, event.valid_until, threshold);
        let quorum_success = match &decision {
            Decision::Included {
                outcome,
                block_hash,
                block_number,
                ..
            } => {
                if outcome.is_success() {
                    succeeded += 1;
                } else {
                    failed += 1;
                }
                outcome.is_success().then_some((*block_hash, *block_number))
            }
            Decision::Expired { .. } => {
                expired += 1;
                None
            }
            Decision::Undecided {
                disagreement,
                answered,
            } => {
                undecided += 1;
                if *disagreement {
                    findings.violation(
                        "nodes-disagree",
                        id,
                        format!(
                            "nodes answer differently for transfer {}: {}",
                            event.tx_hash,
                            describe_answers(&answers)
                        ),
                    );
                } else if event.state != State::Cancelled {
                    findings.notes.push(format!(
                        "event {}: no quorum on transfer {} ({answered} of {} nodes answered)",
                        event.id,
                        event.tx_hash,
                        nodes.len()
                    ));
                }
                None
            }
        };
        match event.state {
            State::Completed | State::PendingAccount => {
                // The move to PendingAccount records the quorum's evidence,
                // and the receipt keeps it: without it the event cannot
                // show what it was confirmed on.
                if event.evidence.is_none() {
                    findings.violation(
                        "evidence-missing",
                        id,
                        format!(
                            "{} without the evidence of its transfer's outcome",
                            event.state
                        ),
                    );
                }
                match quorum_success {
                    Some((block_hash, block_number)) => {
                        claims.push(Claim {
                            event,
                            block: block_hash,
                            settles: true,
                        });
                        if let Some(evidence) = &event.evidence {
                            if evidence.block_hash != Some(block_hash) {
                                findings.violation(
                                    "evidence-mismatch",
                                    id,
                                    format!(
                                        "the event's evidence names block {:?}, the quorum finds the transfer in #{block_number} {block_hash}",
                                        evidence.block_hash
                                    ),
                                );
                            }
                        }
                    }
                    None => findings.violation(
                        "transfer-missing",
                        id,
                        format!(
                            "{} but no quorum of nodes has transfer {} finalized and successful ({})",
                            event.state,
                            event.tx_hash,
                            describe_answers(&answers)
                        ),
                    ),
                }
            }
            State::Cancelled => {
                let successes: Vec<(&str, &TxStatusView)> = answers
                    .iter()
                    .filter_map(|(url, a)| {
                        a.as_ref()
                            .filter(|a| {
                                a.status == TxState::Finalized
                                    && a.outcome.is_some_and(|o| o.is_success())
                            })
                            .map(|a| (url.as_str(), a))
                    })
                    .collect();
                let claiming: Vec<&str> = successes.iter().map(|(url, _)| *url).collect();
                // Cancelled as not committed: its transfer may well have
                // succeeded, and must then not commit to the event.
                let block = quorum_success
                    .map(|(hash, _)| hash)
                    .or_else(|| event.evidence.as_ref().and_then(|e| e.block_hash))
                    .or_else(|| successes.first().and_then(|(_, a)| a.block_hash));
                if !claiming.is_empty() && not_committed.contains(&event.id) {
                    if let Some(block) = block {
                        claims.push(Claim {
                            event,
                            block,
                            settles: false,
                        });
                    }
                } else if !claiming.is_empty() {
                    findings.violation(
                        "cancelled-transfer-succeeded",
                        id,
                        format!(
                            "Cancelled, but transfer {} is finalized and successful on {}",
                            event.tx_hash,
                            claiming.join(", ")
                        ),
                    );
                }
            }
            State::Registered => {}
        }
    }
    Ok(json!({
        "checked": checked.len(),
        "nodes": nodes.len(),
        "reachable": reachable,
        "threshold": threshold,
        "succeeded": succeeded,
        "failed": failed,
        "expired": expired,
        "undecided": undecided,
    }))
}

fn describe_answers(answers: &[(String, Option<TxStatusView>)]) -> String {
    answers
        .iter()
        .map(|(url, a)| match a {
            None => format!("{url}: no answer"),
            Some(a) => match (a.block_number, &a.outcome) {
                (Some(n), Some(o)) => format!(
                    "{url}: {} in #{n} {}",
                    a.status,
                    if o.is_success() { "success" } else { "failed" }
                ),
                _ => format!("{url}: {} at #{}", a.status, a.finalized_number),
            },
        })
        .collect::<Vec<_>>()
        .join("; ")
}
