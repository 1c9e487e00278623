//! Writes the seed corpus of the fuzz targets in `fuzz/` (one valid input
//! of each kind each target decodes), so that libFuzzer starts from the
//! real formats rather than from nothing:
//!
//! ```text
//! cargo run --release --example fuzz_corpus -- fuzz/corpus
//! ```
//!
//! Each file is a selector byte (where the target has several decoders)
//! followed by the input. `scripts/fuzz.sh` runs this before fuzzing; the
//! output is committed, so it changes only when a format does.

use std::path::Path;

use lockstep_api::bus::BusMessage;
use lockstep_api::event::{settlement_commitment, PaymentInstruction, PaymentReceipt};
use lockstep_api::p2p::{BlockAnnouncement, Gossip, SyncRequest, SyncResponse};
use lockstep_consensus::{Proposal, Vote, VoteKind};
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{
    Block, Call, Hash, Header, Justification, Keypair, SignedTx, SigningContext,
};
use parity_scale_codec::Encode;

fn write(dir: &Path, target: &str, name: &str, selector: Option<u8>, body: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("the corpus directory");
    let mut bytes = selector.map(|s| vec![s]).unwrap_or_default();
    bytes.extend_from_slice(body);
    std::fs::write(dir.join(name), bytes).expect("a corpus file");
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let dir = Path::new(&dir);
    let alice = Keypair::dev("alice");
    let bridge = Keypair::dev("bridge");
    let payment = PaymentInstruction {
        payer: "bob".into(),
        payee: "alice".into(),
        amount: "1250".into(),
        currency: "USD".into(),
    };
    let context = SigningContext::new(Hash([1; 32]));
    let call = Call::Transfer {
        asset: 1,
        to: Keypair::dev("bob").public(),
        amount: 5,
        reference: Some(settlement_commitment("order-1", &payment)),
    };
    let tx = SignedTx::sign(&alice, &context, 0, 100, call);
    let header = Header {
        parent_hash: Hash([2; 32]),
        number: 7,
        timestamp: 1_700_000_000_000,
        proposer: alice.public(),
        extrinsics_root: Hash([3; 32]),
        receipts_root: Hash([4; 32]),
        state_root: Hash([5; 32]),
    };
    let block = Block {
        header: header.clone(),
        extrinsics: vec![tx.clone()],
    };
    let vote = Vote {
        kind: VoteKind::Precommit,
        height: 7,
        round: 0,
        value_id: Some(block.hash().0),
        validator: 0,
    };
    let justification = Justification {
        round: 0,
        block_hash: block.hash(),
        signatures: vec![(
            alice.public(),
            alice.sign(&vote.signing_bytes("lockstep-fuzz")),
        )],
    };

    write(dir, "chain", "tx", Some(0), &tx.encode());
    write(dir, "chain", "block", Some(1), &block.encode());
    write(dir, "chain", "header", Some(2), &header.encode());
    write(
        dir,
        "chain",
        "justification",
        Some(3),
        &justification.encode(),
    );

    let proposal = Proposal {
        height: 7,
        round: 1,
        value_id: block.hash().0,
        valid_round: Some(0),
        proposer: 0,
    };
    let signed_proposal = Gossip::Proposal {
        signature: alice.sign(&proposal.signing_bytes("lockstep-fuzz")),
        proposal,
        block: block.clone(),
    };
    let signed_vote = Gossip::Vote {
        signature: alice.sign(&vote.signing_bytes("lockstep-fuzz")),
        vote,
    };
    write(dir, "gossip", "proposal", None, &signed_proposal.encode());
    write(dir, "gossip", "vote", None, &signed_vote.encode());

    let announcement = BlockAnnouncement {
        block,
        justification,
    };
    write(
        dir,
        "p2p",
        "tx-batch",
        Some(0),
        &vec![tx.clone(), tx].encode(),
    );
    write(dir, "p2p", "announcement", Some(1), &announcement.encode());
    write(
        dir,
        "p2p",
        "sync-status",
        Some(2),
        &SyncRequest::Status.encode(),
    );
    let blocks = SyncRequest::Blocks {
        from: 1,
        count: 128,
    };
    write(dir, "p2p", "sync-blocks", Some(2), &blocks.encode());
    let status = SyncResponse::Status {
        genesis: Hash([1; 32]),
        finalized_number: 7,
        finalized_hash: Hash([6; 32]),
    };
    write(dir, "p2p", "sync-status-answer", Some(3), &status.encode());
    let answer = SyncResponse::Blocks(vec![announcement]);
    write(dir, "p2p", "sync-blocks-answer", Some(3), &answer.encode());

    let key = Keypair::dev("validator-0");
    let keyfile = serde_json::json!({
        "type": "ed25519",
        "publicKey": key.public(),
        "secretSeed": to_hex(&key.seed()),
    });
    write(dir, "keyfile", "key", None, keyfile.to_string().as_bytes());

    let register = serde_json::json!({
        "id": "order-1",
        "txHash": Hash([7; 32]),
        "validUntil": 100,
        "payment": payment,
    });
    write(
        dir,
        "register",
        "one",
        Some(0),
        register.to_string().as_bytes(),
    );
    let batch = serde_json::json!([register, register]);
    write(
        dir,
        "register",
        "batch",
        Some(1),
        batch.to_string().as_bytes(),
    );

    let paid = PaymentReceipt::sign(&bridge, "order-1", "ledger-42");
    let paid_json = serde_json::to_vec(&paid).expect("json");
    write(dir, "receipt", "paid", Some(0), &paid_json);
    let both = serde_json::to_vec(&vec![paid.clone(), paid]).expect("json");
    write(dir, "receipt", "receipts", Some(1), &both);
    let message = BusMessage {
        message_id: "order-1".into(),
        event_id: "order-1".into(),
        tx_hash: Hash([7; 32]),
        block_hash: Some(Hash([8; 32])),
        block_number: 9,
        payment,
        attempt: 1,
        signature: None,
    }
    .signed(&Keypair::dev("event-system"));
    let message = serde_json::to_vec(&message).expect("json");
    write(dir, "receipt", "bus-message", Some(2), &message);
    println!("wrote the seed corpus under {}", dir.display());
}
