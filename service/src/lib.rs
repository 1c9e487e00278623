//! # lockstep-service
//!
//! What every Lockstep binary (`lockstep-node`, `lockstep-offchain`,
//! `lockstep-bridge`, `lockstep`) does the same way, written once:
//!
//! - [`metrics`]: a Prometheus registry ([`prometheus_client`]) and the
//!   `GET /metrics` endpoint that serves it, with an accept loop that backs
//!   off on errors instead of spinning; [`rpc_metrics`], each JSON-RPC
//!   method's latency as a histogram (a server middleware), and
//!   [`rpc_server`], which starts a bounded, timed JSON-RPC server, with
//!   [`jsonrpc_envelope`] (request envelopes checked as the JSON-RPC
//!   specification says) and [`rpc_rate_limit`] (calls a minute per
//!   connection) in front of its methods;
//! - [`auth`]: credentials and roles: the credentials file (token hashes,
//!   roles, payer scopes), the HTTP and RPC middlewares that admit a
//!   caller and check each call, per-credential rate limits;
//! - [`tls`]: `--tls-cert`/`--tls-key`, rustls server set-ups;
//! - [`logging`]: `RUST_LOG` filters and `--log-format text|json`;
//! - [`shutdown_signal`]: the first SIGINT or SIGTERM;
//! - [`backoff`] and [`parse_duration`]: retry delays and duration flags;
//! - [`keyfile`]: the JSON key files of validators, bridges and users;
//! - [`clock`]: wall-clock milliseconds, and a clock tests can drive;
//! - `test_utils` (cargo feature `test-utils`): `TestProcess`, how every
//!   multi-process test spawns a binary, waits for its address line,
//!   kills or stops it, restarts it, and prints its log when a test fails;
//!   `TestCa`, a CA and a server certificate for the TLS tests; and
//!   `jsonrpc_spec`, the JSON-RPC specification's examples held against a
//!   running server.
//!
//! Each binary's `main.rs` wires these; nothing here knows a service's
//! own logic.

pub mod auth;
pub mod clock;
pub mod jsonrpc_envelope;
#[cfg(feature = "test-utils")]
pub mod jsonrpc_spec;
pub mod keyfile;
pub mod logging;
pub mod metrics;
pub mod rpc_metrics;
pub mod rpc_rate_limit;
pub mod rpc_server;
#[cfg(feature = "test-utils")]
pub mod test_utils;
pub mod tls;

use std::time::Duration;

pub use clock::now_ms;

/// `min(base × 2^attempt, cap)`.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    base.checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap)
}

/// A duration on a command line: `250ms`, `5s`, `2m`, `1h` (positive).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit (ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number and a unit, like 5s"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(|| format!("{text:?}: unit must be ms, s, m or h"))?;
    if millis == 0 {
        return Err(format!("{text:?}: must be positive"));
    }
    Ok(Duration::from_millis(millis))
}

/// Resolves at the first SIGINT or SIGTERM, with the signal's name: how
/// every long-running command knows to shut down cleanly. Where SIGTERM
/// cannot be watched, SIGINT alone ends it.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        let delays: Vec<u128> = (0..6).map(|n| backoff(base, cap, n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(base, cap, u32::MAX), cap);
    }

    #[test]
    fn durations_parse_with_a_unit_and_bad_ones_are_refused() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "5",
            "s",
            "0s",
            "5d",
            "-5s",
            "5 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
