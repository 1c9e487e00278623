//! The other peer-to-peer messages: a gossiped transaction batch, a block
//! announcement, a sync request and a sync response. The first byte picks
//! the decoder; whatever decodes re-encodes to the same bytes, and a batch
//! never holds more, or larger, transactions than its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_api::p2p::{
    decode_announcement, decode_sync_request, decode_sync_response, decode_tx_batch,
    MAX_TXS_PER_GOSSIP,
};
use lockstep_runtime::MAX_TX_SIZE;
use parity_scale_codec::Encode;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(txs) = decode_tx_batch(bytes) {
                assert!(txs.len() <= MAX_TXS_PER_GOSSIP);
                assert!(txs.iter().all(|tx| tx.encoded_size() <= MAX_TX_SIZE));
                assert_eq!(txs.encode(), bytes);
            }
        }
        1 => {
            if let Ok(announcement) = decode_announcement(bytes) {
                assert_eq!(announcement.encode(), bytes);
            }
        }
        2 => {
            if let Ok(request) = decode_sync_request(bytes) {
                assert_eq!(request.encode(), bytes);
            }
        }
        _ => {
            if let Ok(response) = decode_sync_response(bytes) {
                assert_eq!(response.encode(), bytes);
            }
        }
    }
});
