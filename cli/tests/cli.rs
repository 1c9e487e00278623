//! `lockstep` as a child process against a dev node, and against the whole
//! system (dev node, event system, account bridge) running in this process.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Output;

#[path = "it/system.rs"]
mod system;

use lockstep_node::test_utils::{dev_spec, DevNode};
use lockstep_runtime::genesis::DEV_ENDOWMENT;

/// Runs the binary on a blocking thread, so the node in this process keeps
/// serving meanwhile.
pub(crate) async fn lockstep(args: Vec<String>) -> Output {
    lockstep_with_token(args, None).await
}

/// [`lockstep`] with `LOCKSTEP_TOKEN` set to `token` (as a user's shell
/// would have it, not on the command line).
pub(crate) async fn lockstep_with_token(args: Vec<String>, token: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"));
        command
            .args(args)
            // The caller's shell must not point the binary elsewhere.
            .env_remove("LOCKSTEP_RPC")
            .env_remove("LOCKSTEP_NODES")
            .env_remove("LOCKSTEP_EVENTS")
            .env_remove("LOCKSTEP_LEDGER")
            .env_remove("LOCKSTEP_CHAIN_SPEC")
            .env_remove("LOCKSTEP_TOKEN");
        if let Some(token) = token {
            command.env("LOCKSTEP_TOKEN", token);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

fn args(rpc: SocketAddr, rest: &[&str]) -> Vec<String> {
    let mut all = vec!["--rpc".to_owned(), format!("http://{rpc}")];
    all.extend(rest.iter().map(|s| s.to_string()));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_wait_and_read_back() {
    let node = DevNode::start_with(dev_spec("lockstep-cli-test"), |_| {}).await;
    let rpc = node.addr;

    let sent = lockstep(args(
        rpc,
        &[
            "transfer", "--from", "alice", "--to", "bob", "--amount", "25", "--wait",
        ],
    ))
    .await;
    let text = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        text.contains("finalized in block") && text.contains("success"),
        "{text}"
    );

    let balance = lockstep(args(rpc, &["chain", "balance", "bob"])).await;
    assert_eq!(
        String::from_utf8_lossy(&balance.stdout).trim(),
        (DEV_ENDOWMENT + 25).to_string()
    );
    let nonce = lockstep(args(rpc, &["--json", "chain", "nonce", "alice"])).await;
    let json: serde_json::Value = serde_json::from_slice(&nonce.stdout).unwrap();
    assert_eq!(json["nonce"], 1);

    // Included but failed on chain: exit code 3, and it says why.
    let failed = lockstep(args(
        rpc,
        &[
            "transfer",
            "--from",
            "carol-empty",
            "--to",
            "bob",
            "--amount",
            "1",
            "--wait",
        ],
    ))
    .await;
    assert_eq!(
        failed.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    assert!(
        String::from_utf8_lossy(&failed.stdout).contains("insufficient"),
        "{:?}",
        failed
    );

    // Bad usage and bad input.
    let usage = lockstep(args(rpc, &["transfer", "--from", "alice"])).await;
    assert_eq!(usage.status.code(), Some(2));
    let bad_to = lockstep(args(
        rpc,
        &[
            "transfer", "--from", "alice", "--to", "0x12", "--amount", "1",
        ],
    ))
    .await;
    assert_eq!(bad_to.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_to.stderr).contains("account id"));
    let head = lockstep(args(rpc, &["chain", "head"])).await;
    assert!(String::from_utf8_lossy(&head.stdout).starts_with('#'));
    node.stop().await;

    let down = lockstep(args(rpc, &["chain", "head"])).await;
    assert_eq!(down.status.code(), Some(1));
}
