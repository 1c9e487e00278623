//! The `lockstep-node` command line as a user runs it.

use std::process::{Command, Output};

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep-node"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn key_generate_and_inspect_agree() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key.json");
    let file = file.to_str().unwrap();
    let generated = node(&["key", "generate", "--out", file]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let account = stdout(&generated).lines().last().unwrap().to_owned();
    let inspected = node(&["key", "inspect", file]);
    assert!(inspected.status.success());
    assert_eq!(stdout(&inspected).trim(), account.trim());
    // Never overwritten.
    let again = node(&["key", "generate", "--out", file]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("exists"), "{}", stderr(&again));
}

#[test]
fn build_spec_writes_a_spec_and_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let out = out.to_str().unwrap();
    let built = node(&["build-spec", "--validators", "4", "--out", out]);
    assert!(built.status.success(), "{}", stderr(&built));
    let spec = std::fs::read_to_string(dir.path().join("net/chain-spec.json")).unwrap();
    let spec = lockstep_runtime::ChainSpec::from_json(&spec).unwrap();
    assert_eq!(spec.validators.len(), 4);
    for i in 0..4 {
        let key = dir.path().join(format!("net/validator-{i}.json"));
        let key = lockstep_node::keyfile::read(&key).unwrap();
        assert_eq!(key.public(), spec.validators[i]);
    }
    let again = node(&["build-spec", "--validators", "4", "--out", out]);
    assert!(!again.status.success());
    let zero = node(&["build-spec", "--validators", "0", "--out", out]);
    assert!(!zero.status.success());
}

#[test]
fn usage_errors_are_explained() {
    let nothing = node(&[]);
    assert!(!nothing.status.success());
    assert!(stderr(&nothing).contains("--dev"), "{}", stderr(&nothing));
    let unknown = node(&["--no-such-flag"]);
    assert_eq!(unknown.status.code(), Some(2));
    let missing = node(&[
        "run",
        "--chain",
        "/nonexistent/spec.json",
        "--base-path",
        "/tmp/x",
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent/spec.json"),
        "{}",
        stderr(&missing)
    );
    for command in [
        &["--help"][..],
        &["run", "--help"],
        &["key", "generate", "--help"],
        &["build-spec", "--help"],
        &["purge-chain", "--help"],
    ] {
        let help = node(command);
        assert!(help.status.success(), "{command:?}");
        assert!(!stdout(&help).is_empty());
    }
}

#[test]
fn purge_chain_deletes_only_that_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chains/lockstep-dev/db");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("CURRENT"), b"x").unwrap();
    std::fs::create_dir_all(dir.path().join("chains/other")).unwrap();
    let base = dir.path().to_str().unwrap();
    let purged = node(&["purge-chain", "--base-path", base, "--dev", "-y"]);
    assert!(purged.status.success(), "{}", stderr(&purged));
    assert!(!dir.path().join("chains/lockstep-dev").exists());
    assert!(dir.path().join("chains/other").exists());
    let nothing = node(&["purge-chain", "--base-path", base, "--dev", "-y"]);
    assert!(nothing.status.success());
    assert!(stdout(&nothing).contains("nothing to purge"));
}
