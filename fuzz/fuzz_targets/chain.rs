//! Chain data as it arrives from peers and RPC callers: a signed
//! transaction (`author_submitExtrinsic`, gossip), a block, a header, a
//! justification. The first byte picks the decoder. Whatever decodes must
//! be the canonical encoding of what it decoded (one value, one encoding:
//! hashes and signatures are over these bytes), and checking it must not
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_runtime::block::MAX_BLOCK_SIZE;
use lockstep_runtime::codec::decode_exact;
use lockstep_runtime::{Block, Hash, Header, Justification, SignedTx, SigningContext};
use parity_scale_codec::Encode;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(tx) = SignedTx::decode_bounded(bytes) {
                assert_eq!(tx.encode(), bytes, "a transaction decodes from one encoding only");
                let _ = tx.verify_signature(&SigningContext::new(Hash([0; 32])));
                let _ = tx.hash();
            }
        }
        1 => {
            if let Ok(block) = Block::decode_bounded(bytes) {
                assert_eq!(block.encode(), bytes, "a block decodes from one encoding only");
                let _ = block.hash();
            }
        }
        2 => {
            if let Ok(header) = decode_exact::<Header>(bytes, MAX_BLOCK_SIZE) {
                assert_eq!(header.encode(), bytes, "a header decodes from one encoding only");
            }
        }
        _ => {
            if let Ok(justification) = decode_exact::<Justification>(bytes, MAX_BLOCK_SIZE) {
                assert_eq!(justification.encode(), bytes);
            }
        }
    }
});
