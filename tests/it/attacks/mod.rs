//! Attacks on a running system, as a stranger on the same machine would
//! try them: real processes over loopback, one test per attack, each
//! asserting the refusal and that nothing was paid or moved.

mod auth;
mod commitment;
mod signatures;

use std::io::{Read, Write};
use std::time::Duration;

/// `GET /metrics` on a loopback port; none while nothing answers there.
pub(crate) fn scrape(port: u16) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// A series' value in a Prometheus exposition.
pub(crate) fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// The event ids of a ledger's payments (`lockstep-bridge ledger payments`).
pub(crate) fn paid_events(ledger: impl AsRef<std::ffi::OsStr>) -> Vec<String> {
    let rows = crate::system::ledger_json(ledger, &["payments", "--json"]);
    let rows = rows.as_array().expect("payments as a JSON array");
    rows.iter()
        .map(|row| row["eventId"].as_str().expect("an event id").to_owned())
        .collect()
}
