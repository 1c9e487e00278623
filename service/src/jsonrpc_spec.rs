//! The JSON-RPC 2.0 specification's own examples (jsonrpc.org/specification,
//! section 7), held against a running server: a helper for the node's and
//! the event system's tests (cargo feature `test-utils`).
//!
//! The examples call `subtract`, `sum` and the like; here they call
//! `method`, a method of the server under test that takes no parameters
//! (`params: []`), and `nonexistent_method` where the specification calls a
//! method that does not exist. Bodies go over a plain TCP connection
//! exactly as written, since a JSON-RPC client library would not send most
//! of them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// A raw HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The body (chunked transfer decoded).
    pub body: String,
}

/// POSTs `body` as `application/json` to `http://addr/` with extra
/// `headers`, on a connection of its own; returns the status and body.
/// Panics on a transport failure (a test helper).
pub fn http_post(addr: SocketAddr, body: &[u8], headers: &[(&str, &str)]) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    HttpAnswer { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

/// What an example must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One response object with a result, for this id (as JSON text).
    Result(&'static str),
    /// One error object with this code and `"id": null`.
    Error(i64),
    /// One error object with this code for this id.
    ErrorFor(i64, &'static str),
    /// An array of this many Invalid Request errors, nothing else.
    InvalidBatch(usize),
    /// An empty body: notifications get no answer.
    Nothing,
    /// The mixed batch of the specification: results for ids "1", "2" and
    /// "9", -32601 for "5", and one Invalid Request with a null id.
    MixedBatch,
}

/// One example: a name, the body as sent, what it must get back.
#[derive(Debug, Clone)]
pub struct Example {
    /// What it is.
    pub name: &'static str,
    /// The body as sent.
    pub body: String,
    /// What must come back.
    pub expect: Expect,
}

/// The examples of section 7, calling `method` (no parameters), and the
/// invalid ids of section 4 (an object, an array).
pub fn examples(method: &str) -> Vec<Example> {
    let call =
        |id: &str| format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":[],"id":{id}}}"#);
    let notify = format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":[]}}"#);
    let ex = |name, body: String, expect| Example { name, body, expect };
    vec![
        ex("rpc call", call("1"), Expect::Result("1")),
        ex(
            "rpc call with a string id",
            call(r#""abc""#),
            Expect::Result(r#""abc""#),
        ),
        ex("a notification", notify.clone(), Expect::Nothing),
        ex(
            "rpc call of non-existent method",
            r#"{"jsonrpc":"2.0","method":"nonexistent_method","id":"1"}"#.into(),
            Expect::ErrorFor(-32601, r#""1""#),
        ),
        ex(
            "rpc call with invalid JSON",
            r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#.into(),
            Expect::Error(-32700),
        ),
        ex(
            "rpc call with invalid Request object",
            r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#.into(),
            Expect::Error(-32600),
        ),
        ex(
            "rpc call Batch, invalid JSON",
            format!(r#"[{},{{"jsonrpc": "2.0", "method""#, call(r#""1""#)),
            Expect::Error(-32700),
        ),
        ex(
            "rpc call with an empty Array",
            "[]".into(),
            Expect::Error(-32600),
        ),
        ex(
            "rpc call with an invalid Batch (but not empty)",
            "[1]".into(),
            Expect::InvalidBatch(1),
        ),
        ex(
            "rpc call with invalid Batch",
            "[1,2,3]".into(),
            Expect::InvalidBatch(3),
        ),
        ex(
            "rpc call Batch",
            format!(
                r#"[{},{notify},{},{{"foo": "boo"}},{},{}]"#,
                call(r#""1""#),
                call(r#""2""#),
                r#"{"jsonrpc":"2.0","method":"nonexistent_method","params":{"name":"myself"},"id":"5"}"#,
                call(r#""9""#),
            ),
            Expect::MixedBatch,
        ),
        ex(
            "rpc call Batch (all notifications)",
            format!("[{notify},{notify}]"),
            Expect::Nothing,
        ),
        ex(
            "an id that is an object",
            format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":[],"id":{{"a":1}}}}"#),
            Expect::Error(-32600),
        ),
        ex(
            "an id that is an array",
            format!(r#"{{"jsonrpc":"2.0","method":"{method}","params":[],"id":[1]}}"#),
            Expect::Error(-32600),
        ),
    ]
}

fn error_of(value: &Value) -> Option<(i64, Value)> {
    Some((value["error"]["code"].as_i64()?, value["id"].clone()))
}

/// Whether `answer` is what `expect` says; `Err` says what is wrong.
pub fn check(expect: Expect, answer: &HttpAnswer) -> Result<(), String> {
    let body = answer.body.trim();
    if expect == Expect::Nothing {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(format!("expected no answer, got {body}"))
        };
    }
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body:?}"))?;
    let id = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let ok = match expect {
        Expect::Result(want) => value.get("result").is_some() && value["id"] == id(want),
        Expect::Error(code) => error_of(&value) == Some((code, Value::Null)),
        Expect::ErrorFor(code, want) => error_of(&value) == Some((code, id(want))),
        Expect::InvalidBatch(n) => value.as_array().is_some_and(|items| {
            items.len() == n
                && items
                    .iter()
                    .all(|i| error_of(i) == Some((-32600, Value::Null)))
        }),
        Expect::MixedBatch => value.as_array().is_some_and(|items| {
            let result_for = |want: &str| {
                items
                    .iter()
                    .any(|i| i.get("result").is_some() && i["id"] == want)
            };
            items.len() == 5
                && ["1", "2", "9"].into_iter().all(result_for)
                && items
                    .iter()
                    .any(|i| error_of(i) == Some((-32601, Value::from("5"))))
                && items
                    .iter()
                    .any(|i| error_of(i) == Some((-32600, Value::Null)))
        }),
        Expect::Nothing => unreachable!("handled above"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {expect:?}, got {body}"))
    }
}

/// Sends every example to the server at `addr` (with `headers`, e.g. a
/// credential) and panics listing each one whose answer is wrong.
pub fn assert_server_follows_the_specification(
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
) {
    let failures: Vec<String> = examples(method)
        .into_iter()
        .filter_map(|example| {
            let answer = http_post(addr, example.body.as_bytes(), headers);
            check(example.expect, &answer)
                .err()
                .map(|why| format!("{}: {why} (HTTP {})", example.name, answer.status))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "the server at {addr} answers {} of the specification's examples wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> HttpAnswer {
        HttpAnswer {
            status: 200,
            body: body.into(),
        }
    }

    #[test]
    fn the_checks_tell_right_answers_from_wrong_ones() {
        let invalid =
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},"id":null}"#;
        assert!(check(Expect::Error(-32600), &answer(invalid)).is_ok());
        // What jsonrpsee answered before: `null`, or a parse error.
        assert!(check(Expect::Error(-32600), &answer("null")).is_err());
        let parse =
            r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}"#;
        assert!(check(Expect::Error(-32600), &answer(parse)).is_err());
        assert!(check(
            Expect::InvalidBatch(2),
            &answer(&format!("[{invalid},{invalid}]"))
        )
        .is_ok());
        assert!(check(Expect::InvalidBatch(2), &answer(&format!("[{invalid}]"))).is_err());
        assert!(check(
            Expect::Result("1"),
            &answer(r#"{"jsonrpc":"2.0","result":"x","id":1}"#)
        )
        .is_ok());
        assert!(check(
            Expect::Result("1"),
            &answer(r#"{"jsonrpc":"2.0","result":"x","id":2}"#)
        )
        .is_err());
        assert!(check(Expect::Nothing, &answer("  ")).is_ok());
        assert!(check(Expect::Nothing, &answer("[]")).is_err());
        assert_eq!(dechunk("5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n"), "hello!!!");
    }
}
