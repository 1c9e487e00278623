//! JSON-RPC 2.0 request envelopes checked as the specification says
//! (jsonrpc.org/specification, sections 4 and 7), in front of jsonrpsee on
//! HTTP.
//!
//! jsonrpsee answers some invalid requests in ways the specification does
//! not allow: a request whose `id` is an object or an array got HTTP 200
//! with the body `null`, and one whose `method` is not a string got a parse
//! error (-32700) although it parses. This layer reads each HTTP request
//! body (bounded by the server's request limit) and answers every request
//! object that is not a valid request with -32600 and `"id": null`:
//!
//! - a single invalid request object (or any JSON value that is neither an
//!   object nor an array) gets one error object;
//! - in a batch, the invalid entries get an error each, appended to the
//!   answers of the valid ones (which jsonrpsee serves as a batch of its
//!   own; a batch's answers may come in any order, matched by id).
//!
//! - a notification, or a batch of notifications only, gets an empty body
//!   (jsonrpsee answered `null`): the server must not reply to them.
//!
//! Invalid JSON, an empty batch and everything valid pass through
//! untouched: jsonrpsee answers those as the specification says. Only
//! envelopes are looked at (each value's first byte, through
//! `serde_json::value::RawValue`); parameters are not parsed here.
//!
//! WebSocket frames do not pass through HTTP middleware and are left to
//! jsonrpsee.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use jsonrpsee::core::http_helpers::{read_body, HttpError};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{http as rpc_http, HttpBody, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::value::RawValue;
use tower::{Layer, Service};

/// JSON-RPC's "Invalid Request".
pub const INVALID_REQUEST: i32 = -32600;

/// The error object every invalid request gets, as the specification
/// writes it.
const INVALID_REQUEST_ANSWER: &str =
    r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},"id":null}"#;

/// The layer; see the module docs.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLayer {
    max_request_bytes: u32,
}

impl EnvelopeLayer {
    /// Checks bodies of at most `max_request_bytes` (the server's limit);
    /// larger ones get the server's own "too large" answer.
    pub fn new(max_request_bytes: u32) -> EnvelopeLayer {
        EnvelopeLayer { max_request_bytes }
    }
}

impl<S> Layer<S> for EnvelopeLayer {
    type Service = Envelope<S>;

    fn layer(&self, inner: S) -> Envelope<S> {
        Envelope {
            inner,
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// The service the layer wraps around the server.
#[derive(Debug, Clone)]
pub struct Envelope<S> {
    inner: S,
    max_request_bytes: u32,
}

/// Only the members of a request object that decide whether it is one.
#[derive(Deserialize)]
struct Members<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    /// `Some` whenever the member is there, `null` included: a request
    /// with `"id": null` is a call (answered), not a notification.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

fn first_byte(value: &RawValue) -> u8 {
    value.get().as_bytes().first().copied().unwrap_or(b' ')
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A request: it has an id and gets an answer.
    Call,
    /// A notification: no id, no answer.
    Notification,
    /// Not a valid request object.
    Invalid,
}

/// What `value` is (section 4): a valid request or notification has
/// `"jsonrpc": "2.0"`, a string `method`, `params` (if any) an array or an
/// object, and `id` (if any: a notification has none) a string, a number or
/// null.
fn kind(value: &RawValue) -> Kind {
    if first_byte(value) != b'{' {
        return Kind::Invalid;
    }
    let Ok(members) = serde_json::from_str::<Members<'_>>(value.get()) else {
        return Kind::Invalid;
    };
    let version_ok = members.jsonrpc.is_some_and(|v| v.get() == r#""2.0""#);
    let method_ok = members.method.is_some_and(|m| first_byte(m) == b'"');
    let params_ok = members
        .params
        .is_none_or(|p| matches!(first_byte(p), b'[' | b'{'));
    let id_ok = members
        .id
        .is_none_or(|id| matches!(first_byte(id), b'"' | b'n' | b'-' | b'0'..=b'9'));
    match (version_ok && method_ok && params_ok && id_ok, members.id) {
        (false, _) => Kind::Invalid,
        (true, Some(_)) => Kind::Call,
        (true, None) => Kind::Notification,
    }
}

/// What to do with a body.
enum Verdict {
    /// Pass it on as it is.
    Pass,
    /// Pass it on, and answer nothing: it holds only notifications
    /// (jsonrpsee would answer `null`).
    PassSilently,
    /// Answer with this body, without calling the server.
    Answer(String),
    /// Pass on these entries as a batch, then append `invalid` errors.
    Split { valid: Vec<String>, invalid: usize },
}

fn judge(body: &[u8]) -> Verdict {
    let Ok(value) = serde_json::from_slice::<&RawValue>(body) else {
        // Not JSON (or not one value): jsonrpsee's parse error is right.
        return Verdict::Pass;
    };
    match first_byte(value) {
        b'[' => {
            let Ok(entries) = serde_json::from_str::<Vec<&RawValue>>(value.get()) else {
                return Verdict::Pass;
            };
            if entries.is_empty() {
                return Verdict::Pass;
            }
            let kinds: Vec<Kind> = entries.iter().map(|e| kind(e)).collect();
            type Entries<'a> = Vec<(&'a RawValue, Kind)>;
            let (valid, invalid): (Entries<'_>, Entries<'_>) = entries
                .into_iter()
                .zip(kinds)
                .partition(|(_, k)| *k != Kind::Invalid);
            let calls = valid.iter().filter(|(_, k)| *k == Kind::Call).count();
            match (valid.len(), invalid.len()) {
                (_, 0) if calls == 0 => Verdict::PassSilently,
                (_, 0) => Verdict::Pass,
                (0, n) => Verdict::Answer(errors_array(Vec::new(), n)),
                (_, n) => Verdict::Split {
                    valid: valid.iter().map(|(e, _)| e.get().to_owned()).collect(),
                    invalid: n,
                },
            }
        }
        _ => match kind(value) {
            Kind::Call => Verdict::Pass,
            Kind::Notification => Verdict::PassSilently,
            Kind::Invalid => Verdict::Answer(INVALID_REQUEST_ANSWER.to_owned()),
        },
    }
}

/// A batch answer: `answers` (the server's, as JSON texts) then `invalid`
/// copies of the Invalid Request error.
fn errors_array(answers: Vec<String>, invalid: usize) -> String {
    let items: Vec<&str> = answers
        .iter()
        .map(String::as_str)
        .chain(std::iter::repeat_n(INVALID_REQUEST_ANSWER, invalid))
        .collect();
    format!("[{}]", items.join(","))
}

impl<S> Service<HttpRequest> for Envelope<S>
where
    S: Service<HttpRequest, Response = HttpResponse, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        // WebSocket upgrades and GETs are not JSON-RPC bodies.
        if request.method() != http::Method::POST {
            return Box::pin(self.inner.call(request));
        }
        // The clone serves this call; `self.inner` was made ready for it.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max = self.max_request_bytes;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match read_body(&parts.headers, body, max).await {
                Ok((bytes, _is_single)) => bytes,
                Err(HttpError::TooLarge) => return Ok(rpc_http::response::too_large(max)),
                Err(HttpError::Malformed) => return Ok(rpc_http::response::malformed()),
                Err(HttpError::Stream(e)) => return Err(e),
            };
            match judge(&bytes) {
                Verdict::Pass => {
                    let request = HttpRequest::from_parts(parts, HttpBody::from(bytes));
                    inner.call(request).await
                }
                Verdict::PassSilently => {
                    let request = HttpRequest::from_parts(parts, HttpBody::from(bytes));
                    let response = inner.call(request).await?;
                    let (mut parts, _) = response.into_parts();
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    Ok(HttpResponse::from_parts(parts, HttpBody::empty()))
                }
                Verdict::Answer(answer) => Ok(rpc_http::response::ok_response(answer)),
                Verdict::Split { valid, invalid } => {
                    let batch = format!("[{}]", valid.join(","));
                    let mut parts = parts;
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    let request = HttpRequest::from_parts(parts, HttpBody::from(batch));
                    let response = inner.call(request).await?;
                    let (mut parts, body) = response.into_parts();
                    let body = body.collect().await?.to_bytes();
                    // The valid entries' answers: an array, or nothing when
                    // they were all notifications.
                    let silent = body.iter().all(u8::is_ascii_whitespace) || &body[..] == b"null";
                    let answers: Vec<String> = if silent {
                        Vec::new()
                    } else {
                        match serde_json::from_slice::<Vec<&RawValue>>(&body) {
                            Ok(answers) => answers.iter().map(|a| a.get().to_owned()).collect(),
                            // Not a batch answer (the batch was refused as
                            // a whole, say): pass the server's word on.
                            Err(_) => {
                                return Ok(HttpResponse::from_parts(
                                    parts,
                                    HttpBody::from(body.to_vec()),
                                ))
                            }
                        }
                    };
                    let text = errors_array(answers, invalid);
                    parts.headers.remove(http::header::CONTENT_LENGTH);
                    Ok(HttpResponse::from_parts(parts, HttpBody::from(text)))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(body: &str) -> String {
        match judge(body.as_bytes()) {
            Verdict::Pass => "pass".into(),
            Verdict::PassSilently => "silent".into(),
            Verdict::Answer(a) => a,
            Verdict::Split { valid, invalid } => format!("split {} + {invalid}", valid.len()),
        }
    }

    #[test]
    fn valid_requests_and_bad_json_pass_through() {
        for body in [
            r#"{"jsonrpc":"2.0","method":"subtract","params":[42,23],"id":1}"#,
            r#"{"jsonrpc":"2.0","method":"subtract","params":{"a":1},"id":"x"}"#,
            r#"{"jsonrpc":"2.0","method":"m","id":null}"#,
            r#"{"jsonrpc":"2.0","method":"m","id":-1}"#,
            r#"{"jsonrpc":"2.0","method":"foobar, "params":"bar", "baz]"#,
            r#"[]"#,
            r#"[{"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},{"jsonrpc":"2.0","method""#,
        ] {
            assert_eq!(verdict(body), "pass", "{body}");
        }
    }

    #[test]
    fn notifications_alone_get_no_answer() {
        for body in [
            r#"{"jsonrpc":"2.0","method":"update","params":[1,2,3,4,5]}"#,
            r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b","params":[7]}]"#,
        ] {
            assert_eq!(verdict(body), "silent", "{body}");
        }
        // With one call among them, the call is answered.
        let mixed = r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b","id":1}]"#;
        assert_eq!(verdict(mixed), "pass");
    }

    #[test]
    fn invalid_request_objects_get_invalid_request_with_a_null_id() {
        for body in [
            r#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#,
            r#"{"jsonrpc":"2.0","method":"m","id":{"a":1}}"#,
            r#"{"jsonrpc":"2.0","method":"m","id":[1]}"#,
            r#"{"jsonrpc":"2.0","method":"m","id":true}"#,
            r#"{"jsonrpc":"2.0","method":"m","params":"bar","id":1}"#,
            r#"{"jsonrpc":"1.0","method":"m","id":1}"#,
            r#"{"method":"m","id":1}"#,
            r#"1"#,
            r#""text""#,
        ] {
            assert_eq!(verdict(body), INVALID_REQUEST_ANSWER, "{body}");
        }
    }

    #[test]
    fn a_batch_answers_each_invalid_entry() {
        assert_eq!(verdict("[1]"), format!("[{INVALID_REQUEST_ANSWER}]"));
        assert_eq!(
            verdict("[1,2,3]"),
            format!("[{0},{0},{0}]", INVALID_REQUEST_ANSWER)
        );
        let mixed = r#"[
            {"jsonrpc":"2.0","method":"sum","params":[1,2,4],"id":"1"},
            {"jsonrpc":"2.0","method":"notify_hello","params":[7]},
            {"foo":"boo"},
            {"jsonrpc":"2.0","method":"get_data","id":"9"}
        ]"#;
        assert_eq!(verdict(mixed), "split 3 + 1");
        assert_eq!(
            errors_array(vec![r#"{"a":1}"#.into()], 2),
            format!(r#"[{{"a":1}},{0},{0}]"#, INVALID_REQUEST_ANSWER)
        );
    }
}
