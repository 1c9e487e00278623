//! The message bus on a broker (NATS JetStream): what the event system and
//! the account bridge must agree on when both run with `--bus nats://...`.
//!
//! The event system publishes each payment instruction, signed as on the
//! embedded bus ([`crate::bus::BusMessage::sign`]), as one JSON message on
//! [`DEFAULT_SUBJECT`] of the work-queue stream [`DEFAULT_STREAM`], with
//! the header [`MSG_ID_HEADER`] set to `event id:generation`; the bridges
//! read it through the durable pull consumer [`DEFAULT_CONSUMER`]. The
//! names are flags on both sides (`--bus-stream`, `--bus-subject`,
//! `--bus-consumer`), checked here so that both refuse the same names.
//!
//! This crate does not depend on a NATS client: it only holds the names,
//! the bounds and the parsing of `--bus`.

use std::fmt;
use std::str::FromStr;

/// The stream both sides use unless told otherwise.
pub const DEFAULT_STREAM: &str = "LOCKSTEP_INSTRUCTIONS";
/// The subject instructions are published on.
pub const DEFAULT_SUBJECT: &str = "lockstep.instructions";
/// The durable pull consumer the bridges share.
pub const DEFAULT_CONSUMER: &str = "lockstep-bridge";
/// The header JetStream deduplicates publishes on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";
/// Largest message either side accepts (the stream's `max_msg_size`, and
/// what a bridge decodes): an instruction is a few hundred bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most servers one `--bus` names.
pub const MAX_SERVERS: usize = 16;
/// Longest `--bus` value.
pub const MAX_BUS_URL: usize = 2048;
/// Longest stream or consumer name.
pub const MAX_NAME: usize = 64;
/// Longest subject.
pub const MAX_SUBJECT: usize = 128;

/// Which message bus a process uses (`--bus`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BusChoice {
    /// The event system's own queue (`bus_pull`/`bus_ack`): the default.
    #[default]
    Embedded,
    /// NATS JetStream at these servers.
    Nats(NatsServers),
}

/// The servers of a NATS cluster, each `nats://host:port`. No user name or
/// password: an address is logged, a secret must never be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsServers(Vec<String>);

impl NatsServers {
    /// The servers, each `nats://host:port`.
    pub fn urls(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// Why a `--bus` value, or a stream, consumer or subject name, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BrokerSettingError(String);

fn refuse<T>(why: impl Into<String>) -> Result<T, BrokerSettingError> {
    Err(BrokerSettingError(why.into()))
}

impl FromStr for BusChoice {
    type Err = BrokerSettingError;

    /// `embedded`, or `nats://HOST:PORT[,HOST:PORT...]` (each further
    /// server with or without its own `nats://`; the port defaults to
    /// 4222).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "embedded" {
            return Ok(BusChoice::Embedded);
        }
        if text.len() > MAX_BUS_URL {
            return refuse(format!("--bus: longer than {MAX_BUS_URL} bytes"));
        }
        let Some(rest) = text.strip_prefix("nats://") else {
            return refuse("--bus: `embedded` or nats://HOST:PORT[,HOST:PORT...]");
        };
        let mut servers = Vec::new();
        for part in rest.split(',') {
            let part = part.strip_prefix("nats://").unwrap_or(part);
            if servers.len() == MAX_SERVERS {
                return refuse(format!("--bus: more than {MAX_SERVERS} servers"));
            }
            servers.push(server(part)?);
        }
        Ok(BusChoice::Nats(NatsServers(servers)))
    }
}

/// One `host[:port]`, as `nats://host:port`.
fn server(part: &str) -> Result<String, BrokerSettingError> {
    if part.contains('@') {
        return refuse(
            "--bus: no user or password in the URL (it would be logged and shown in the process list)",
        );
    }
    let (host, port) = match part.strip_prefix('[') {
        // [v6]:port
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (format!("[{host}]"), rest.strip_prefix(':')),
            None => return refuse(format!("--bus: bad address {part:?}")),
        },
        None => match part.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (part.to_owned(), None),
        },
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c));
    if !host_ok {
        return refuse(format!("--bus: bad host in {part:?}"));
    }
    let port: u16 = match port {
        None => 4222,
        Some(text) => match text.parse() {
            Ok(port) if port > 0 => port,
            _ => return refuse(format!("--bus: bad port in {part:?}")),
        },
    };
    Ok(format!("nats://{host}:{port}"))
}

/// A stream or consumer name: 1 to [`MAX_NAME`] of `A-Z a-z 0-9 _ -`.
pub fn check_name(what: &str, name: &str) -> Result<(), BrokerSettingError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        refuse(format!(
            "{what}: 1 to {MAX_NAME} of A-Z a-z 0-9 _ - (got {:?})",
            name.chars().take(MAX_NAME).collect::<String>()
        ))
    }
}

/// A subject to publish on: dot-separated tokens of `A-Z a-z 0-9 _ -`, no
/// wildcards, at most [`MAX_SUBJECT`] bytes.
pub fn check_subject(subject: &str) -> Result<(), BrokerSettingError> {
    let ok = !subject.is_empty()
        && subject.len() <= MAX_SUBJECT
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if ok {
        Ok(())
    } else {
        refuse(format!(
            "--bus-subject: dot-separated tokens of A-Z a-z 0-9 _ -, at most {MAX_SUBJECT} bytes"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(text: &str) -> Vec<String> {
        match text.parse::<BusChoice>() {
            Ok(BusChoice::Nats(servers)) => servers.urls().to_vec(),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn bus_urls_parse_into_servers_and_bad_ones_are_refused() {
        assert_eq!("embedded".parse(), Ok(BusChoice::Embedded));
        assert_eq!(servers("nats://127.0.0.1:4222"), ["nats://127.0.0.1:4222"]);
        assert_eq!(
            servers("nats://a:1,b:2,nats://c"),
            ["nats://a:1", "nats://b:2", "nats://c:4222"]
        );
        assert_eq!(servers("nats://[::1]:5000"), ["nats://[::1]:5000"]);
        for bad in [
            "",
            "http://a:1",
            "nats://",
            "nats://a:0",
            "nats://a:99999",
            "nats://a:1,",
            "nats://user:secret@a:1",
            "nats://a/b",
            "nats://a b:1",
            "nats://[::1",
        ] {
            assert!(bad.parse::<BusChoice>().is_err(), "{bad:?} was accepted");
        }
        let many = format!("nats://{}", vec!["a:1"; MAX_SERVERS + 1].join(","));
        assert!(many.parse::<BusChoice>().is_err());
        let long = format!("nats://{}", "a".repeat(MAX_BUS_URL));
        assert!(long.parse::<BusChoice>().is_err());
        // The refusal of a URL with a password does not repeat it.
        let why = "nats://u:hunter2@a:1"
            .parse::<BusChoice>()
            .expect_err("refused")
            .to_string();
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn names_and_subjects_are_checked() {
        assert!(check_name("--bus-stream", DEFAULT_STREAM).is_ok());
        assert!(check_name("--bus-consumer", DEFAULT_CONSUMER).is_ok());
        assert!(check_subject(DEFAULT_SUBJECT).is_ok());
        for bad in ["", "a.b", "a*", "a b", &"x".repeat(MAX_NAME + 1)] {
            assert!(check_name("n", bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "a..b",
            "a.*",
            "a.>",
            ".a",
            "a b",
            &"x".repeat(MAX_SUBJECT + 1),
        ] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }
}
