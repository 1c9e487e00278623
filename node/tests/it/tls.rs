//! JSON-RPC over TLS (`--tls-cert`/`--tls-key`): a node serves https://
//! and wss:// to a client that trusts its CA, and nothing to a client that
//! does not, or that speaks plain HTTP to it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lockstep_api::client::{self, ClientOptions};
use lockstep_api::node::{ChainApiClient, SystemApiClient};
use lockstep_node::test_utils::DevNode;
use lockstep_service::test_utils::{TestCa, TestProcess};

use crate::harness::spec;

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_tls_node_answers_only_clients_that_trust_its_ca_over_https_and_wss() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let node = DevNode::start_tls(spec(), ca.server_tls(), ca.trusted_cas(), |_| {}).await;
    let port = node.addr.port();
    assert_eq!(node.url(), format!("https://127.0.0.1:{port}"));
    assert_eq!(node.ws_url(), format!("wss://127.0.0.1:{port}"));

    // A client that trusts the CA: calls over https://, by address and by
    // name, and a subscription over wss://.
    let trusting = ClientOptions::new(TIMEOUT).with_cas(Some(ca.trusted_cas()));
    for url in [node.url(), format!("https://localhost:{port}")] {
        let https = client::http_with(&url, &trusting).unwrap();
        assert_eq!(https.name().await.unwrap(), "lockstep-node", "{url}");
    }
    let wss = client::ws_with(&node.ws_url(), &trusting).await.unwrap();
    assert_eq!(wss.name().await.unwrap(), "lockstep-node");
    let mut heads = wss.subscribe_finalized_heads().await.unwrap();
    let first = heads.next().await.unwrap().unwrap();
    let second = heads.next().await.unwrap().unwrap();
    assert!(second.number > first.number, "{first:?} then {second:?}");
    // DevNode's own clients trust the CA too.
    assert_eq!(node.http.name().await.unwrap(), "lockstep-node");

    // The system's roots do not include the test's CA.
    let system_roots = ClientOptions::new(TIMEOUT);
    let refused = client::http_with(&node.url(), &system_roots)
        .unwrap()
        .name()
        .await
        .unwrap_err();
    assert_certificate_refused(&refused);
    let refused = client::ws_with(&node.ws_url(), &system_roots)
        .await
        .unwrap_err();
    assert_certificate_refused(&refused);

    // Plain HTTP and WebSocket to the TLS port get no answer.
    let plain = client::http(&format!("http://127.0.0.1:{port}"), TIMEOUT)
        .unwrap()
        .name()
        .await
        .unwrap_err();
    assert_eq!(client::refusal_code(&plain), None, "{plain}");
    assert!(
        client::ws(&format!("ws://127.0.0.1:{port}"), TIMEOUT)
            .await
            .is_err(),
        "a plain WebSocket was opened on the TLS port"
    );
    // And the node still serves the clients that trust it.
    assert_eq!(node.http.name().await.unwrap(), "lockstep-node");
    node.stop().await;
}

/// A client error that is a certificate refusal (not a timeout, not an
/// answer).
fn assert_certificate_refused(error: &client::Error) {
    let described = client::describe(error);
    assert!(
        client::refusal_code(error).is_none() && described.contains("certificate"),
        "expected a certificate refusal, got: {described}"
    );
}

#[test]
fn the_node_binary_serves_tls_with_its_flags_and_refuses_a_readable_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("tls"));
    let node = |name: &str, key: &Path| {
        TestProcess::new(name, env!("CARGO_BIN_EXE_lockstep-node"), dir.path())
            .args(["--dev", "--rpc-port", "0", "--block-time-ms", "100"])
            .arg("--tls-cert")
            .arg(&ca.cert_pem)
            .arg("--tls-key")
            .arg(key)
            .env("RUST_LOG", "info")
    };

    let mut serving = node("node", &ca.key_pem);
    serving.spawn();
    let rest = serving.wait_for_log("JSON-RPC on https://");
    let addr: std::net::SocketAddr = rest
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("no address in {rest:?}: {e}"));
    assert!(rest.contains(&format!("wss://{addr}")), "{rest}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = runtime.block_on(async {
        let options = ClientOptions::new(TIMEOUT).with_cas(Some(ca.trusted_cas()));
        client::http_with(&format!("https://{addr}"), &options)
            .unwrap()
            .name()
            .await
            .unwrap()
    });
    assert_eq!(name, "lockstep-node");
    let stopped = serving.terminate();
    assert!(stopped.success(), "{stopped}: {}", serving.tail());

    // A key others may read: a clear error, the key not quoted, exit 1.
    let open_key = dir.path().join("open-key.pem");
    std::fs::copy(&ca.key_pem, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut refused = node("refused", &open_key);
    refused.spawn();
    let status = refused.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", refused.tail());
    let log = std::fs::read_to_string(refused.log_path(0)).unwrap();
    assert!(log.contains("chmod 600"), "{log}");
    assert!(log.contains("open-key.pem"), "{log}");
    let key = std::fs::read_to_string(&ca.key_pem).unwrap();
    let secret_line = key.lines().nth(1).unwrap();
    assert!(!log.contains(secret_line), "the key was quoted: {log}");
    assert!(!log.contains("JSON-RPC on"), "{log}");

    // Only one of the two flags: a usage error.
    let half = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep-node"))
        .args(["--dev", "--rpc-port", "0", "--tls-cert"])
        .arg(&ca.cert_pem)
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
