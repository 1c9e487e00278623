//! The event system in the test's own process: [`EventSystem`].
//!
//! A real [`crate::start`] on a loopback port chosen by the kernel, its
//! store in a temporary directory without fsync, and every interval short
//! ([`fast_config`]), so that events become final within a test's time.
//! It comes with typed clients from [`lockstep_api::client`]: call the
//! [`lockstep_api::offchain`] client traits on [`EventSystem::http`] and
//! [`EventSystem::ws`].
//!
//! Credentials are on, as in production: the event system accepts the
//! public test credentials [`DevCredential`] (one per role, and an
//! operator with all three, which the default clients use), so a test can
//! call as any role and see each refused where it should be.
//!
//! [`EventSystem::start_tls`] serves `https://` and `wss://` instead, with a
//! certificate of the test's own CA
//! (`lockstep_service::test_utils::TestCa`), and its clients trust that CA.
//!
//! Behind the cargo feature `test-utils`; never in a release binary.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use jsonrpsee::http_client::HttpClient;
use jsonrpsee::ws_client::WsClient;
use lockstep_api::client::{self, BearerToken, ClientOptions, TrustedCas};
use lockstep_api::event::{Event, Transition};
use lockstep_api::offchain::{EventApiClient, Role, Stats, TransitionFilter};
use lockstep_runtime::{AccountId, Hash, Keypair};
use lockstep_service::auth::{Roles, TokenHash};
use lockstep_service::tls::{server_urls, ServerTls};

use crate::metrics::Metrics;
use crate::{Auth, ChainTrust, Config, RunningService};

/// Generous bound on the waits here, so a bug fails the test rather than
/// hanging it. Not a timing assertion.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The public test credentials. Like the dev keys, anyone may know their
/// tokens (derived from their names), so they belong in tests only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevCredential {
    /// `dev-submitter`: role submitter, any payer.
    Submitter,
    /// `dev-reader`: role reader.
    Reader,
    /// `dev-bridge`: role bridge.
    Bridge,
    /// `dev-operator`: every role (the default clients of [`EventSystem`]).
    Operator,
}

impl DevCredential {
    /// Every one.
    pub const ALL: [DevCredential; 4] = [
        DevCredential::Submitter,
        DevCredential::Reader,
        DevCredential::Bridge,
        DevCredential::Operator,
    ];

    /// The one with exactly `role`.
    pub fn with_role(role: Role) -> DevCredential {
        match role {
            Role::Submitter => DevCredential::Submitter,
            Role::Reader => DevCredential::Reader,
            Role::Bridge => DevCredential::Bridge,
        }
    }

    /// Its name in the credentials file.
    pub fn name(self) -> &'static str {
        match self {
            DevCredential::Submitter => "dev-submitter",
            DevCredential::Reader => "dev-reader",
            DevCredential::Bridge => "dev-bridge",
            DevCredential::Operator => "dev-operator",
        }
    }

    /// Its roles.
    pub fn roles(self) -> Roles {
        match self {
            DevCredential::Submitter => Roles::of(&[Role::Submitter]),
            DevCredential::Reader => Roles::of(&[Role::Reader]),
            DevCredential::Bridge => Roles::of(&[Role::Bridge]),
            DevCredential::Operator => Roles::all(),
        }
    }

    /// Its token: `lst_` and the SHA-256 of `lockstep dev credential <name>`.
    pub fn token(self) -> BearerToken {
        let seed = Hash::digest(format!("lockstep dev credential {}", self.name()).as_bytes());
        BearerToken::from_secret(&seed.0)
    }
}

/// The token of the dev credential with exactly `role`.
pub fn dev_token(role: Role) -> BearerToken {
    DevCredential::with_role(role).token()
}

/// Writes a credentials file holding every [`DevCredential`] at `path`
/// (mode 0600).
pub fn write_dev_credentials(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut text = String::from("# The public test credentials (lockstep_offchain::test_utils).\n");
    for dev in DevCredential::ALL {
        text.push_str(&format!(
            "{} {} {}\n",
            dev.name(),
            dev.roles(),
            TokenHash::of(&dev.token())
        ));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

/// The chain id of the dev nodes the tests run (`lockstep_node::test_utils::DEV_CHAIN_ID`,
/// which this crate cannot name: it does not depend on the node).
pub const DEV_CHAIN_ID: &str = "lockstep-test";

/// What the dev nodes' chain [`DEV_CHAIN_ID`] is trusted as: validated by
/// `alice` alone (the node's `test_utils::dev_spec`).
pub fn dev_chain() -> ChainTrust {
    dev_chain_for(DEV_CHAIN_ID)
}

/// A dev chain named `chain_id`, validated by `alice` alone: what the
/// node's `test_utils::dev_spec(chain_id)` runs.
pub fn dev_chain_for(chain_id: &str) -> ChainTrust {
    ChainTrust::from_spec(&lockstep_runtime::ChainSpec::dev(
        chain_id,
        &[Keypair::dev("alice").public()],
    ))
    .expect("one validator is a valid set")
}

/// The trust of the dev chain whose id the first answering node of
/// `config.nodes` names (`system_properties`): the tests of each crate run
/// dev nodes of their own chain id, all validated by `alice`. If no node
/// answers, [`dev_chain`].
async fn dev_chain_of(config: &Config) -> ChainTrust {
    let options = ClientOptions::new(client::DEFAULT_TIMEOUT).with_cas(config.node_cas.clone());
    for url in &config.nodes {
        let Ok(node) = client::http_with(url, &options) else {
            continue;
        };
        if let Ok(properties) = lockstep_api::node::SystemApiClient::properties(&node).await {
            return dev_chain_for(&properties.chain_id);
        }
    }
    // None answers (e.g. a test of an event system that may not reach
    // its nodes): it will not verify anything either way.
    dev_chain()
}

/// [`Config::new`] with quick re-checks and re-sends, JSON-RPC on
/// `127.0.0.1:0`, no fsync, and the [`DevCredential`]s (written to
/// `<base_path>/credentials`): for tests, where faults must heal within
/// seconds.
pub fn fast_config(nodes: Vec<String>, base_path: &Path, bridge_key: AccountId) -> Config {
    let mut config = Config::new(nodes, base_path.to_path_buf(), bridge_key);
    let credentials = base_path.join("credentials");
    write_dev_credentials(&credentials)
        .unwrap_or_else(|e| panic!("writing {}: {e}", credentials.display()));
    config.auth = Auth::Credentials(credentials);
    config.rpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.scan_interval = Duration::from_millis(100);
    config.grace = Duration::from_millis(300);
    config.recheck_cap = Duration::from_millis(500);
    config.resend_base = Duration::from_millis(200);
    config.resend_cap = Duration::from_secs(1);
    config.watcher_retry = Duration::from_millis(100);
    config.sync_writes = false;
    config
}

/// An event system running in this process; see the [module docs](self).
#[derive(Debug)]
pub struct EventSystem {
    service: Option<RunningService>,
    /// An HTTP client of its JSON-RPC server, as [`DevCredential::Operator`]
    /// (every role).
    pub http: HttpClient,
    /// A WebSocket client of the same server, for subscriptions, as
    /// [`DevCredential::Operator`].
    pub ws: WsClient,
    /// Its JSON-RPC address.
    pub addr: SocketAddr,
    /// The CAs its clients trust when it serves TLS.
    cas: Option<TrustedCas>,
    tls: bool,
    _dir: tempfile::TempDir,
}

impl EventSystem {
    /// [`fast_config`] for `nodes`, accepting receipts signed by
    /// `bridge_key`.
    pub async fn start(nodes: Vec<String>, bridge_key: AccountId) -> EventSystem {
        EventSystem::start_with(nodes, bridge_key, |_| {}).await
    }

    /// [`fast_config`], in a fresh temporary directory, then changed by
    /// `configure`. Panics if it does not start.
    ///
    /// A `configure` that sets [`Config::tls`] needs
    /// [`EventSystem::start_tls`] instead, whose clients trust the server's
    /// CA.
    pub async fn start_with(
        nodes: Vec<String>,
        bridge_key: AccountId,
        configure: impl FnOnce(&mut Config),
    ) -> EventSystem {
        EventSystem::launch(nodes, bridge_key, None, configure).await
    }

    /// [`EventSystem::start_with`], serving `https://` and `wss://` with
    /// `tls`; its clients ([`EventSystem::http`], [`EventSystem::ws`],
    /// [`EventSystem::http_as`]) trust `cas` alone. `cas` is not what the
    /// event system trusts for its nodes: that is [`Config::node_cas`],
    /// for `configure` to set. With `lockstep_service::test_utils::TestCa`:
    /// `EventSystem::start_tls(nodes, key, ca.server_tls(), ca.trusted_cas(), |_| {})`.
    pub async fn start_tls(
        nodes: Vec<String>,
        bridge_key: AccountId,
        tls: ServerTls,
        cas: TrustedCas,
        configure: impl FnOnce(&mut Config),
    ) -> EventSystem {
        EventSystem::launch(nodes, bridge_key, Some((tls, cas)), |config| {
            configure(config);
            assert!(
                config.tls.is_some(),
                "EventSystem::start_tls: `configure` removed the TLS set-up"
            );
        })
        .await
    }

    async fn launch(
        nodes: Vec<String>,
        bridge_key: AccountId,
        tls: Option<(ServerTls, TrustedCas)>,
        configure: impl FnOnce(&mut Config),
    ) -> EventSystem {
        let dir = tempfile::tempdir().expect("a temporary directory for the event system");
        let mut config = fast_config(nodes, dir.path(), bridge_key);
        let (server_tls, cas) = tls.unzip();
        config.tls = server_tls;
        configure(&mut config);
        if config.chain.is_none() {
            config.chain = Some(dev_chain_of(&config).await);
        }
        let tls = config.tls.is_some();
        assert!(
            !tls || cas.is_some(),
            "an event system with Config::tls is started with EventSystem::start_tls, \
             whose clients trust its CA"
        );
        let service = crate::start(config)
            .await
            .unwrap_or_else(|e| panic!("the event system did not start: {e}"));
        let addr = service.rpc_addr;
        let (url, _) = server_urls(addr, tls);
        let options = ClientOptions::new(client::DEFAULT_TIMEOUT)
            .with_token(Some(DevCredential::Operator.token()))
            .with_cas(cas.clone());
        let http = client::http_with(&url, &options)
            .unwrap_or_else(|e| panic!("a client of the event system: {e}"));
        let ws = client::ws_with(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("a WebSocket client of the event system: {e}"));
        EventSystem {
            service: Some(service),
            http,
            ws,
            addr,
            cas,
            tls,
            _dir: dir,
        }
    }

    /// Its JSON-RPC URL: `http://127.0.0.1:<port>` (the same port serves
    /// `ws://`), or `https://` (and `wss://`) when it serves TLS.
    pub fn url(&self) -> String {
        server_urls(self.addr, self.tls).0
    }

    /// An HTTP client that presents `token` (none: no credential), trusting
    /// the event system's CA when it serves TLS.
    pub fn http_as(&self, token: Option<BearerToken>) -> HttpClient {
        let options = ClientOptions::new(client::DEFAULT_TIMEOUT)
            .with_token(token)
            .with_cas(self.cas.clone());
        client::http_with(&self.url(), &options)
            .unwrap_or_else(|e| panic!("a client of the event system: {e}"))
    }

    /// The public key its instructions are signed with (a fresh key per
    /// event system unless the test set [`Config::instruction_key`]): give
    /// it to a bridge.
    pub fn instruction_key(&self) -> AccountId {
        self.service().instruction_key
    }

    /// The service itself (its store, metrics, bound addresses).
    pub fn service(&self) -> &RunningService {
        self.service
            .as_ref()
            .unwrap_or_else(|| unreachable!("an EventSystem holds its service until stopped"))
    }

    /// `event_get`. Panics on an error (an unknown id, too).
    pub async fn event(&self, id: &str) -> Event {
        self.http
            .get(id.to_owned())
            .await
            .unwrap_or_else(|e| panic!("event_get {id}: {e}"))
    }

    /// `event_history`.
    pub async fn history(&self, id: &str) -> Vec<Transition> {
        self.http
            .history(id.to_owned())
            .await
            .unwrap_or_else(|e| panic!("event_history {id}: {e}"))
    }

    /// `event_stats`.
    pub async fn stats(&self) -> Stats {
        self.http
            .stats()
            .await
            .unwrap_or_else(|e| panic!("event_stats: {e}"))
    }

    /// Waits until `id` moves to the state named `state` (a
    /// [`lockstep_api::lifecycle::State`]'s name), following `event_subscribe` from the start,
    /// filtered to `id`; panics if it moves to another final state first,
    /// or after [`PATIENCE`].
    pub async fn await_transition(&self, id: &str, state: &str) {
        let mut feed = self
            .ws
            .subscribe_transitions(Some(1), Some(TransitionFilter::event_ids([id])))
            .await
            .unwrap_or_else(|e| panic!("event_subscribe: {e}"));
        let wait = async {
            loop {
                let transition = feed
                    .next()
                    .await
                    .unwrap_or_else(|| panic!("the transition feed ended"))
                    .unwrap_or_else(|e| panic!("a transition: {e}"));
                if transition.event_id != id {
                    continue;
                }
                if transition.to.name() == state {
                    return;
                }
                assert!(
                    !transition.to.is_final(),
                    "{id} reached {} instead of {state}",
                    transition.to
                );
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("{id} did not reach {state}"));
    }

    /// [`Self::await_transition`], then the event.
    pub async fn await_state(&self, id: &str, state: &str) -> Event {
        self.await_transition(id, state).await;
        self.event(id).await
    }

    /// Waits until `check` holds, re-testing after every quorum round,
    /// reconciler pass or watcher block; panics after [`PATIENCE`].
    pub async fn await_metrics(&self, check: impl Fn(&Metrics) -> bool) {
        let metrics = self.service().metrics.clone();
        let mut changed = metrics.changed();
        let wait = async {
            while !check(&metrics) {
                if changed.changed().await.is_err() {
                    panic!("the event system's metrics stopped changing");
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("metrics condition not reached"));
    }

    /// Stops the service and waits until it has.
    pub async fn stop(mut self) {
        if let Some(service) = self.service.take() {
            service.stop().await;
        }
    }
}
