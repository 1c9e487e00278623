//! `lockstep transfer`: the transaction system's side of the protocol.
//!
//! With a payment: sign a transfer that commits to its event (its
//! `reference` is the settlement commitment of the event id and payment),
//! **register** the event (the transfer is never submitted unless
//! registration succeeded: step 1-2 of the protocol), then submit to the
//! first node that takes it, then optionally follow the event to a final
//! state. Without one: a chain-only transfer (no reference), followed to
//! finality.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use lockstep_api::client::{ClientOptions, Subscription};
use lockstep_api::event::{settlement_commitment, Event, RegisterRequest};
use lockstep_api::node::error::ALREADY_KNOWN;
use lockstep_api::node::{AuthorApiClient, ChainApiClient, TxApiClient, TxState};
use lockstep_api::offchain::TransitionFilter;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{
    expired_after, BlockNumber, Call, Hash, Header, Nonce, Outcome, SignedTx, SigningContext,
};
use parity_scale_codec::Encode;
use serde_json::json;

use crate::args::TransferArgs;
use crate::chain::NodeClient;
use crate::event::{describe_event, final_code, EventsClient, EventsEndpoint};
use crate::key::{account, keypair};
use crate::output::{print, Progress};
use crate::rpc::{describe, is_refusal, refusal_code, At};
use crate::EXIT_CANCELLED;

/// What signing needs from a node.
struct ChainFacts {
    context: SigningContext,
    nonce: Nonce,
    head: BlockNumber,
}

/// `lockstep transfer`.
pub async fn run(
    nodes: &[String],
    node_options: &ClientOptions,
    endpoint: &EventsEndpoint,
    json_mode: bool,
    args: TransferArgs,
) -> anyhow::Result<ExitCode> {
    let key = keypair(&args.from)?;
    let to = account(&args.to)?;
    let clients = nodes
        .iter()
        .map(|url| NodeClient::new(url, node_options))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let events = match &args.pay {
        Some(_) => Some(EventsClient::new(endpoint)?),
        None => None,
    };

    // The first node that answers provides the chain's facts; it is also
    // the first one the transfer is submitted to.
    let mut failures = Vec::new();
    let mut found = None;
    for (i, node) in clients.iter().enumerate() {
        match facts(node, &key.public()).await {
            Ok(f) => {
                found = Some((i, f));
                break;
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let Some((first, facts)) = found else {
        bail!("no node answered: {}", failures.join("; "));
    };
    let valid_until = facts.head.saturating_add(args.valid_for);
    let unreferenced = Call::Transfer {
        asset: args.asset,
        to,
        amount: args.amount,
        reference: None,
    };
    // The event id comes first: the transfer commits to it.
    let event_id = args.pay.as_ref().map(|_| {
        args.event_id.clone().unwrap_or_else(|| {
            default_event_id(&key.public(), facts.nonce, valid_until, &unreferenced)
        })
    });
    let transfer = match (&args.pay, &event_id) {
        (Some(payment), Some(id)) => Call::Transfer {
            asset: args.asset,
            to,
            amount: args.amount,
            reference: Some(settlement_commitment(id, payment)),
        },
        _ => unreferenced,
    };
    let tx = SignedTx::sign(&key, &facts.context, facts.nonce, valid_until, transfer);
    let hex = to_hex(&tx.encode());
    let tx_hash = tx.hash();

    if let (Some(payment), Some(events), Some(id)) = (&args.pay, &events, &event_id) {
        let request = RegisterRequest {
            id: id.clone(),
            tx: Some(hex.clone()),
            tx_hash: None,
            valid_until: None,
            payment: payment.clone(),
        };
        events
            .register(&request)
            .await
            .context("the event was not registered, so the transfer was not submitted")?;
        if !json_mode {
            eprintln!("registered event {id} for transfer {tx_hash}");
        }
    }

    if args.register_only {
        let id = event_id.clone().unwrap_or_default();
        let summary = json!({
            "eventId": id,
            "txHash": tx_hash,
            "nonce": facts.nonce,
            "validUntil": valid_until,
            "submittedTo": null,
        });
        let text = format!(
            "event {id}: registered, transfer {tx_hash} not submitted (--register-only); \
             it is Cancelled once the chain is past #{valid_until}"
        );
        if args.wait {
            if let Some(events) = &events {
                let event = follow_event(events, &id).await?;
                print(
                    json_mode,
                    &json!({ "registered": summary, "event": event }),
                    describe_event(&event),
                );
                return Ok(final_code(event.state));
            }
        }
        print(json_mode, &summary, text);
        return Ok(ExitCode::SUCCESS);
    }

    let order = (first..clients.len()).chain(0..first);
    let mut submitted_to = None;
    let mut failures = Vec::new();
    for i in order {
        let node = &clients[i];
        let answer = node.http.submit_extrinsic(hex.clone()).await;
        match answer {
            Ok(_) => {
                submitted_to = Some(node.url.clone());
                break;
            }
            // Already in the pool (a retry): the transfer is there.
            Err(e) if refusal_code(&e) == Some(ALREADY_KNOWN) => {
                submitted_to = Some(node.url.clone());
                break;
            }
            Err(e) if is_refusal(&e) => {
                bail!(
                    "{} refused the transfer {tx_hash}: {}{}",
                    node.url,
                    describe(&e),
                    unsubmitted_note(&event_id, valid_until)
                );
            }
            Err(e) => failures.push(format!("{}: {}", node.url, describe(&e))),
        }
    }
    let Some(submitted_to) = submitted_to else {
        bail!(
            "no node took the transfer {tx_hash}: {}{}",
            failures.join("; "),
            unsubmitted_note(&event_id, valid_until)
        );
    };

    let summary = json!({
        "eventId": event_id,
        "txHash": tx_hash,
        "nonce": facts.nonce,
        "validUntil": valid_until,
        "submittedTo": submitted_to,
    });
    if !args.wait {
        let text = match &event_id {
            Some(id) => format!(
                "event {id}: submitted {tx_hash} to {submitted_to} (nonce {}, valid until #{valid_until})",
                facts.nonce
            ),
            None => format!(
                "submitted {tx_hash} (nonce {}, valid until #{valid_until})",
                facts.nonce
            ),
        };
        print(json_mode, &summary, text);
        return Ok(ExitCode::SUCCESS);
    }

    let node = clients
        .iter()
        .find(|n| n.url == submitted_to)
        .unwrap_or(&clients[first]);
    let waiting = async {
        match (&event_id, &events) {
            (Some(id), Some(events)) => {
                let event = follow_event(events, id).await?;
                print(
                    json_mode,
                    &json!({ "submitted": summary, "event": event }),
                    describe_event(&event),
                );
                Ok(final_code(event.state))
            }
            _ => follow_tx(node, json_mode, tx_hash, valid_until).await,
        }
    };
    if args.timeout == 0 {
        return waiting.await;
    }
    match tokio::time::timeout(Duration::from_secs(args.timeout), waiting).await {
        Ok(result) => result,
        Err(_) => bail!(
            "not final after {} s; the transfer {tx_hash} goes on{}",
            args.timeout,
            event_id
                .map(|id| format!(" (lockstep event watch {id})"))
                .unwrap_or_default()
        ),
    }
}

/// The event id when none is given: `tx-` and the SHA-256 of the transfer
/// as signed but without its reference (signer, nonce, expiry, call), so
/// that one transfer has one id. (The id cannot be the transaction's hash:
/// the hash covers the reference, which commits to the id.)
fn default_event_id(
    signer: &lockstep_runtime::AccountId,
    nonce: Nonce,
    valid_until: BlockNumber,
    call: &Call,
) -> String {
    let unsigned = (signer, nonce, valid_until, call).encode();
    format!("tx-{}", &Hash::digest(&unsigned).to_string()[2..])
}

fn unsubmitted_note(event_id: &Option<String>, valid_until: BlockNumber) -> String {
    match event_id {
        Some(id) => format!(
            "; its event {id} is registered and will be cancelled once the chain is past #{valid_until}"
        ),
        None => String::new(),
    }
}

async fn facts(node: &NodeClient, who: &lockstep_runtime::AccountId) -> anyhow::Result<ChainFacts> {
    Ok(ChainFacts {
        context: node.signing_context().await?,
        nonce: node.nonce(who).await?,
        head: node.height().await?,
    })
}

/// Follows an event to a final state, with a progress line on a terminal.
/// Survives the event system going away for a while: it re-subscribes and
/// re-reads the event until it answers again.
pub async fn follow_event(events: &EventsClient, id: &str) -> anyhow::Result<Event> {
    let mut progress = Progress::on_terminal();
    let mut failures = 0u32;
    loop {
        // Subscribe first, then read: a move in between is in both.
        let attempt = async {
            // Only this event's transitions: the event system reads its
            // history, not the whole system's feed.
            let (_client, mut stream) = events
                .subscribe(None, Some(TransitionFilter::event_ids([id])))
                .await?;
            let mut event = events.get(id).await?;
            loop {
                progress.update(&format!("event {id}: {}", event.state));
                if event.state.is_final() {
                    return Ok::<Event, anyhow::Error>(event);
                }
                loop {
                    let transition = stream
                        .next()
                        .await
                        .ok_or_else(|| anyhow!("the event stream ended"))?
                        .map_err(|e| anyhow!("event stream: {e}"))?;
                    if transition.event_id == id {
                        break;
                    }
                }
                event = events.get(id).await?;
            }
        };
        match attempt.await {
            Ok(event) => {
                progress.finish();
                return Ok(event);
            }
            Err(e) => {
                // An unknown id will not become known: give up on a refusal.
                if failures >= 60 || format!("{e:#}").contains("(code 2001)") {
                    progress.finish();
                    return Err(e);
                }
                failures += 1;
                progress.update(&format!("event {id}: {e:#}; retrying"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Follows a transaction to finality or expiry on one node.
async fn follow_tx(
    node: &NodeClient,
    json_mode: bool,
    hash: Hash,
    valid_until: BlockNumber,
) -> anyhow::Result<ExitCode> {
    let mut progress = Progress::on_terminal();
    let client = node.ws().await?;
    let mut heads: Subscription<Header> = client
        .subscribe_finalized_heads()
        .await
        .at("subscribing to finalized heads", &node.url)?;
    loop {
        let status = node
            .http
            .status(hash)
            .await
            .at("the transfer's status", &node.url)?;
        let finalized_number = status.finalized_number;
        match status.status {
            TxState::Finalized => {
                progress.finish();
                let success = status.outcome.is_some_and(|o| o.is_success());
                let text = format!(
                    "finalized in block #{} ({}): {}",
                    status
                        .block_number
                        .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                    status
                        .block_hash
                        .map_or_else(|| "?".to_owned(), |h| h.to_string()),
                    match status.outcome {
                        Some(Outcome::Failed(error)) => format!(
                            "failed ({})",
                            serde_json::to_string(&error).unwrap_or_default()
                        ),
                        _ => "success".to_owned(),
                    }
                );
                print(
                    json_mode,
                    &json!({ "txHash": hash, "status": status }),
                    text,
                );
                return Ok(if success {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(EXIT_CANCELLED)
                });
            }
            TxState::Unknown if expired_after(valid_until, finalized_number) => {
                progress.finish();
                print(
                    json_mode,
                    &json!({ "txHash": hash, "status": status }),
                    "dropped: expired",
                );
                return Ok(ExitCode::from(EXIT_CANCELLED));
            }
            other => progress.update(&format!("{hash}: {other} at finalized #{finalized_number}")),
        }
        heads
            .next()
            .await
            .context("the head subscription ended")?
            .map_err(|e| anyhow!("head subscription: {e}"))?;
    }
}
