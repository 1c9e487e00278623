//! Connecting to a Lockstep service: one place that builds the HTTP and
//! WebSocket clients every caller uses (timeouts, size limits, the bearer
//! token, the CAs trusted for TLS), JSON-RPC batches of one method, and
//! errors as a person reads them.
//!
//! The typed calls are the generated client traits of each interface
//! ([`crate::node`], [`crate::offchain`]): bring the trait into scope and
//! call its methods on an [`HttpClient`] or a [`WsClient`].
//!
//! ## Credentials
//!
//! The event system admits only callers that present a [`BearerToken`]
//! (`Authorization: Bearer lst_…` on every HTTP request and on the
//! WebSocket upgrade); [`ClientOptions::token`] adds it to every client
//! built here, as a header marked sensitive so that no debug output of the
//! client shows it. A token is a secret: it has no `Display`, its `Debug`
//! prints only `BearerToken(…)`, and nothing here puts it in an error.
//! A token typed on a command line or read from the environment is a
//! [`TokenArg`] until checked, because clap repeats a rejected value in its
//! error message.
//!
//! ## TLS
//!
//! An `https://` or `wss://` URL is verified against the system's roots,
//! or, with [`ClientOptions::with_ca_file`] (`--ca-file` on every command
//! line), against the CA certificates of that PEM file alone: a testnet or
//! an operator's own CA needs nothing installed system-wide. The name in
//! the URL must be one the server's certificate names (`localhost`, or an
//! IP address the certificate lists).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::{ArrayParams, BatchRequestBuilder};
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use serde::de::DeserializeOwned;

pub use jsonrpsee::core::client::{Error, Subscription};

/// Timeout of one call when the caller does not choose one (a batch is
/// one call).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer accepted (a full block, a page of events).
pub const MAX_RESPONSE: u32 = 64 * 1024 * 1024;
/// Notifications buffered per subscription: the client drops a
/// subscription whose buffer overflows, so a follower of a busy stream
/// resumes from its last sequence number.
pub const SUBSCRIPTION_BUFFER: usize = 16 * 1024;

/// A service URL that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad URL {url:?}: {reason}")]
pub struct BadUrl {
    /// The URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// The same endpoint as `http(s)://` and `ws(s)://` (a Lockstep service
/// serves both on one port). Refuses any other scheme.
pub fn endpoint_urls(url: &str) -> Result<(String, String), BadUrl> {
    let bad = |reason: &str| BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url.strip_prefix("http://") {
        Ok((url.to_owned(), format!("ws://{rest}")))
    } else if let Some(rest) = url.strip_prefix("https://") {
        Ok((url.to_owned(), format!("wss://{rest}")))
    } else if let Some(rest) = url.strip_prefix("ws://") {
        Ok((format!("http://{rest}"), url.to_owned()))
    } else if let Some(rest) = url.strip_prefix("wss://") {
        Ok((format!("https://{rest}"), url.to_owned()))
    } else {
        Err(bad("expected http://, https://, ws:// or wss://"))
    }
}

/// What a token looks like: this prefix, then 64 lower-case hex digits
/// (32 random bytes).
pub const TOKEN_PREFIX: &str = "lst_";

/// A bearer token: the secret a caller presents to the event system. See
/// the [module docs](self#credentials).
#[derive(Clone)]
pub struct BearerToken(String);

/// A string that is not a token. Says what a token looks like, never what
/// was given (which may be a mistyped token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Lockstep token: expected {TOKEN_PREFIX} followed by 64 lower-case hex digits")]
pub struct BadToken;

impl BearerToken {
    /// The token of 32 secret bytes (from the operating system's random
    /// source: `lockstep-offchain token create`).
    pub fn from_secret(secret: &[u8; 32]) -> BearerToken {
        let mut text = String::with_capacity(TOKEN_PREFIX.len() + 64);
        text.push_str(TOKEN_PREFIX);
        for byte in secret {
            text.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(HEX_DIGITS[usize::from(byte & 0xf)]));
        }
        BearerToken(text)
    }

    /// Checks a token's form (surrounding whitespace, as a file or a shell
    /// leaves it, is ignored).
    pub fn parse(text: &str) -> Result<BearerToken, BadToken> {
        let text = text.trim();
        let digits = text.strip_prefix(TOKEN_PREFIX).ok_or(BadToken)?;
        let well_formed = digits.len() == 64 && digits.bytes().all(|b| HEX_DIGITS.contains(&b));
        if !well_formed {
            return Err(BadToken);
        }
        Ok(BearerToken(text.to_owned()))
    }

    /// The secret itself, for the one place that sends it (the
    /// `Authorization` header) or shows it (once, when it is created).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// `Authorization: Bearer <token>`, marked sensitive.
    fn header(&self) -> Result<HeaderValue, BadToken> {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", self.0)).map_err(|_| BadToken)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

/// A token as given on a command line or in an environment variable, not
/// yet checked ([`TokenArg::token`]): parsing never fails, so that clap
/// never repeats a mistyped token in its error message, and `Debug` does
/// not show it.
#[derive(Clone)]
pub struct TokenArg(String);

impl TokenArg {
    /// The checked token.
    pub fn token(&self) -> Result<BearerToken, BadToken> {
        BearerToken::parse(&self.0)
    }
}

impl std::str::FromStr for TokenArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<TokenArg, Self::Err> {
        Ok(TokenArg(text.to_owned()))
    }
}

impl std::fmt::Debug for TokenArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenArg(…)")
    }
}

/// The certificate authorities a client trusts for `https://` and
/// `wss://`, instead of the system's roots.
#[derive(Clone)]
pub struct TrustedCas {
    roots: Arc<rustls::RootCertStore>,
    file: String,
}

impl std::fmt::Debug for TrustedCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedCas({} from {})", self.roots.len(), self.file)
    }
}

/// Largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// A CA file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CA file {path}: {reason}")]
pub struct BadCaFile {
    /// The file.
    pub path: String,
    /// Why.
    pub reason: String,
}

impl TrustedCas {
    /// Every certificate of a PEM file, each a trusted CA.
    pub fn from_pem_file(path: &Path) -> Result<TrustedCas, BadCaFile> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        use std::io::Read;
        let file = path.display().to_string();
        let bad = |reason: String| BadCaFile {
            path: file.clone(),
            reason,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut bytes))
            .map_err(|e| bad(e.to_string()))?;
        if bytes.len() as u64 > MAX_CA_FILE {
            return Err(bad(format!("larger than {MAX_CA_FILE} bytes")));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("no -----BEGIN CERTIFICATE----- section".into()));
        }
        Ok(TrustedCas {
            roots: Arc::new(roots),
            file,
        })
    }

    /// A rustls client set-up that trusts these CAs alone (ring provider).
    fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(self.roots.clone())
        .with_no_client_auth())
    }
}

/// How to connect: what every client built here shares.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Timeout of one call (a batch is one call); for a WebSocket, of the
    /// connection too.
    pub timeout: Duration,
    /// The bearer token sent with every request, if any (the event system
    /// requires one; the node takes none).
    pub token: Option<BearerToken>,
    /// The CAs trusted for `https://` and `wss://`; the system's roots when
    /// `None`.
    pub cas: Option<TrustedCas>,
}

impl ClientOptions {
    /// No token, the system's roots, this timeout.
    pub fn new(timeout: Duration) -> ClientOptions {
        ClientOptions {
            timeout,
            token: None,
            cas: None,
        }
    }

    /// The same options with `token`.
    pub fn with_token(mut self, token: Option<BearerToken>) -> ClientOptions {
        self.token = token;
        self
    }

    /// The same options trusting `cas` (or the system's roots, for `None`).
    pub fn with_cas(mut self, cas: Option<TrustedCas>) -> ClientOptions {
        self.cas = cas;
        self
    }

    /// The same options trusting the CAs of a PEM file (`--ca-file`), when
    /// one is given.
    pub fn with_ca_file(self, path: Option<&Path>) -> Result<ClientOptions, BadCaFile> {
        let cas = path.map(TrustedCas::from_pem_file).transpose()?;
        Ok(self.with_cas(cas))
    }

    fn headers(&self) -> Result<HeaderMap, BadToken> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.token {
            headers.insert("authorization", token.header()?);
        }
        Ok(headers)
    }
}

/// An HTTP client for the service at `url` (any of the four schemes;
/// nothing is connected until the first call).
pub fn http(url: &str, timeout: Duration) -> Result<HttpClient, BadUrl> {
    http_with(url, &ClientOptions::new(timeout))
}

/// [`http`] with `options` (a token, say).
pub fn http_with(url: &str, options: &ClientOptions) -> Result<HttpClient, BadUrl> {
    let bad = |reason: String| BadUrl {
        url: url.to_owned(),
        reason,
    };
    let (http_url, _) = endpoint_urls(url)?;
    let headers = options.headers().map_err(|e| bad(e.to_string()))?;
    let mut builder = HttpClientBuilder::default()
        .request_timeout(options.timeout)
        .max_response_size(MAX_RESPONSE)
        .set_headers(headers);
    if let Some(cas) = &options.cas {
        builder = builder.with_custom_cert_store(cas.client_config().map_err(bad)?);
    }
    builder.build(&http_url).map_err(|e| bad(e.to_string()))
}

/// A WebSocket client for the service at `url` (for subscriptions).
pub async fn ws(url: &str, timeout: Duration) -> Result<WsClient, ClientError> {
    ws_with(url, &ClientOptions::new(timeout)).await
}

/// [`ws`] with `options` (the token goes with the upgrade request).
pub async fn ws_with(url: &str, options: &ClientOptions) -> Result<WsClient, ClientError> {
    let (_, ws_url) = endpoint_urls(url).map_err(|e| ClientError::Custom(e.to_string()))?;
    let headers = options
        .headers()
        .map_err(|e| ClientError::Custom(e.to_string()))?;
    let mut builder = WsClientBuilder::default()
        .request_timeout(options.timeout)
        .connection_timeout(options.timeout)
        .max_response_size(MAX_RESPONSE)
        .max_buffer_capacity_per_subscription(SUBSCRIPTION_BUFFER)
        .set_headers(headers);
    if let Some(cas) = &options.cas {
        builder = builder.with_custom_cert_store(cas.client_config().map_err(ClientError::Custom)?);
    }
    builder.build(&ws_url).await
}

/// Whether a transport failure is the server refusing the credential
/// (HTTP 401, on a call or on a WebSocket upgrade): the server did answer.
pub fn is_unauthenticated(error: &ClientError) -> bool {
    let ClientError::Transport(e) = error else {
        return false;
    };
    if let Some(http) = e.downcast_ref::<jsonrpsee::http_client::transport::Error>() {
        return matches!(
            http,
            jsonrpsee::http_client::transport::Error::Rejected { status_code: 401 }
        );
    }
    if let Some(ws) = e.downcast_ref::<jsonrpsee::client_transport::ws::WsHandshakeError>() {
        return matches!(
            ws,
            jsonrpsee::client_transport::ws::WsHandshakeError::Rejected { status_code: 401 }
        );
    }
    false
}

/// A client error as a person reads it: the server's message and code for
/// a refusal, the cause for a transport failure.
pub fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Call(e) => describe_refusal(e),
        e if is_unauthenticated(e) => format!(
            "no valid credential: the service wants a bearer token it has on record \
             (none was given, or it is unknown or revoked) (HTTP 401, code {UNAUTHENTICATED})"
        ),
        ClientError::Transport(e) => format!("cannot reach it: {}", with_causes(e.as_ref())),
        ClientError::RequestTimeout => "no answer in time".into(),
        other => other.to_string(),
    }
}

/// An error and what caused it, outermost first, each cause once: an
/// HTTP client's own message is only "client error (Connect)", and the
/// reason (a refused connection, a certificate that no trusted CA signed)
/// is further down.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}

/// The event system's code for a missing or unknown credential
/// ([`crate::offchain::error::UNAUTHENTICATED`]).
const UNAUTHENTICATED: i32 = crate::offchain::error::UNAUTHENTICATED;

/// A server's refusal as a person reads it.
pub fn describe_refusal(error: &ErrorObjectOwned) -> String {
    format!("{} (code {})", error.message(), error.code())
}

/// The code of a refusal; none for a transport failure (after which
/// another node may be tried). An HTTP 401 is the refusal
/// [`UNAUTHENTICATED`](crate::offchain::error::UNAUTHENTICATED).
pub fn refusal_code(error: &ClientError) -> Option<i32> {
    match error {
        ClientError::Call(e) => Some(e.code()),
        e if is_unauthenticated(e) => Some(UNAUTHENTICATED),
        _ => None,
    }
}

/// One JSON-RPC batch of calls to `method`; each entry is its own answer or
/// the server's refusal. A transport failure fails the whole batch, and so
/// does an answer with the wrong number of entries.
pub async fn batch<T: DeserializeOwned + std::fmt::Debug>(
    client: &HttpClient,
    method: &str,
    params: Vec<ArrayParams>,
) -> Result<Vec<Result<T, ErrorObjectOwned>>, ClientError> {
    let mut request = BatchRequestBuilder::new();
    let mut count = 0;
    for p in params {
        request
            .insert(method, p)
            .map_err(|e| ClientError::Custom(format!("{method}: cannot encode parameters: {e}")))?;
        count += 1;
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let response = client.batch_request::<T>(request).await?;
    let answers: Vec<Result<T, ErrorObjectOwned>> = response
        .into_iter()
        .map(|answer| answer.map_err(|e| e.into_owned()))
        .collect();
    if answers.len() != count {
        return Err(ClientError::Custom(format!(
            "{method}: {count} calls in a batch, {} answers",
            answers.len()
        )));
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_one_form_and_never_show_in_debug_output() {
        let token = BearerToken::from_secret(&[0xab; 32]);
        let text = token.expose_secret().to_owned();
        assert_eq!(text, format!("lst_{}", "ab".repeat(32)));
        assert_eq!(
            BearerToken::parse(&format!(" {text}\n"))
                .unwrap_or_else(|e| panic!("{e}"))
                .expose_secret(),
            text
        );
        for bad in [
            "",
            "lst_",
            "ab".repeat(32).as_str(),
            &format!("lst_{}", "AB".repeat(32)),
            &format!("lst_{}", "ab".repeat(31)),
            &format!("lst_{}x", "ab".repeat(32)),
            &format!("xst_{}", "ab".repeat(32)),
        ] {
            assert_eq!(
                BearerToken::parse(bad).map(|_| ()),
                Err(BadToken),
                "{bad:?}"
            );
        }
        let options = ClientOptions::new(DEFAULT_TIMEOUT).with_token(Some(token.clone()));
        for shown in [
            format!("{token:?}"),
            format!("{options:?}"),
            format!("{:?}", "x".parse::<TokenArg>()),
            format!("{:?}", text.parse::<TokenArg>()),
            BadToken.to_string(),
        ] {
            assert!(!shown.contains(&"ab".repeat(8)), "{shown}");
        }
        let header = options.headers().unwrap_or_else(|e| panic!("{e}"));
        let value = &header["authorization"];
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().ok(), Some(format!("Bearer {text}").as_str()));
        assert!(ClientOptions::new(DEFAULT_TIMEOUT)
            .headers()
            .is_ok_and(|h| h.is_empty()));
    }

    #[test]
    fn a_mistyped_token_argument_is_caught_after_parsing_without_being_repeated() {
        let arg: TokenArg = "lst_oops".parse().unwrap_or_else(|e| match e {});
        let error = arg.token().map(|_| ()).unwrap_err();
        assert!(!error.to_string().contains("oops"));
    }
}
