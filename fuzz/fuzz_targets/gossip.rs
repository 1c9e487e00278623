//! A consensus message from a peer (proposal with its block, or vote):
//! decoded within its bound, re-encoded to the same bytes, and checked
//! against a validator set without panicking, whatever it claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_api::p2p::decode_gossip;
use lockstep_runtime::Keypair;
use parity_scale_codec::Encode;

fuzz_target!(|data: &[u8]| {
    if let Ok(gossip) = decode_gossip(data) {
        assert_eq!(gossip.encode(), data, "gossip decodes from one encoding only");
        let validators: Vec<_> = ["alice", "bob", "charlie", "dave"]
            .iter()
            .map(|name| Keypair::dev(name).public())
            .collect();
        let _ = gossip.verify("lockstep-fuzz", &validators);
    }
});
