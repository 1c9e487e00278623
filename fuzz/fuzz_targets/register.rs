//! `event_register`'s JSON parameter (and a batch of them, as
//! `event_registerBatch` takes): parsed, then checked as the event system
//! checks it before the store sees it. Nothing may panic, and a request
//! that passes the checks yields a registration whose id and payment pass
//! them again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_api::event::{check_event_id, RegisterRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let requests: Vec<RegisterRequest> = if which % 2 == 0 {
        match serde_json::from_slice(bytes) {
            Ok(request) => vec![request],
            Err(_) => return,
        }
    } else {
        match serde_json::from_slice(bytes) {
            Ok(requests) => requests,
            Err(_) => return,
        }
    };
    for request in requests {
        if let Ok((registration, _)) = request.check() {
            assert!(check_event_id(&registration.id).is_ok());
            assert!(registration.payment.check().is_ok());
            let _ = registration.payment.canonical_bytes();
        }
    }
});
