//! The whole system as real processes: a [`Testnet`] of validators, the
//! event system (`lockstep-offchain`) watching all of them, and the account
//! bridge (`lockstep-bridge`) with a ledger seeded for the dev accounts: a
//! SQLite file, or a database on a PostgreSQL server of the test's own
//! ([`System::start_nats_on_postgres`], or every system when the environment
//! has `LOCKSTEP_TEST_LEDGER=postgres`, which `scripts/test.sh` sets for a
//! second run of these tests). Any process can be killed with SIGKILL and
//! restarted on the same data and ports.
//!
//! Credentials are on, as `scripts/testnet.sh` runs them: the credentials
//! file is made with `lockstep-offchain token create`, one token per role
//! ([`Tokens`]); the bridge gets its token from the environment, the
//! clients here present the submitter's, the audit the reader's.
//!
//! [`System::start_nats`] runs the message bus on NATS JetStream: a
//! `nats-server` of the test's own ([`NatsServer`]), the event system and
//! every bridge with `--bus nats://...`, and as many bridges as asked for,
//! all on one durable consumer and one ledger (SQLite, or PostgreSQL with
//! [`System::start_nats_on_postgres`]).
//!
//! [`System::start_tls`] runs every JSON-RPC endpoint over TLS, as issue 13
//! has it: the validators and the event system serve `https://` with the
//! certificate of the testnet's [`TestCa`](lockstep_service::test_utils::TestCa),
//! and every client (the event system's node client, the bridge, the
//! clients here, the CLI) trusts that CA alone (`--ca-file`).
//!
//! [`System::start_split`] runs on a network that can split (see
//! [`crate::faultnet`]): every path between the validators, and from the
//! event system to each of them, crosses a link the test can cut.
//!
//! [`Settlement`] is the transaction system's side of the protocol: it signs
//! a transfer, registers its event, and only then submits it to a node,
//! retrying through process failures the way a real client must (the event
//! id makes registration idempotent; a node that already knows the transfer
//! says so).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jsonrpsee::core::client::Error as ClientError;
use jsonrpsee::http_client::HttpClient;
use lockstep_api::client::{BearerToken, ClientOptions};
use lockstep_api::event::{settlement_commitment, Event, PaymentInstruction, RegisterRequest};
use lockstep_api::lifecycle::State;
use lockstep_api::node::{error as node_error, AuthorApiClient};
use lockstep_api::offchain::{EventApiClient, Stats};
use lockstep_runtime::crypto::DEV_NAMES;
use lockstep_runtime::genesis::DEV_ASSET;
use lockstep_runtime::primitives::to_hex;
use lockstep_runtime::{Call, Keypair, SignedTx};
use lockstep_service::test_utils::{NatsServer, TestPostgres, TestProcess};
use parity_scale_codec::Encode;
use serde_json::Value;

use crate::faultnet::FaultNet;
use crate::harness::{binary, client_options, free_port, node_name, poll_until, Testnet, DEADLINE};

/// Money each dev account starts with in the ledger: 1,000,000.00 USD in
/// cents.
pub const LEDGER_FUNDS: u128 = 100_000_000;

/// The bridges' lease on the embedded bus (`--lease`): a bridge frozen
/// mid-batch hands its batch back after this long.
pub const BRIDGE_LEASE: Duration = Duration::from_secs(3);

/// The bridges' ack wait (`--lease`) on NATS: short, so that a delivery
/// lost with the server or held by a frozen bridge comes back within a
/// test's time.
pub const NATS_ACK_WAIT: Duration = Duration::from_secs(5);

/// The currency of every test payment.
pub const CURRENCY: &str = "USD";

/// A service process that can be killed and restarted with the same
/// arguments; each run logs to its own file in `dir`
/// (`<name>.log`, `<name>.<run>.log`).
fn service(name: &str, program: PathBuf, args: Vec<OsString>, dir: &Path) -> TestProcess {
    TestProcess::new(name, program, dir)
        .args(args)
        .env("RUST_LOG", "info")
        .timeout(DEADLINE)
}

/// A bridge process with `args`, its token from the environment, as an
/// operator would pass it (a command line is visible to every user of the
/// machine).
fn bridge_service(name: &str, args: &[OsString], tokens: &Tokens, dir: &Path) -> TestProcess {
    service(name, binary("lockstep-bridge"), args.to_vec(), dir)
        .env("LOCKSTEP_BRIDGE_TOKEN", tokens.bridge.expose_secret())
}

/// What the transaction system talks to: every node and the event system.
/// Cheap to clone into load tasks that run while processes are killed.
#[derive(Clone)]
pub struct Client {
    nodes: Vec<HttpClient>,
    events: HttpClient,
}

impl Client {
    /// The event system's client (call the `lockstep_api::offchain` client
    /// traits on it).
    pub fn events(&self) -> &HttpClient {
        &self.events
    }

    /// The same nodes with another event system (a second one, as an
    /// attacker would run).
    pub fn with_events(&self, events: HttpClient) -> Client {
        Client {
            nodes: self.nodes.clone(),
            events,
        }
    }
}

/// One token per role, of the event system's credentials file.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// Role submitter (any payer): the transaction system's.
    pub submitter: BearerToken,
    /// Role reader: the audit's.
    pub reader: BearerToken,
    /// Role bridge: the account bridge's.
    pub bridge: BearerToken,
}

impl Tokens {
    /// Every token.
    pub fn all(&self) -> [&BearerToken; 3] {
        [&self.submitter, &self.reader, &self.bridge]
    }
}

/// `lockstep-offchain token create` into `credentials`: the new token.
pub fn create_token(
    credentials: &Path,
    name: &str,
    role: &str,
    payers: Option<&str>,
) -> BearerToken {
    let mut command = Command::new(binary("lockstep-offchain"));
    command
        .args(["token", "create", "--credentials"])
        .arg(credentials)
        .args(["--name", name, "--role", role]);
    if let Some(payers) = payers {
        command.args(["--payers", payers]);
    }
    let output = command
        .output()
        .expect("run lockstep-offchain token create");
    assert!(
        output.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    BearerToken::parse(&String::from_utf8_lossy(&output.stdout))
        .unwrap_or_else(|e| panic!("token create printed no token: {e}"))
}

/// An HTTP client of the event system at `url` presenting `token`.
pub fn events_client(url: &str, token: Option<&BearerToken>) -> HttpClient {
    let options = ClientOptions::new(Duration::from_secs(10)).with_token(token.cloned());
    lockstep_api::client::http_with(url, &options).expect("event system client")
}

/// What a [`System`] runs on besides its defaults (plain HTTP, the embedded
/// bus, a SQLite ledger).
#[derive(Debug, Default, Clone, Copy)]
struct Backends {
    /// TLS on every JSON-RPC endpoint.
    tls: bool,
    /// The ledger on PostgreSQL (also when `LOCKSTEP_TEST_LEDGER=postgres`).
    postgres: bool,
    /// With the bus on NATS, how many bridges.
    nats_bridges: Option<usize>,
    /// The network can split: the validators reach each other, and the
    /// event system reaches each of them, through links of a [`FaultNet`].
    split: bool,
}

/// The testnet, the event system and the bridge.
pub struct System {
    /// The validators.
    pub net: Testnet,
    /// `lockstep-offchain run`, logging to `events.log`.
    pub events: TestProcess,
    /// `lockstep-bridge run`, logging to `bridge.log`.
    pub bridge: TestProcess,
    /// More bridges on the same bus and ledger (`bridge-1.log`, ...):
    /// only with [`System::start_nats`].
    pub more_bridges: Vec<TestProcess>,
    /// The NATS server the bus runs on ([`System::start_nats`]).
    pub nats: Option<NatsServer>,
    /// With NATS, each bridge's metrics port: `bridge`'s, then
    /// `more_bridges`'.
    pub bridge_metrics_ports: Vec<u16>,
    /// The event system's JSON-RPC URL.
    pub events_url: String,
    /// The bridge's ledger as its command lines name it: a SQLite file, or
    /// a `postgres://` URL of [`System::postgres`].
    pub ledger: String,
    /// The PostgreSQL server of the ledger, when it is not SQLite.
    pub postgres: Option<TestPostgres>,
    /// The event system's public key, which signs its instructions (the
    /// bridge's `--event-system-key`).
    pub event_system_key: String,
    /// The event system's credentials file.
    pub credentials: PathBuf,
    /// Its tokens, one per role.
    pub tokens: Tokens,
    events_rpc: HttpClient,
}

impl System {
    /// Starts `validators` validators, then the event system and the bridge,
    /// and waits until the event system follows the chain.
    pub async fn start(validators: usize) -> System {
        System::start_with(validators, &[]).await
    }

    /// [`System::start`], with `events_args` added to the event system's
    /// command line.
    pub async fn start_with(validators: usize, events_args: &[&str]) -> System {
        System::launch(validators, events_args, Backends::default()).await
    }

    /// [`System::start`] with the message bus on NATS JetStream (see the
    /// [module docs](self)) and `bridges` bridges (at least 1).
    pub async fn start_nats(validators: usize, bridges: usize) -> System {
        let backends = Backends {
            nats_bridges: Some(bridges.max(1)),
            ..Backends::default()
        };
        System::launch(validators, &[], backends).await
    }

    /// [`System::start_nats`] with the ledger on PostgreSQL too: both
    /// engines of issue 15, `bridges` bridges sharing one durable consumer
    /// and one database.
    pub async fn start_nats_on_postgres(validators: usize, bridges: usize) -> System {
        let backends = Backends {
            postgres: true,
            nats_bridges: Some(bridges.max(1)),
            ..Backends::default()
        };
        System::launch(validators, &[], backends).await
    }

    /// [`System::start`] on a network that can split: the validators
    /// reach each other through the links `node-i -> node-j`, and the
    /// event system reaches node `j` through `events -> node-j`, of the
    /// testnet's [`FaultNet`] (`net.faults()`). The test's own clients
    /// reach every process directly.
    pub async fn start_split(validators: usize) -> System {
        let backends = Backends {
            split: true,
            ..Backends::default()
        };
        System::launch(validators, &[], backends).await
    }

    /// [`System::start`] with TLS on every JSON-RPC endpoint (see the
    /// [module docs](self)): the CA is `net.tls`.
    pub async fn start_tls(validators: usize) -> System {
        let backends = Backends {
            tls: true,
            ..Backends::default()
        };
        System::launch(validators, &[], backends).await
    }

    async fn launch(validators: usize, events_args: &[&str], backends: Backends) -> System {
        let Backends {
            tls,
            postgres,
            nats_bridges,
            split,
        } = backends;
        let mut net = Testnet::launch(validators, 0, tls, split.then(FaultNet::new)).await;
        let dir = net.dir().to_path_buf();
        // The event system serves TLS with the nodes' certificate (it names
        // 127.0.0.1 too) and checks the nodes' against the CA; the bridge
        // checks the event system's.
        let (server_tls, client_tls): (Vec<OsString>, Vec<OsString>) = match &net.tls {
            Some(ca) => (ca.server_args().into(), ca.client_args().into()),
            None => (Vec::new(), Vec::new()),
        };

        let bridge_key = dir.join("bridge-key.json");
        let generated = run_json(
            &binary("lockstep"),
            &[
                "--json".into(),
                "key".into(),
                "generate".into(),
                "--out".into(),
                bridge_key.clone().into(),
            ],
        );
        let bridge_public = generated["account"]
            .as_str()
            .expect("the key's account id")
            .to_owned();

        let postgres = (postgres
            || std::env::var("LOCKSTEP_TEST_LEDGER").is_ok_and(|v| v == "postgres"))
        .then(|| TestPostgres::start(&dir));
        let ledger = match &postgres {
            Some(server) => server.create_database("ledger"),
            None => dir.join("ledger.sqlite").display().to_string(),
        };
        seed_ledger(&ledger);
        let credentials = dir.join("credentials");
        let tokens = Tokens {
            submitter: create_token(&credentials, "submitter", "submitter", None),
            reader: create_token(&credentials, "reader", "reader", None),
            bridge: create_token(&credentials, "bridge", "bridge", None),
        };
        let events_key = dir.join("events-key.json");
        let event_system_key = generate_event_system_key(&events_key);

        let nats = nats_bridges.map(|_| NatsServer::start(&dir, "nats"));
        // The bus flags of both sides; a short ack wait, so that a
        // delivery lost with the server comes back within a test's time,
        // and small fetches, so that bridges on one consumer take turns.
        let (events_bus, bridge_bus): (Vec<OsString>, Vec<OsString>) = match &nats {
            Some(server) => (
                args(&["--bus".into(), server.url().into()]),
                args(&[
                    "--bus".into(),
                    server.url().into(),
                    "--lease".into(),
                    format!("{}s", NATS_ACK_WAIT.as_secs()).into(),
                    "--batch".into(),
                    "25".into(),
                ]),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let events_port = free_port();
        let scheme = if net.tls.is_some() { "https" } else { "http" };
        let events_url = format!("{scheme}://127.0.0.1:{events_port}");
        let mut nodes: Vec<String> = (0..validators).map(|i| net.rpc_url(i)).collect();
        if let Some(faults) = net.faults.as_mut() {
            for (j, url) in nodes.iter_mut().enumerate() {
                let port = faults.add("events", &node_name(j), net.nodes[j].rpc_port);
                *url = format!("http://127.0.0.1:{port}");
            }
        }
        let events = service(
            "events",
            binary("lockstep-offchain"),
            args(&[
                "run".into(),
                "--nodes".into(),
                nodes.join(",").into(),
                "--base-path".into(),
                dir.join("events").into(),
                "--rpc-port".into(),
                events_port.to_string().into(),
                "--bridge-key".into(),
                bridge_public.into(),
                "--key-file".into(),
                events_key.into(),
                // Every block's justification is verified against it.
                "--chain-spec".into(),
                net.spec_path().into(),
                // Quick re-checks and re-sends, so that faults heal within
                // a test's time.
                "--scan-interval".into(),
                "300ms".into(),
                "--grace".into(),
                "2s".into(),
                "--recheck-cap".into(),
                "2s".into(),
                "--resend-base".into(),
                "1s".into(),
                "--resend-cap".into(),
                "3s".into(),
                "--call-timeout".into(),
                "2s".into(),
                "--credentials".into(),
                credentials.clone().into(),
            ])
            .into_iter()
            .chain(server_tls)
            .chain(client_tls.iter().cloned())
            .chain(events_args.iter().map(OsString::from))
            .chain(events_bus)
            .collect(),
            &dir,
        );
        // A short lease: a bridge frozen mid-batch hands its batch back
        // within a test's time (NATS sets its own ack wait above).
        let lease: Vec<OsString> = match &nats {
            Some(_) => Vec::new(),
            None => args(&[
                "--lease".into(),
                format!("{}s", BRIDGE_LEASE.as_secs()).into(),
            ]),
        };
        let bridge_args: Vec<OsString> =
            bridge_run_args(&events_url, &ledger, &bridge_key, &event_system_key)
                .into_iter()
                .chain(client_tls.iter().cloned())
                .chain(bridge_bus.iter().cloned())
                .chain(lease)
                .collect();
        let bridge_metrics_ports: Vec<u16> = match nats_bridges {
            Some(n) => (0..n).map(|_| free_port()).collect(),
            None => Vec::new(),
        };
        let bridge_process = |i: usize| {
            let name = match i {
                0 => "bridge".to_owned(),
                i => format!("bridge-{i}"),
            };
            let with_metrics: Vec<OsString> = match bridge_metrics_ports.get(i) {
                Some(port) => bridge_args
                    .iter()
                    .cloned()
                    .chain(["--prometheus-port".into(), port.to_string().into()])
                    .collect(),
                None => bridge_args.clone(),
            };
            bridge_service(&name, &with_metrics, &tokens, &dir)
        };
        let bridge = bridge_process(0);
        let more_bridges: Vec<TestProcess> =
            (1..nats_bridges.unwrap_or(1)).map(bridge_process).collect();
        let events_rpc = lockstep_api::client::http_with(
            &events_url,
            &client_options(net.tls.as_ref()).with_token(Some(tokens.submitter.clone())),
        )
        .expect("event system client");
        let mut system = System {
            net,
            events,
            bridge,
            more_bridges,
            nats,
            bridge_metrics_ports,
            events_url,
            ledger,
            postgres,
            event_system_key,
            credentials,
            tokens,
            events_rpc,
        };
        system.events.spawn();
        system.bridge.spawn();
        for bridge in &mut system.more_bridges {
            bridge.spawn();
        }
        system.await_events_following().await;
        system
    }

    /// Node RPC URLs, comma-separated.
    pub fn node_urls(&self) -> String {
        (0..self.net.nodes.len())
            .map(|i| self.net.rpc_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The event system's client (call the `lockstep_api::offchain` client
    /// traits on it).
    pub fn events_rpc(&self) -> &HttpClient {
        &self.events_rpc
    }

    /// A client of every node and the event system.
    pub fn client(&self) -> Client {
        Client {
            nodes: self.net.nodes.iter().map(|n| n.rpc.clone()).collect(),
            events: self.events_rpc.clone(),
        }
    }

    /// `event_stats`, if the event system answers.
    pub async fn stats(&self) -> Option<Stats> {
        self.events_rpc.stats().await.ok()
    }

    /// Waits until the event system answers and has processed a finalized
    /// block.
    pub async fn await_events_following(&self) {
        self.await_condition("the event system following the chain", || async {
            self.stats().await.is_some_and(|s| s.last_height.is_some())
        })
        .await;
    }

    /// Waits until every one of `ids` is Completed or Cancelled; returns
    /// each event.
    pub async fn await_final(&self, ids: &[String]) -> Vec<Event> {
        let mut events: Vec<Option<Event>> = vec![None; ids.len()];
        let started = Instant::now();
        loop {
            for (slot, id) in events.iter_mut().zip(ids) {
                if slot.is_none() {
                    match self.events_rpc.get(id.clone()).await {
                        Ok(event) if is_final(&event) => *slot = Some(event),
                        _ => {}
                    }
                }
            }
            let left = events.iter().filter(|e| e.is_none()).count();
            if left == 0 {
                return events.into_iter().flatten().collect();
            }
            if started.elapsed() > DEADLINE {
                self.print_logs();
                panic!("timed out: {left} of {} events are not final", ids.len());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls `condition` every 100 ms until it holds, or fails the test
    /// with every process's log after [`DEADLINE`].
    pub async fn await_condition<F, Fut>(&self, what: &str, condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        poll_until(what, condition, || self.print_logs()).await;
    }

    /// Prints the end of every process's logs.
    pub fn print_logs(&self) {
        self.net.print_log_tails();
        self.events.print_tail();
        self.bridge.print_tail();
        for bridge in &self.more_bridges {
            bridge.print_tail();
        }
        if let Some(nats) = &self.nats {
            nats.print_tail();
        }
    }

    /// A `lockstep` command pointed at this system: every node
    /// (`--nodes`), the event system (`--events`), `token` in
    /// `LOCKSTEP_TOKEN` and, with TLS, the test CA (`--ca-file`).
    pub fn lockstep(&self, token: &BearerToken) -> Command {
        let mut command = Command::new(binary("lockstep"));
        command
            .env("LOCKSTEP_TOKEN", token.expose_secret())
            .args(["--nodes", &self.node_urls()])
            .args(["--events", &self.events_url]);
        if let Some(ca) = &self.net.tls {
            command.args(ca.client_args());
        }
        command
    }

    /// Runs `lockstep audit` over the chain (every node), the event store
    /// and the ledger, requiring every event to be final. Returns its exit
    /// code and its JSON report.
    pub fn audit(&self) -> (i32, Value) {
        let output = self
            .lockstep(&self.tokens.reader)
            .arg("--json")
            .arg("audit")
            .arg("--ledger")
            .arg(&self.ledger)
            .arg("--require-final")
            .arg("--chain-spec")
            .arg(self.net.spec_path())
            .output()
            .expect("run lockstep audit");
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "lockstep audit printed no JSON ({e}); stdout: {} stderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output.status.code().unwrap_or(-1), report)
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // Services first: they talk to the nodes. Each prints its log if
        // the test failed, before the testnet's directory (which holds the
        // logs) is deleted.
        self.bridge.finish();
        for bridge in &mut self.more_bridges {
            bridge.finish();
        }
        self.events.finish();
        if let Some(nats) = &mut self.nats {
            nats.process.finish();
        }
        // Before the testnet's directory, which holds its data, goes.
        if let Some(mut server) = self.postgres.take() {
            server.stop();
        }
    }
}

fn args(list: &[OsString]) -> Vec<OsString> {
    list.to_vec()
}

/// The bridge's `run` arguments: paying what `event_system_key` signed.
pub fn bridge_run_args(
    events_url: &str,
    ledger: impl AsRef<std::ffi::OsStr>,
    key: &Path,
    event_system_key: &str,
) -> Vec<OsString> {
    args(&[
        "run".into(),
        "--event-system".into(),
        events_url.into(),
        "--ledger".into(),
        ledger.as_ref().into(),
        "--key".into(),
        key.into(),
        "--event-system-key".into(),
        event_system_key.into(),
    ])
}

/// `lockstep-offchain key generate --out <file>`: a new event system key;
/// returns its public key.
pub fn generate_event_system_key(file: &Path) -> String {
    let output = Command::new(binary("lockstep-offchain"))
        .args(["key", "generate", "--out"])
        .arg(file)
        .output()
        .expect("run lockstep-offchain key generate");
    assert!(
        output.status.success(),
        "lockstep-offchain key generate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `lockstep-bridge ledger --ledger <ledger> <args>` (a reader beside the
/// running bridge): its JSON output.
pub fn ledger_json<S: AsRef<std::ffi::OsStr>>(
    ledger: impl AsRef<std::ffi::OsStr>,
    args: &[S],
) -> Value {
    let output = Command::new(binary("lockstep-bridge"))
        .args(["ledger", "--ledger"])
        .arg(ledger.as_ref())
        .args(args)
        .output()
        .expect("run lockstep-bridge ledger");
    assert!(
        output.status.success(),
        "lockstep-bridge ledger: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the ledger's JSON")
}

/// Opens a USD ledger account for every dev name, funded with
/// [`LEDGER_FUNDS`].
pub fn seed_ledger(ledger: impl AsRef<std::ffi::OsStr>) {
    let bridge = binary("lockstep-bridge");
    for name in DEV_NAMES {
        run_json(
            &bridge,
            &[
                "ledger".into(),
                "--ledger".into(),
                ledger.as_ref().into(),
                "open".into(),
                (*name).into(),
                "--currency".into(),
                CURRENCY.into(),
                "--deposit".into(),
                LEDGER_FUNDS.to_string().into(),
            ],
        );
    }
}

/// Runs a command that must succeed; parses its stdout as JSON when it is
/// JSON (Null otherwise).
fn run_json(program: &Path, arguments: &[OsString]) -> Value {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {:?} failed: {}",
        program.display(),
        arguments,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// Whether an `event_get` result is in a final state.
pub fn is_final(event: &Event) -> bool {
    matches!(event.state, State::Completed | State::Cancelled)
}

/// `payer` pays `payee` `cents` in [`CURRENCY`].
fn payment_of(payer: &str, payee: &str, cents: u128) -> PaymentInstruction {
    PaymentInstruction {
        payer: payer.to_owned(),
        payee: payee.to_owned(),
        amount: cents.to_string(),
        currency: CURRENCY.into(),
    }
}

/// One settlement the test drives: a signed transfer and its event.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The event id.
    pub id: String,
    /// The signed transfer.
    pub tx: SignedTx,
    /// The fiat side: who pays whom how much (cents).
    pub payer: String,
    /// Who is paid.
    pub payee: String,
    /// How much, in cents.
    pub amount: u128,
}

/// The method's scenario for dev accounts: `from` transfers `asset` units
/// of the dev asset to `to`, and `to` pays `from` `cents` in the ledger.
#[derive(Debug, Clone, Copy)]
pub struct Deal<'a> {
    /// Who transfers the asset (and is paid).
    pub from: &'a str,
    /// The transfer's nonce.
    pub nonce: u64,
    /// Who receives the asset (and pays).
    pub to: &'a str,
    /// Units of the dev asset.
    pub asset: u128,
    /// Cents paid for them.
    pub cents: u128,
    /// The transfer's expiry.
    pub valid_until: u64,
}

impl Settlement {
    /// Signs `deal`'s transfer, committing to event `id` and its payment.
    pub fn new(net: &Testnet, id: String, deal: Deal<'_>) -> Settlement {
        let payment = payment_of(deal.to, deal.from, deal.cents);
        let call = Call::Transfer {
            asset: DEV_ASSET,
            to: Keypair::dev(deal.to).public(),
            amount: deal.asset,
            reference: Some(settlement_commitment(&id, &payment)),
        };
        let from = Keypair::dev(deal.from);
        let tx = SignedTx::sign(&from, &net.context, deal.nonce, deal.valid_until, call);
        Settlement {
            id,
            tx,
            payer: deal.to.to_owned(),
            payee: deal.from.to_owned(),
            amount: deal.cents,
        }
    }

    /// The fiat side as the event carries it (and the transfer commits to).
    pub fn payment(&self) -> PaymentInstruction {
        payment_of(&self.payer, &self.payee, self.amount)
    }

    /// Registers the event, retrying while the event system is down or
    /// restarting (the id makes it idempotent).
    pub async fn register(&self, client: &Client) {
        let request = RegisterRequest {
            id: self.id.clone(),
            tx: Some(to_hex(&self.tx.encode())),
            tx_hash: None,
            valid_until: None,
            payment: self.payment(),
        };
        let started = Instant::now();
        loop {
            match client.events().register(request.clone()).await {
                Ok(event) => {
                    assert_eq!(event.id, self.id, "registered the wrong event");
                    return;
                }
                Err(ClientError::Call(error)) => {
                    panic!("event_register refused {}: {error}", self.id)
                }
                Err(_transport) => {
                    if started.elapsed() > DEADLINE {
                        panic!("could not register {} in time", self.id);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Submits the transfer to a running node, starting with `first` and
    /// trying the others while nodes are down. A node that already knows
    /// the transfer (pooled or finalized) counts as success.
    pub async fn submit(&self, client: &Client, first: usize) {
        let nodes = client.nodes.len();
        let hex = to_hex(&self.tx.encode());
        let started = Instant::now();
        for attempt in 0.. {
            let i = (first + attempt) % nodes;
            match client.nodes[i].submit_extrinsic(hex.clone()).await {
                Ok(_) => return,
                // 1013 already known; 1011 nonce used (by this very
                // transfer, finalized after an earlier attempt).
                Err(ClientError::Call(e))
                    if e.code() == node_error::ALREADY_KNOWN
                        || e.code() == node_error::STALE_NONCE =>
                {
                    return
                }
                Err(ClientError::Call(e)) => panic!("node {i} refused {}: {e}", self.id),
                Err(_transport) => {
                    if started.elapsed() > DEADLINE {
                        panic!("no node accepted {} in time", self.id);
                    }
                    if attempt % nodes == nodes - 1 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
}

/// The finalized height of the first node that answers.
pub async fn head(system: &System) -> u64 {
    for i in 0..system.net.nodes.len() {
        if let Some(height) = system.net.finalized(i).await {
            return height;
        }
    }
    0
}
