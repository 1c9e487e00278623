//! A testnet of real `lockstep-node` processes on loopback ports.
//!
//! [`Testnet::start`] writes a chain spec and validator keys with
//! `lockstep-node build-spec`, picks free ports, starts every node with all
//! the others as bootnodes (so the mesh survives any node going down) and
//! waits until each has finalized a block. Nodes can be killed with SIGKILL,
//! wiped and restarted on the same ports. Each node is a
//! [`TestProcess`]: every process is killed when the testnet is dropped; a
//! failing test prints the tail of each node's log.
//!
//! [`Testnet::launch`] starts the same testnet serving JSON-RPC over TLS
//! only (`--tls-cert`/`--tls-key`), with a [`TestCa`] it makes in its
//! directory: its URLs are `https://`, its clients trust that CA.
//!
//! Waits poll JSON-RPC with a bounded deadline: the processes are separate,
//! so there is no in-process event to await, and a deadline turns a hang
//! into a failure with logs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use jsonrpsee::http_client::HttpClient;
use lockstep_api::client::ClientOptions;
use lockstep_api::node::{AuthorApiClient, ChainApiClient, TxApiClient, TxState, TxStatusView};
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Call, ChainSpec, Hash, Header, Keypair, SignedTx, SigningContext};
pub use lockstep_service::test_utils::free_port;
use lockstep_service::test_utils::{TestCa, TestProcess};
use parity_scale_codec::Encode;

use crate::faultnet::FaultNet;

/// How long any wait may take before the test fails. Generous: CI machines
/// are slow and twenty-odd processes share two cores.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// Scenarios take this lock so that only one testnet runs at a time.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The `lockstep-node` binary.
pub fn node_binary() -> PathBuf {
    binary("lockstep-node")
}

/// The binaries the scenarios run, each `(package, binary)`.
const BINARIES: [(&str, &str); 4] = [
    ("lockstep-node", "lockstep-node"),
    ("lockstep-offchain", "lockstep-offchain"),
    ("lockstep-bridge", "lockstep-bridge"),
    ("lockstep-cli", "lockstep"),
];

/// One of [`BINARIES`] by name. All of them are built once per test run,
/// with the same profile as this test binary, so that none is stale.
pub fn binary(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| match build_binaries() {
        Ok(path) => path,
        Err(error) => panic!("cannot provide the Lockstep binaries: {error:#}"),
    });
    assert!(
        BINARIES.iter().any(|(_, bin)| *bin == name),
        "{name} is not one of the binaries the scenarios build"
    );
    dir.join(name)
}

fn build_binaries() -> anyhow::Result<PathBuf> {
    // target/<profile>/deps/it-<hash>
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not under target/<profile>/deps")?
        .to_path_buf();
    // Set by cargo when it runs the tests (and when it compiled them).
    let cargo = std::env::var("CARGO")
        .ok()
        .or_else(|| option_env!("CARGO").map(String::from));
    if let Some(cargo) = cargo {
        let mut command = Command::new(cargo);
        command.args(["build", "--quiet"]);
        for (package, bin) in BINARIES {
            command.args(["-p", package, "--bin", bin]);
        }
        // The bridge with its crash hook (inert unless its variable is
        // set), as `cargo test` builds it for the bridge's own tests: the
        // chaos test aborts a bridge between its commit and its ack.
        command.args(["--features", "lockstep-bridge/test-hooks"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            command.arg("--release");
        }
        let status = command.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build of the Lockstep binaries failed: {status}");
        }
    }
    for (_, bin) in BINARIES {
        if !profile_dir.join(bin).exists() {
            bail!(
                "{} is missing: run `cargo build --bins` first (or run the tests through cargo)",
                profile_dir.join(bin).display()
            );
        }
    }
    Ok(profile_dir)
}

/// Polls `condition` every 100 ms until it holds; after [`DEADLINE`] calls
/// `explain` (which prints logs) and fails the test.
pub async fn poll_until<F, Fut>(what: &str, mut condition: F, explain: impl Fn())
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        if started.elapsed() > DEADLINE {
            explain();
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The options of a test's clients: a 10 s timeout, trusting `tls`'s CA
/// when there is one.
pub fn client_options(tls: Option<&TestCa>) -> ClientOptions {
    ClientOptions::new(Duration::from_secs(10)).with_cas(tls.map(TestCa::trusted_cas))
}

/// One node process and how to restart it.
pub struct NodeProcess {
    /// The process, logging to `node-<i>.log` (`node-<i>.<run>.log` after
    /// restarts) in the testnet directory.
    pub process: TestProcess,
    /// Its base path.
    pub base_path: PathBuf,
    /// Its RPC port.
    pub rpc_port: u16,
    /// Its p2p port.
    pub p2p_port: u16,
    /// Its RPC client.
    pub rpc: HttpClient,
}

/// A testnet.
pub struct Testnet {
    dir: tempfile::TempDir,
    spec_path: PathBuf,
    /// The chain spec.
    pub spec: ChainSpec,
    /// Validators first, then full nodes.
    pub nodes: Vec<NodeProcess>,
    /// What transactions sign over.
    pub context: SigningContext,
    /// The CA whose certificate every node serves JSON-RPC with, when the
    /// testnet runs with TLS ([`Testnet::launch`]).
    pub tls: Option<TestCa>,
    /// The links between the nodes, when the network can split
    /// ([`System::start_split`](crate::system::System::start_split)).
    pub faults: Option<FaultNet>,
}

/// Node `i`'s name: its process's and its logs' (`node-<i>.log`), and its
/// end of the links of a [`FaultNet`].
pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

impl Testnet {
    /// Starts `validators` validators and `full_nodes` full nodes, and
    /// waits until every node has finalized block 1.
    pub async fn start(validators: usize, full_nodes: usize) -> Testnet {
        Testnet::launch(validators, full_nodes, false, None).await
    }

    /// Starts `validators` validators and `full_nodes` full nodes, with
    /// TLS on every node's JSON-RPC port when `tls` (a new [`TestCa`] in
    /// the testnet's directory, `tls/`: `https://` URLs, clients that trust
    /// the CA), and, with `faults`, every node reaching every other through
    /// a link of it (see [`crate::faultnet`]): node `i` reaches node `j`
    /// through the link `node-i -> node-j`, so that the test can split the
    /// network ([`Testnet::faults`]).
    pub(crate) async fn launch(
        validators: usize,
        full_nodes: usize,
        tls: bool,
        mut faults: Option<FaultNet>,
    ) -> Testnet {
        let binary = node_binary();
        let dir = tempfile::tempdir().expect("temporary directory");
        let tls = tls.then(|| TestCa::new(&dir.path().join("tls")));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let status = Command::new(&binary)
            .args([
                "build-spec",
                "--chain-id",
                "lockstep-it",
                "--block-time-ms",
                "200",
            ])
            .arg("--validators")
            .arg(validators.to_string())
            .arg("--out")
            .arg(dir.path())
            .stdout(Stdio::null())
            .status()
            .expect("lockstep-node build-spec");
        assert!(status.success(), "build-spec failed");
        let spec_path = dir.path().join("chain-spec.json");
        let spec = ChainSpec::from_json(&std::fs::read_to_string(&spec_path).expect("spec"))
            .expect("valid spec");
        let context = SigningContext::new(spec.genesis().expect("genesis").hash());
        let count = validators + full_nodes;
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        // Node i's way to node j: straight to its port, or through the
        // link between them.
        let mut routes = vec![vec![0u16; count]; count];
        for (i, row) in routes.iter_mut().enumerate() {
            for (j, route) in row.iter_mut().enumerate() {
                *route = match faults.as_mut() {
                    Some(faults) if i != j => faults.add(&node_name(i), &node_name(j), ports[j].1),
                    _ => ports[j].1,
                };
            }
        }
        let p2p_addr = |i: usize, j: usize| format!("/ip4/127.0.0.1/tcp/{}", routes[i][j]);
        let nodes = (0..count)
            .map(|i| {
                let (rpc_port, p2p_port) = ports[i];
                let rpc = lockstep_api::client::http_with(
                    &format!("{scheme}://127.0.0.1:{rpc_port}"),
                    &client_options(tls.as_ref()),
                )
                .expect("rpc client");
                let base_path = dir.path().join(format!("node-{i}"));
                let key = (i < validators).then(|| dir.path().join(format!("validator-{i}.json")));
                let bootnodes: Vec<String> = (0..count)
                    .filter(|&j| j != i)
                    .map(|j| p2p_addr(i, j))
                    .collect();
                let mut process = TestProcess::new(node_name(i), &binary, dir.path())
                    .arg("run")
                    .arg("--chain")
                    .arg(&spec_path)
                    .arg("--base-path")
                    .arg(&base_path)
                    .args(["--rpc-port", &rpc_port.to_string()])
                    .args(["--p2p-host", "127.0.0.1"])
                    .args(["--p2p-port", &p2p_port.to_string()])
                    .args(["--bootnodes", &bootnodes.join(",")])
                    .args(["--timeout-propose-ms", "1000"])
                    .args(["--timeout-prevote-ms", "500"])
                    .args(["--timeout-precommit-ms", "500"])
                    .args(["--timeout-delta-ms", "250"])
                    .env("RUST_LOG", "info")
                    .timeout(DEADLINE)
                    .tail_lines(40)
                    .collapse_lines_containing("finalized #");
                if let Some(key) = &key {
                    process = process.arg("--key").arg(key);
                }
                if let Some(ca) = &tls {
                    process = process.args(ca.server_args());
                }
                NodeProcess {
                    process,
                    base_path,
                    rpc_port,
                    p2p_port,
                    rpc,
                }
            })
            .collect();
        let mut net = Testnet {
            dir,
            spec_path,
            spec,
            nodes,
            context,
            tls,
            faults,
        };
        for i in 0..net.nodes.len() {
            net.spawn(i);
        }
        let all: Vec<usize> = (0..net.nodes.len()).collect();
        net.await_height(&all, 1).await;
        net
    }

    /// The directory that holds the spec, keys, base paths and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The chain spec file.
    pub fn spec_path(&self) -> &Path {
        &self.spec_path
    }

    /// Node `i`'s JSON-RPC URL (`https://` with TLS).
    pub fn rpc_url(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.nodes[i].rpc_port)
    }

    /// The multiaddr of node `i`.
    pub fn p2p_addr(&self, i: usize) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.nodes[i].p2p_port)
    }

    /// Starts (or restarts) node `i` on its base path and ports.
    pub fn spawn(&mut self, i: usize) {
        self.nodes[i].process.spawn();
    }

    /// Kills node `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].process.kill();
    }

    /// The links between the nodes; panics unless the testnet was
    /// started with links ([`Testnet::launch`]).
    pub fn faults(&self) -> &FaultNet {
        self.faults.as_ref().expect("a testnet started with links")
    }

    /// Freezes node `i` (SIGSTOP) until [`Testnet::resume`].
    pub fn pause(&mut self, i: usize) {
        self.nodes[i].process.pause();
    }

    /// Lets node `i` go on (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].process.resume();
    }

    /// Deletes node `i`'s base path (it must be stopped).
    pub fn wipe(&mut self, i: usize) {
        assert!(!self.nodes[i].process.is_running(), "wipe a stopped node");
        std::fs::remove_dir_all(&self.nodes[i].base_path).expect("wipe base path");
    }

    /// Node `i`'s JSON-RPC client (call the `lockstep_api::node` client
    /// traits on it).
    pub fn rpc(&self, i: usize) -> &HttpClient {
        &self.nodes[i].rpc
    }

    /// Node `i`'s finalized height, or `None` if it does not answer.
    pub async fn finalized(&self, i: usize) -> Option<u64> {
        let header = self.rpc(i).header(None).await.ok()?;
        Some(header?.number)
    }

    /// The highest finalized height among `nodes`.
    pub async fn best(&self, nodes: &[usize]) -> u64 {
        let mut best = 0;
        for &i in nodes {
            best = best.max(self.finalized(i).await.unwrap_or(0));
        }
        best
    }

    /// Waits until every node in `nodes` has finalized `height`.
    pub async fn await_height(&self, nodes: &[usize], height: u64) {
        self.await_condition(&format!("nodes {nodes:?} at #{height}"), || async {
            for &i in nodes {
                if self.finalized(i).await.unwrap_or(0) < height {
                    return false;
                }
            }
            true
        })
        .await;
    }

    /// Polls `condition` every 100 ms until it holds, or fails the test
    /// with the nodes' logs after [`DEADLINE`].
    pub async fn await_condition<F, Fut>(&self, what: &str, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        poll_until(what, condition, || self.print_log_tails()).await;
    }

    /// Prints the end of every node's log, to explain a failure.
    pub fn print_log_tails(&self) {
        for node in &self.nodes {
            node.process.print_tail();
        }
    }

    /// Node `i`'s header at `number` as served (`Some(None)` if it answered
    /// null), if it names a block there and answers.
    pub async fn header_at(&self, i: usize, number: u64) -> Option<Option<Header>> {
        let hash = self.rpc(i).block_hash(Some(number)).await.ok()??;
        self.rpc(i).header(Some(hash)).await.ok()
    }

    /// The consensus round each block in `from..=to` was decided in, as
    /// node `i`'s justifications say.
    pub async fn decided_rounds(&self, i: usize, from: u64, to: u64) -> Vec<u32> {
        let mut rounds = Vec::new();
        for number in from..=to {
            let hash = self.rpc(i).block_hash(Some(number)).await.ok().flatten();
            let block = match hash {
                Some(hash) => self.rpc(i).block(Some(hash)).await.ok().flatten(),
                None => None,
            };
            let justification = block.and_then(|b| b.justification);
            let justification =
                justification.unwrap_or_else(|| panic!("node {i} has no justified #{number}"));
            rounds.push(justification.round);
        }
        rounds
    }

    /// Checks that `nodes` hold identical headers (hence block hashes,
    /// state roots and receipt roots) at every height each of them has,
    /// and that there is at most one finalized block per height.
    pub async fn assert_agreement(&self, nodes: &[usize]) {
        let mut lowest = u64::MAX;
        for &i in nodes {
            lowest = lowest.min(self.finalized(i).await.expect("node answers"));
        }
        for number in 1..=lowest {
            let reference = self.header_at(nodes[0], number).await;
            assert!(reference.is_some(), "node {} lacks #{number}", nodes[0]);
            for &i in &nodes[1..] {
                let header = self.header_at(i, number).await;
                assert_eq!(
                    header, reference,
                    "nodes {} and {i} disagree at #{number}",
                    nodes[0]
                );
            }
        }
    }

    /// A signed dev-account transfer.
    pub fn transfer(&self, from: &str, nonce: u64, to: &str, amount: u128) -> SignedTx {
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to: Keypair::dev(to).public(),
            amount,
            reference: None,
        };
        // Valid for the chain's whole window as seen from genesis: longer
        // than any scenario runs, and within what pools accept.
        let valid_until = self.spec.max_validity_blocks;
        SignedTx::sign(&Keypair::dev(from), &self.context, nonce, valid_until, call)
    }

    /// Submits `tx` to node `i`; returns its hash.
    pub async fn submit(&self, i: usize, tx: &SignedTx) -> Hash {
        self.rpc(i)
            .submit_extrinsic(to_hex(&tx.encode()))
            .await
            .unwrap_or_else(|e| panic!("submit to node {i}: {e}"))
    }

    /// Waits until `tx` is finalized on node `i`; returns its status.
    pub async fn await_tx(&self, i: usize, tx: &Hash) -> TxStatusView {
        let started = Instant::now();
        loop {
            if let Ok(status) = self.rpc(i).status(*tx).await {
                if status.status == TxState::Finalized {
                    return status;
                }
            }
            if started.elapsed() > DEADLINE {
                panic!("timed out waiting for tx {tx} on node {i}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        // Each node prints its log if the test failed; before the testnet
        // directory, which holds the logs, is deleted.
        for node in &mut self.nodes {
            node.process.finish();
        }
        if std::thread::panicking() {
            eprintln!("(testnet directory {})", self.dir.path().display());
        }
    }
}
