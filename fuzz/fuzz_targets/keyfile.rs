//! A key file's content, as an operator's editor (or an attacker with
//! write access to the directory) may leave it. It parses or is refused;
//! and a refusal never quotes the file, whose secret seed must not reach a
//! log: no error message contains a 0x-hex run of the input longer than a
//! public key's prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_service::keyfile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = keyfile::parse("key.json", text) {
        let message = error.to_string();
        // Any 16-character window of the input that reads as hex must not
        // appear in the message (the message's own words are not hex).
        for window in text.as_bytes().windows(16) {
            if window.iter().all(u8::is_ascii_hexdigit) {
                let window = std::str::from_utf8(window).unwrap_or_default();
                assert!(
                    !message.contains(window),
                    "the error quotes the file: {message}"
                );
            }
        }
    }
});
