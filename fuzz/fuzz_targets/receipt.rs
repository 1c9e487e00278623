//! What the event system and the bridge read from each other: a payment
//! receipt (`event_postReceipt`, `event_postReceipts`) and a bus message
//! (what a broker delivers to the bridge, where anyone with broker access
//! may have published it). Parsed, its signed bytes built and its signature
//! checked against a key that never signed it: nothing panics, and nothing
//! verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_api::bus::BusMessage;
use lockstep_api::event::PaymentReceipt;
use lockstep_runtime::Keypair;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let stranger = Keypair::dev("fuzz-stranger").public();
    match which % 3 {
        0 => {
            if let Ok(receipt) = serde_json::from_slice::<PaymentReceipt>(bytes) {
                let _ = receipt.signed_bytes();
                assert!(receipt.verify(&stranger).is_err());
            }
        }
        1 => {
            if let Ok(receipts) = serde_json::from_slice::<Vec<PaymentReceipt>>(bytes) {
                let results = PaymentReceipt::verify_all(&receipts, &stranger);
                assert_eq!(results.len(), receipts.len());
                assert!(results.iter().all(Result::is_err));
            }
        }
        _ => {
            if let Ok(message) = serde_json::from_slice::<BusMessage>(bytes) {
                let _ = message.signing_bytes();
                assert!(message.verify(&stranger).is_err());
            }
        }
    }
});
