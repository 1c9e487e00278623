//! Credentials and roles: calls without a credential, with the wrong role, or with a revoked one.
//!
//! The event system runs as `scripts/testnet.sh` runs it, with a
//! credentials file of one token per role. The attacker reaches its port
//! and may hold some token, just not the right one:
//!
//! - without a token, with a made-up one or with another scheme, every
//!   request (HTTP or WebSocket upgrade) gets HTTP 401 with the JSON-RPC
//!   error 2050 before anything is read, and the refusals are counted;
//! - with a token whose roles may not call a method, every method of the
//!   API's table is refused with 2051 naming the roles that may, alone or
//!   inside a batch, over HTTP or WebSocket;
//! - a token revoked (its line removed, then SIGHUP) is refused from its
//!   next call on, even on a WebSocket opened before;
//! - without the bridge role, nothing can be pulled, acknowledged or
//!   receipted, not even with a receipt the real bridge key signed;
//! - a submitter cannot order a payment from a payer outside its scope;
//! - one credential's flood does not hold back another's registrations:
//!   beyond its rate (2053) or its bound of Registered events (2054) it is
//!   refused, across a kill -9 too, and what was refused is never paid,
//!   even once its transfer finalizes;
//! - after all of it, no token appears in any process's log.
//!
//! Each test checks that nothing was registered, paid or acknowledged
//! beyond what the test itself did with the right credential.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jsonrpsee::core::client::{ClientT, Error as ClientError, SubscriptionClientT};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::rpc_params;
use jsonrpsee::types::ErrorObjectOwned;
use lockstep_api::client::{is_unauthenticated, BearerToken, ClientOptions};
use lockstep_api::event::{PaymentInstruction, PaymentReceipt, RegisterRequest};
use lockstep_api::lifecycle::State;
use lockstep_api::offchain::error::{
    TooManyPending, FORBIDDEN, NOT_FOUND, PAYER_NOT_ALLOWED, RATE_LIMITED, TOO_MANY_PENDING,
    UNAUTHENTICATED,
};
use lockstep_api::offchain::{Access, EventApiClient, ItemResult, RequiredRoles, Role, ACCESS};
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Hash, Keypair};
use parity_scale_codec::Encode;
use serde_json::{json, Value};

use super::{metric, paid_events, scrape};
use crate::harness::{binary, exclusive, free_port};
use crate::system::{create_token, events_client, head, Deal, Settlement, System, CURRENCY};

/// A well-formed token that is on no one's record.
fn made_up_token() -> BearerToken {
    BearerToken::from_secret(&Keypair::generate().seed())
}

/// A WebSocket client of the event system presenting `token`.
async fn ws_client(
    system: &System,
    token: Option<&BearerToken>,
) -> Result<jsonrpsee::ws_client::WsClient, ClientError> {
    let options = ClientOptions::new(Duration::from_secs(10)).with_token(token.cloned());
    lockstep_api::client::ws_with(&system.events_url, &options).await
}

/// A registration by hash of a transfer that will never exist (it is
/// Cancelled after its expiry; nothing is paid for it).
fn registration(id: &str, payer: &str, valid_until: u64) -> RegisterRequest {
    RegisterRequest {
        id: id.to_owned(),
        tx: None,
        tx_hash: Some(Hash::digest(id.as_bytes())),
        valid_until: Some(valid_until),
        payment: PaymentInstruction {
            payer: payer.to_owned(),
            payee: "heidi".to_owned(),
            amount: "1".to_owned(),
            currency: CURRENCY.to_owned(),
        },
    }
}

/// Parameters that would be valid for `method`: the refusal must come from
/// the role check, not from a parameter the method would have refused.
fn params_json(method: &str, id: &str, valid_until: u64) -> Vec<Value> {
    let receipt = PaymentReceipt::sign(&Keypair::generate(), id, "ledger-1");
    let registration = registration(id, "bob", valid_until);
    match method {
        "event_register" => vec![json!(registration)],
        "event_registerBatch" => vec![json!([registration])],
        "event_get" | "event_history" => vec![json!(id)],
        "event_unsubscribe" => vec![json!("0")],
        "event_postReceipt" => vec![json!(receipt)],
        "event_postReceipts" => vec![json!([receipt])],
        "bus_pull" => vec![json!(1), json!(100)],
        "bus_ack" => vec![json!("no-such-lease")],
        _ => Vec::new(),
    }
}

/// [`params_json`] for a typed client.
fn params_for(method: &str, id: &str, valid_until: u64) -> ArrayParams {
    let mut params = ArrayParams::new();
    for value in params_json(method, id, valid_until) {
        params.insert(value).expect("JSON parameters");
    }
    params
}

/// The refusal of a call that was answered with an error.
fn refusal<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorObjectOwned {
    match result {
        Err(ClientError::Call(error)) => error,
        other => panic!("expected a JSON-RPC refusal, got {other:?}"),
    }
}

/// The roles in a FORBIDDEN refusal's `data`.
fn required_roles(error: &ErrorObjectOwned) -> Vec<Role> {
    let data = error.data().expect("FORBIDDEN carries the required roles");
    serde_json::from_str::<RequiredRoles>(data.get())
        .expect("data is {\"required\": [...]}")
        .required
}

/// Sends one HTTP POST with `authorization` (the header's value) and
/// `body`; returns the status code and the body.
fn raw_post(url: &str, authorization: Option<&str>, body: &str) -> (u16, String) {
    let addr = url.strip_prefix("http://").expect("an http:// URL");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the event system");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let auth = authorization
        .map(|value| format!("Authorization: {value}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Sends SIGHUP to the event system and waits until it logs the reload with
/// `count` credentials.
fn reload(system: &mut System, count: usize) {
    let pid = system.events.pid().expect("the event system is running");
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
    let marker = format!("credentials reloaded, {count} on record");
    tokio::task::block_in_place(|| system.events.wait_for_log(&marker));
}

/// `lockstep-offchain token revoke`.
fn revoke(credentials: &Path, name: &str) {
    let output = Command::new(binary("lockstep-offchain"))
        .args(["token", "revoke", "--credentials"])
        .arg(credentials)
        .args(["--name", name])
        .output()
        .expect("run lockstep-offchain token revoke");
    assert!(
        output.status.success(),
        "token revoke: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every event id the store holds, with its state.
async fn stored_events(system: &System) -> BTreeMap<String, State> {
    system
        .events_rpc()
        .list(None)
        .await
        .expect("event_list")
        .events
        .into_iter()
        .map(|event| (event.id, event.state))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_or_an_unknown_one_gets_401_on_every_method() {
    let _one_at_a_time = exclusive().await;
    let metrics_port = free_port();
    let system = System::start_with(1, &["--prometheus-port", &metrics_port.to_string()]).await;
    let valid_until = head(&system).await + 100;
    let made_up = made_up_token();
    let headers = [
        None,
        Some(format!("Bearer {}", made_up.expose_secret())),
        Some("Bearer ".to_owned()),
        Some(format!("Basic {}", system.tokens.submitter.expose_secret())),
        Some(format!(
            "Bearer {}x",
            system.tokens.submitter.expose_secret()
        )),
    ];
    let mut refused = 0;
    for (method, _) in ACCESS {
        let id = format!("no-credential-{}", method.replace('_', "-"));
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": method,
            "params": params_json(method, &id, valid_until),
        })
        .to_string();
        for header in &headers {
            let (status, answer) = raw_post(&system.events_url, header.as_deref(), &body);
            assert_eq!(status, 401, "{method} with {header:?}: {answer}");
            let answer: Value = serde_json::from_str(&answer).expect("a JSON-RPC error body");
            assert_eq!(answer["error"]["code"], UNAUTHENTICATED, "{answer}");
            assert_eq!(answer["id"], Value::Null, "{answer}");
            refused += 1;
        }
    }
    // A batch, and the typed clients, the same.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"event_stats"},{"jsonrpc":"2.0","id":2,"method":"bus_pull"}]"#;
    assert_eq!(raw_post(&system.events_url, None, batch).0, 401);
    for token in [None, Some(&made_up)] {
        let http = events_client(&system.events_url, token);
        let error = http.stats().await.expect_err("refused");
        assert!(is_unauthenticated(&error), "{error:?}");
        let ws = ws_client(&system, token)
            .await
            .map(|_| ())
            .expect_err("upgrade refused");
        assert!(is_unauthenticated(&ws), "{ws:?}");
        refused += 2;
    }

    // Nothing was registered; every refusal was counted.
    let stored = stored_events(&system).await;
    assert!(stored.is_empty(), "{stored:?}");
    let text = scrape(metrics_port).expect("metrics port");
    let counted = metric(
        &text,
        "lockstep_offchain_auth_refusals_total{reason=\"unauthenticated\"}",
    )
    .unwrap_or(0);
    assert!(counted >= refused, "{counted} of {refused} counted: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_role_is_refused_on_every_method() {
    let _one_at_a_time = exclusive().await;
    let system = System::start(1).await;
    let valid_until = head(&system).await + 100;
    let token_of = |role: Role| match role {
        Role::Submitter => &system.tokens.submitter,
        Role::Reader => &system.tokens.reader,
        Role::Bridge => &system.tokens.bridge,
    };

    // The table covers every method the server serves.
    let served = system
        .events_rpc()
        .request::<lockstep_api::RpcMethods, _>("rpc_methods", rpc_params![])
        .await
        .expect("rpc_methods")
        .methods;
    for method in &served {
        assert!(
            lockstep_api::offchain::access(method).is_some(),
            "{method} is served but not in the access table"
        );
    }

    let mut wrong = 0;
    for (method, access) in ACCESS {
        let Access::Roles(allowed) = access else {
            continue;
        };
        for role in Role::ALL.into_iter().filter(|r| !allowed.contains(r)) {
            let token = token_of(role);
            let id = format!("wrong-role-{role}-{}", method.replace('_', "-"));
            let http = events_client(&system.events_url, Some(token));
            let error = refusal(
                http.request::<Value, _>(method, params_for(method, &id, valid_until))
                    .await,
            );
            assert_eq!(error.code(), FORBIDDEN, "{method} as {role}: {error:?}");
            assert_eq!(required_roles(&error), allowed.to_vec(), "{method}");
            assert!(
                !error.message().contains(token.expose_secret()),
                "{error:?}"
            );
            wrong += 1;
        }
    }
    assert!(wrong >= 15, "{wrong} wrong-role calls");

    // Over a WebSocket: the bridge may not follow the transition feed, a
    // reader may.
    let bridge_ws = ws_client(&system, Some(&system.tokens.bridge))
        .await
        .expect("the bridge's WebSocket");
    let refused = bridge_ws
        .subscribe::<Value, _>("event_subscribe", rpc_params![], "event_unsubscribe")
        .await
        .map(|_| ());
    let refused = refusal(refused);
    assert_eq!(refused.code(), FORBIDDEN, "{refused:?}");
    assert_eq!(required_roles(&refused), [Role::Submitter, Role::Reader]);
    let reader_ws = ws_client(&system, Some(&system.tokens.reader))
        .await
        .expect("the reader's WebSocket");
    reader_ws
        .subscribe::<Value, _>("event_subscribe", rpc_params![], "event_unsubscribe")
        .await
        .expect("a reader follows the feed");

    // In a batch, each call on its own: the reader's stats are served, its
    // bus_pull is refused.
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"event_stats"},{"jsonrpc":"2.0","id":2,"method":"bus_pull","params":[1,100]}]"#;
    let reader_header = format!("Bearer {}", system.tokens.reader.expose_secret());
    let (status, answer) = raw_post(&system.events_url, Some(&reader_header), batch);
    assert_eq!(status, 200, "{answer}");
    let answers: Vec<Value> = serde_json::from_str(&answer).expect("a batch answer");
    let by_id = |id: u64| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer {id}: {answer}"))
    };
    assert!(by_id(1)["result"]["lastSeq"].is_u64(), "{answer}");
    assert_eq!(by_id(2)["error"]["code"], FORBIDDEN, "{answer}");

    // The right role passes the check (whatever the method then says).
    for role in Role::ALL {
        let http = events_client(&system.events_url, Some(token_of(role)));
        for (method, access) in ACCESS {
            let allowed = match access {
                Access::AnyCredential => true,
                Access::Roles(roles) => roles.contains(&role),
            };
            if !allowed || method.contains("subscribe") || method == "bus_pull" {
                continue;
            }
            let id = format!("right-role-{role}-{}", method.replace('_', "-"));
            let answer = http
                .request::<Value, _>(method, params_for(method, &id, valid_until))
                .await;
            if let Err(ClientError::Call(e)) = &answer {
                assert!(
                    ![FORBIDDEN, UNAUTHENTICATED].contains(&e.code()),
                    "{method} as {role}: {e:?}"
                );
            } else {
                answer.unwrap_or_else(|e| panic!("{method} as {role}: {e:?}"));
            }
        }
    }

    // Only the submitter's own registrations exist.
    let stored = stored_events(&system).await;
    let ids: Vec<&String> = stored.keys().collect();
    assert!(
        ids.iter().all(|id| id.starts_with("right-role-submitter-")),
        "{ids:?}"
    );
    assert_eq!(
        ids.len(),
        2,
        "event_register and event_registerBatch: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_credential_is_refused_from_its_next_call_on() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(1).await;
    let valid_until = head(&system).await + 100;
    let temporary = create_token(
        &system.credentials,
        "temporary",
        "submitter,reader,bridge",
        None,
    );
    let http = events_client(&system.events_url, Some(&temporary));

    // Not admitted before the event system reloads its file.
    let early = http.stats().await.expect_err("not loaded yet");
    assert!(is_unauthenticated(&early), "{early:?}");
    reload(&mut system, 4);
    http.stats().await.expect("admitted after the reload");
    http.register(registration("before-revocation", "bob", valid_until))
        .await
        .expect("registers while on record");
    let ws = ws_client(&system, Some(&temporary))
        .await
        .expect("a WebSocket opened before the revocation");
    ws.request::<Value, _>("event_stats", rpc_params![])
        .await
        .expect("served on the WebSocket");

    revoke(&system.credentials, "temporary");
    reload(&mut system, 3);
    for (method, _) in ACCESS {
        let id = format!("revoked-{}", method.replace('_', "-"));
        let error = http
            .request::<Value, _>(method, params_for(method, &id, valid_until))
            .await
            .expect_err("refused");
        assert!(is_unauthenticated(&error), "{method}: {error:?}");
    }
    // The open WebSocket too, from its next call on.
    let error = refusal(ws.request::<Value, _>("event_stats", rpc_params![]).await);
    assert_eq!(error.code(), UNAUTHENTICATED, "{error:?}");
    let error = refusal(
        ws.request::<Value, _>(
            "event_register",
            rpc_params![registration("revoked-ws", "bob", valid_until)],
        )
        .await,
    );
    assert_eq!(error.code(), UNAUTHENTICATED, "{error:?}");
    let upgrade = ws_client(&system, Some(&temporary)).await.map(|_| ());
    assert!(
        upgrade.as_ref().is_err_and(is_unauthenticated),
        "{upgrade:?}"
    );

    // Only what it registered while on record exists; the others still work.
    let stored = stored_events(&system).await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ["before-revocation"],
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_and_receipts_need_the_bridge_role() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(1).await;
    // Nobody consumes the bus while the attacker tries.
    assert!(system.bridge.terminate().success());

    let valid_until = head(&system).await + 200;
    let settlement = Settlement::new(
        &system.net,
        "owed".into(),
        Deal {
            from: "alice",
            nonce: 0,
            to: "bob",
            asset: 5,
            cents: 250,
            valid_until,
        },
    );
    let client = system.client();
    settlement.register(&client).await;
    settlement.submit(&client, 0).await;
    system
        .await_condition(
            "the event PendingAccount with its instruction on the bus",
            || async {
                let pending = system
                    .events_rpc()
                    .get("owed".into())
                    .await
                    .is_ok_and(|e| e.state == State::PendingAccount);
                pending && system.stats().await.is_some_and(|s| s.bus_depth == 1)
            },
        )
        .await;

    // A receipt the real bridge key signed, in the wrong hands.
    let bridge_key = lockstep_service::keyfile::read(&system.net.dir().join("bridge-key.json"))
        .expect("the bridge's key file");
    let genuine = PaymentReceipt::sign(&bridge_key, "owed", "ledger-forged-1");
    for token in [&system.tokens.submitter, &system.tokens.reader] {
        let http = events_client(&system.events_url, Some(token));
        let pulled = refusal(
            http.request::<Value, _>("bus_pull", rpc_params![100, 600_000])
                .await,
        );
        assert_eq!(pulled.code(), FORBIDDEN, "{pulled:?}");
        let acked = refusal(
            http.request::<Value, _>("bus_ack", rpc_params!["any-lease"])
                .await,
        );
        assert_eq!(acked.code(), FORBIDDEN, "{acked:?}");
        let posted = refusal(http.post_receipt(genuine.clone()).await);
        assert_eq!(posted.code(), FORBIDDEN, "{posted:?}");
        let posted = refusal(http.post_receipts(vec![genuine.clone()]).await);
        assert_eq!(posted.code(), FORBIDDEN, "{posted:?}");
        assert_eq!(required_roles(&posted), [Role::Bridge]);
    }
    // Nothing moved: the event still owed, its instruction still queued
    // (not leased away), nothing paid.
    let event = system
        .events_rpc()
        .get("owed".into())
        .await
        .expect("event_get");
    assert_eq!(event.state, State::PendingAccount, "{event:?}");
    assert!(event.receipt.is_none(), "{event:?}");
    assert_eq!(system.stats().await.map(|s| s.bus_depth), Some(1));
    assert!(paid_events(&system.ledger).is_empty());

    // The control: the real bridge, with its role, pays it once.
    system.bridge.spawn();
    system
        .await_condition("the event Completed by the bridge", || async {
            system
                .events_rpc()
                .get("owed".into())
                .await
                .is_ok_and(|e| e.state == State::Completed)
        })
        .await;
    assert_eq!(paid_events(&system.ledger), ["owed"]);
    let event = system
        .events_rpc()
        .get("owed".into())
        .await
        .expect("event_get");
    let reference = event.receipt.map(|r| r.payment_reference);
    assert_ne!(reference.as_deref(), Some("ledger-forged-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_outside_a_submitters_scope_is_refused() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(1).await;
    let valid_until = head(&system).await + 200;
    let scoped = create_token(
        &system.credentials,
        "bank-a",
        "submitter",
        Some("bob,acme-*"),
    );
    reload(&mut system, 4);
    let http = events_client(&system.events_url, Some(&scoped));

    for (id, payer) in [("scope-bob", "bob"), ("scope-acme", "acme-7")] {
        http.register(registration(id, payer, valid_until))
            .await
            .unwrap_or_else(|e| panic!("{payer} is in scope: {e:?}"));
    }
    for (id, payer) in [
        ("scope-charlie", "charlie"),
        ("scope-acm", "acm"),
        ("scope-xacme", "xacme-1"),
    ] {
        let error = refusal(http.register(registration(id, payer, valid_until)).await);
        assert_eq!(error.code(), PAYER_NOT_ALLOWED, "{payer}: {error:?}");
        assert!(error.message().contains("bank-a"), "{error:?}");
    }
    // A batch is answered item by item.
    let items: Vec<ItemResult<lockstep_api::event::Event>> = http
        .register_batch(vec![
            registration("batch-dave", "dave", valid_until),
            registration("batch-bob", "bob", valid_until),
            registration("batch-eve", "eve", valid_until),
        ])
        .await
        .expect("event_registerBatch");
    let codes: Vec<Option<i32>> = items
        .iter()
        .map(|item| item.error.as_ref().map(|e| e.code))
        .collect();
    assert_eq!(
        codes,
        [Some(PAYER_NOT_ALLOWED), None, Some(PAYER_NOT_ALLOWED)]
    );

    // A real settlement with a payer outside the scope: refused, so never
    // paid, though its transfer finalizes.
    let settlement = Settlement::new(
        &system.net,
        "scope-real".into(),
        Deal {
            from: "alice",
            nonce: 0,
            to: "charlie",
            asset: 5,
            cents: 300,
            valid_until,
        },
    );
    let error = refusal(
        http.register(RegisterRequest {
            id: settlement.id.clone(),
            tx: Some(to_hex(&settlement.tx.encode())),
            tx_hash: None,
            valid_until: None,
            payment: settlement.payment(),
        })
        .await,
    );
    assert_eq!(error.code(), PAYER_NOT_ALLOWED, "{error:?}");
    settlement.submit(&system.client(), 0).await;
    system.net.await_tx(0, &settlement.tx.hash()).await;

    let stored = stored_events(&system).await;
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ["batch-bob", "scope-acme", "scope-bob"],
        "{stored:?}"
    );
    let unknown = refusal(system.events_rpc().get("scope-real".into()).await);
    assert_eq!(unknown.code(), NOT_FOUND);
    assert!(paid_events(&system.ledger).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_credential_leaves_anothers_registrations_alone() {
    let _one_at_a_time = exclusive().await;
    // Per credential: 40 at once, then 1 a second, and at most 25 events in
    // Registered at a time.
    let metrics_port = free_port();
    let mut system = System::start_with(
        1,
        &[
            "--register-rate",
            "1",
            "--register-burst",
            "40",
            "--max-registered-per-credential",
            "25",
            "--prometheus-port",
            &metrics_port.to_string(),
        ],
    )
    .await;
    // Long enough that none of the flood's events (transfers that never
    // come) is final before the test ends: they stay Registered.
    let valid_until = head(&system).await + 2000;
    let calm = create_token(&system.credentials, "calm", "submitter", None);
    reload(&mut system, 4);

    let flooder = events_client(&system.events_url, Some(&system.tokens.submitter));
    let first = flooder
        .register_batch(
            (0..50)
                .map(|i| registration(&format!("flood-{i}"), "bob", valid_until))
                .collect(),
        )
        .await
        .expect("event_registerBatch");
    let codes: Vec<Option<i32>> = first
        .iter()
        .map(|item| item.error.as_ref().map(|e| e.code))
        .collect();
    assert_eq!(
        codes,
        [
            vec![None; 25],
            vec![Some(TOO_MANY_PENDING); 15],
            vec![Some(RATE_LIMITED); 10]
        ]
        .concat(),
        "the bound within the burst, then the rate"
    );
    // The flood goes on while the calm credential registers, and has a
    // transfer of its own settled.
    let flood = {
        let flooder = flooder.clone();
        tokio::spawn(async move {
            let (mut limited, mut bounded) = (0, 0);
            let mut count = |code: Option<i32>| match code {
                Some(RATE_LIMITED) => limited += 1,
                Some(TOO_MANY_PENDING) => bounded += 1,
                other => panic!("a flood registration answered {other:?}"),
            };
            for round in 0..20 {
                let batch = (0..50)
                    .map(|i| registration(&format!("flood-{round}-{i}"), "bob", valid_until))
                    .collect();
                let items = flooder.register_batch(batch).await.expect("a flood batch");
                for item in items {
                    count(item.error.map(|e| e.code));
                }
                let single = flooder
                    .register(registration(
                        &format!("flood-single-{round}"),
                        "bob",
                        valid_until,
                    ))
                    .await;
                count(match single {
                    Err(ClientError::Call(e)) => Some(e.code()),
                    Err(e) => panic!("a flood registration: {e}"),
                    Ok(_) => None,
                });
            }
            (limited, bounded)
        })
    };
    let calm_http = events_client(&system.events_url, Some(&calm));
    for i in 0..20 {
        calm_http
            .register(registration(&format!("calm-{i}"), "bob", valid_until))
            .await
            .unwrap_or_else(|e| panic!("calm-{i} was held back by the other's flood: {e:?}"));
    }
    let paid = Settlement::new(
        &system.net,
        "calm-paid".into(),
        Deal {
            from: "alice",
            nonce: 0,
            to: "bob",
            asset: 5,
            cents: 100,
            valid_until,
        },
    );
    let calm_client = system.client().with_events(calm_http.clone());
    paid.register(&calm_client).await;
    paid.submit(&calm_client, 0).await;
    let (limited, bounded) = flood.await.expect("the flood task");
    // Beyond its burst, every one of the flood's registrations was refused:
    // by the rate, or (what the rate let through) by the bound.
    assert_eq!(
        limited + bounded,
        1020,
        "{limited} over the rate, {bounded} over the bound"
    );

    // The flooder's real transfers, refused, then sent to the chain
    // anyway: they finalize, and nothing is paid for them.
    let refused: Vec<Settlement> = (0..3)
        .map(|nonce| {
            Settlement::new(
                &system.net,
                format!("flood-paid-{nonce}"),
                Deal {
                    from: "charlie",
                    nonce,
                    to: "dave",
                    asset: 5,
                    cents: 100,
                    valid_until,
                },
            )
        })
        .collect();
    for settlement in &refused {
        let error = refusal(
            flooder
                .register(RegisterRequest {
                    id: settlement.id.clone(),
                    tx: Some(to_hex(&settlement.tx.encode())),
                    tx_hash: None,
                    valid_until: None,
                    payment: settlement.payment(),
                })
                .await,
        );
        assert!(
            [RATE_LIMITED, TOO_MANY_PENDING].contains(&error.code()),
            "{error:?}"
        );
        settlement.submit(&system.client(), 0).await;
    }
    for settlement in &refused {
        system.net.await_tx(0, &settlement.tx.hash()).await;
    }
    let settled = system.await_final(&["calm-paid".to_owned()]).await;
    assert_eq!(settled[0].state, State::Completed, "{:?}", settled[0]);
    assert_eq!(paid_events(&system.ledger), ["calm-paid"]);
    for settlement in &refused {
        let unknown = refusal(system.events_rpc().get(settlement.id.clone()).await);
        assert_eq!(unknown.code(), NOT_FOUND, "{}", settlement.id);
    }
    let stored = stored_events(&system).await;
    let calm_count = stored.keys().filter(|id| id.starts_with("calm-")).count();
    assert_eq!(calm_count, 21);
    let flooded: Vec<&String> = stored
        .keys()
        .filter(|id| id.starts_with("flood-"))
        .collect();
    assert_eq!(flooded.len(), 25, "{flooded:?}");
    let text = scrape(metrics_port).expect("metrics port");
    let counted = metric(
        &text,
        "lockstep_offchain_auth_refusals_total{reason=\"too_many_pending\"}",
    )
    .unwrap_or(0);
    assert!(counted >= 15 + bounded as u64, "{counted}: {text}");

    // Killed and restarted: the flooder still holds its 25 (its rate is
    // full again, so only the bound refuses it), the calm one registers.
    system.events.kill();
    system.events.spawn();
    system.await_events_following().await;
    let after = refusal(
        flooder
            .register(registration("flood-after-restart", "bob", valid_until))
            .await,
    );
    assert_eq!(after.code(), TOO_MANY_PENDING, "{after:?}");
    assert!(after.message().contains("holds 25"), "{after:?}");
    let data: TooManyPending =
        serde_json::from_str(after.data().expect("data").get()).expect("{bound, registered}");
    assert_eq!((data.bound, data.registered), (25, 25));
    calm_http
        .register(registration("calm-after-restart", "bob", valid_until))
        .await
        .expect("the calm credential registers after the restart");
    assert_eq!(paid_events(&system.ledger), ["calm-paid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_any_log() {
    let _one_at_a_time = exclusive().await;
    let mut system = System::start(1).await;
    let valid_until = head(&system).await + 200;
    let made_up = made_up_token();
    let mut secrets: Vec<String> = system
        .tokens
        .all()
        .iter()
        .map(|t| t.expose_secret().to_owned())
        .collect();
    secrets.push(made_up.expose_secret().to_owned());

    // A settlement paid end to end, with every credential at work.
    let settlement = Settlement::new(
        &system.net,
        "logged".into(),
        Deal {
            from: "alice",
            nonce: 0,
            to: "bob",
            asset: 5,
            cents: 100,
            valid_until,
        },
    );
    let client = system.client();
    settlement.register(&client).await;
    settlement.submit(&client, 0).await;
    let paid = system.await_final(&["logged".to_owned()]).await;
    assert_eq!(paid[0].state, State::Completed);

    // Refusals of every kind, and a revocation.
    let _ = events_client(&system.events_url, Some(&made_up))
        .stats()
        .await;
    let _ = events_client(&system.events_url, Some(&system.tokens.reader))
        .register(registration("logged-reader", "bob", valid_until))
        .await;
    let temporary = create_token(&system.credentials, "temporary", "submitter", Some("bob"));
    secrets.push(temporary.expose_secret().to_owned());
    reload(&mut system, 4);
    let temporary_http = events_client(&system.events_url, Some(&temporary));
    let _ = temporary_http
        .register(registration("logged-eve", "eve", valid_until))
        .await;
    revoke(&system.credentials, "temporary");
    reload(&mut system, 3);
    let _ = temporary_http.stats().await;

    // The CLI: a mistyped token, --help with tokens in the environment.
    let mistyped = format!("{}oops", system.tokens.submitter.expose_secret());
    let cli = Command::new(binary("lockstep"))
        .args([
            "--events",
            &system.events_url,
            "--token",
            &mistyped,
            "event",
            "stats",
        ])
        .output()
        .expect("run lockstep");
    assert_eq!(cli.status.code(), Some(2));
    let mut outputs = vec![cli.stdout, cli.stderr];
    for (program, args, env) in [
        ("lockstep", vec!["--help"], "LOCKSTEP_TOKEN"),
        (
            "lockstep",
            vec!["event", "stats", "--help"],
            "LOCKSTEP_TOKEN",
        ),
        (
            "lockstep-bridge",
            vec!["run", "--help"],
            "LOCKSTEP_BRIDGE_TOKEN",
        ),
    ] {
        let help = Command::new(binary(program))
            .args(&args)
            .env(env, system.tokens.bridge.expose_secret())
            .output()
            .expect("run --help");
        assert!(help.status.success(), "{program} {args:?}");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            text.contains(env),
            "{program} {args:?} documents {env}: {text}"
        );
        outputs.push(help.stdout);
    }
    let (code, report) = system.audit();
    assert_eq!(code, 0, "{report:#}");

    // Every process's log (every run), and what the CLI printed.
    let mut scanned = 0;
    for entry in std::fs::read_dir(system.net.dir()).expect("the testnet directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            outputs.push(std::fs::read(&path).expect("a log file"));
            scanned += 1;
        }
    }
    assert!(
        scanned >= 3,
        "{scanned} logs (a node, the event system, the bridge)"
    );
    for text in &outputs {
        let text = String::from_utf8_lossy(text);
        for secret in &secrets {
            // Any 16-digit piece of a token would be a leak.
            let piece = &secret[4..20];
            assert!(!text.contains(piece), "a token appears in:\n{text}");
        }
        assert!(
            !text.contains(&mistyped[4..20]),
            "the mistyped token appears"
        );
    }
}
