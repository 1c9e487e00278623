//! Connecting to the nodes and the event system through their typed
//! interfaces (`lockstep_api`), with errors that name the service and its
//! URL, then the server's own message and code.
//!
//! Every client is built from one [`ClientOptions`] made once per run from
//! the command line: the call timeout and the CAs of `--ca-file` for
//! `https://` and `wss://` URLs; the event system's clients add the bearer
//! token (a node is never sent it).

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client::{self, BadCaFile, ClientOptions};
pub use lockstep_api::client::{describe, refusal_code, Error as ClientError};

/// Timeout of one call (a batch is one call).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What every client of this run shares: [`CALL_TIMEOUT`], and the CAs of
/// `ca_file` (`--ca-file`) when given, else the system's roots.
pub fn options(ca_file: Option<&Path>) -> Result<ClientOptions, BadCaFile> {
    ClientOptions::new(CALL_TIMEOUT).with_ca_file(ca_file)
}

/// An HTTP client for a service (nothing is connected until the first call).
pub fn http(url: &str, options: &ClientOptions) -> anyhow::Result<HttpClient> {
    Ok(client::http_with(url, options)?)
}

/// A WebSocket client for a service (for subscriptions); the token of
/// `options`, if any, goes with the upgrade request.
pub async fn ws(url: &str, options: &ClientOptions) -> anyhow::Result<WsClient> {
    client::ws_with(url, options)
        .await
        .map_err(|e| anyhow!("cannot open a WebSocket to {url}: {}", describe(&e)))
}

/// Whether the server answered (and refused): as opposed to a transport
/// failure, after which another node may be tried.
pub fn is_refusal(error: &ClientError) -> bool {
    refusal_code(error).is_some()
}

/// A call's result, its error naming what was asked of which service.
pub trait At<T> {
    /// `what` at `url`: the server's message and code, or the cause.
    fn at(self, what: &str, url: &str) -> anyhow::Result<T>;
}

impl<T> At<T> for Result<T, ClientError> {
    fn at(self, what: &str, url: &str) -> anyhow::Result<T> {
        self.map_err(|e| anyhow!("{what} at {url}: {}", describe(&e)))
    }
}
