//! The command line: every command, flag and its help, and the parsers that
//! turn bad input into usage errors (exit code 2) before anything runs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use lockstep_api::client::TokenArg;
use lockstep_api::event::PaymentInstruction;
use lockstep_api::lifecycle::State;
use lockstep_api::quorum::Quorum;
use lockstep_bridge::ledger::LedgerLocation;
use lockstep_runtime::{AssetId, Balance};

/// Lockstep: transfer assets with their fiat settlement, inspect events and
/// the chain, audit the whole system, generate load.
///
/// Accounts and keys can be given as a key file (as written by `lockstep key
/// generate --out`), a `0x` account id (for recipients), or a dev name
/// (`alice`, `bob`, `charlie`, `dave`, ...; public test keys, dev chains only).
///
/// Exit codes: 0 success; 1 error (unreachable service, refused request,
/// audit violation); 2 bad usage (including a malformed token or an
/// unusable CA file); 3 the transfer failed on chain, expired, or its event
/// was cancelled; 4 `event verify`: the event's outcome is not proven (its
/// proof does not verify against the chain spec, or a decided event has
/// none); 5 `event verify`: nothing to prove (the event is Registered, or
/// Cancelled as expired).
#[derive(Debug, Parser)]
#[command(name = "lockstep", version)]
pub struct Cli {
    /// A node's JSON-RPC URL (http:// or ws://, https:// or wss:// for a
    /// node with TLS; the same port serves both).
    #[arg(
        long,
        global = true,
        env = "LOCKSTEP_RPC",
        default_value = "http://127.0.0.1:9944",
        value_parser = parse_url
    )]
    pub rpc: String,
    /// Several nodes' JSON-RPC URLs, comma-separated: transfers go to the
    /// first that answers, the audit asks all of them for a quorum, the bench
    /// spreads its clients over them. Default: the --rpc node alone.
    #[arg(
        long,
        global = true,
        env = "LOCKSTEP_NODES",
        value_delimiter = ',',
        value_parser = parse_url
    )]
    pub nodes: Vec<String>,
    /// The event system's JSON-RPC URL.
    #[arg(
        long,
        global = true,
        env = "LOCKSTEP_EVENTS",
        default_value = "http://127.0.0.1:9955",
        value_parser = parse_url
    )]
    pub events: String,
    /// The bearer token presented to the event system (from `lockstep-offchain
    /// token create`; `scripts/testnet.sh` writes one into run/testnet/env).
    /// Prefer the environment variable: a command line is visible to other
    /// users of the machine.
    #[arg(long, global = true, env = "LOCKSTEP_TOKEN", hide_env_values = true)]
    pub token: Option<TokenArg>,
    /// A PEM file of CA certificates: https:// and wss:// URLs (of the
    /// nodes and of the event system) are verified against these alone
    /// instead of the system's roots, e.g. a testnet's own CA. The name in
    /// the URL must be one the server's certificate names.
    #[arg(long, global = true, env = "LOCKSTEP_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Print JSON instead of text (one document, or one per line for
    /// streams).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The nodes to use: `--nodes`, or the `--rpc` node alone.
    pub fn node_urls(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            vec![self.rpc.clone()]
        } else {
            self.nodes.clone()
        }
    }
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign an asset transfer and submit it; with --pay, register its event
    /// (with the fiat payment that settles it) first.
    ///
    /// With --pay: the event is registered in the event system, and only if
    /// that succeeds is the transfer submitted (to the first node that
    /// answers). With --wait, follows the event to Completed (exit 0) or
    /// Cancelled (exit 3). Without --pay: a chain-only transfer; --wait
    /// follows it to finality (exit 0 success, 3 failed or expired).
    Transfer(TransferArgs),
    /// Inspect events in the event system.
    #[command(subcommand)]
    Event(EventCommand),
    /// Read the chain.
    #[command(subcommand)]
    Chain(ChainCommand),
    /// Generate or inspect keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Cross-check the chain (a quorum of nodes), the event store and the
    /// ledger against the protocol's invariants; print every violation and
    /// exit 1 if there is any.
    Audit(AuditArgs),
    /// Load generator: pre-signed transfers with registered events; reports
    /// finalized tx/s, settled events/s and registration→Completed latency.
    Bench(BenchArgs),
}

/// `lockstep transfer`.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// The sender's key file or dev name.
    #[arg(long)]
    pub from: String,
    /// The recipient: a 0x account id, key file or dev name.
    #[arg(long)]
    pub to: String,
    /// The asset id.
    #[arg(long, default_value_t = 1)]
    pub asset: AssetId,
    /// The amount, in the asset's smallest unit (more than 0).
    #[arg(long, value_parser = parse_positive)]
    pub amount: Balance,
    /// The fiat payment that settles the transfer,
    /// `payer:payee:amount:currency` (amount in minor units, currency three
    /// upper-case letters), e.g. `bob:alice:2500:USD`.
    #[arg(long, value_parser = parse_payment)]
    pub pay: Option<PaymentInstruction>,
    /// The event id (the idempotency key; A-Z a-z 0-9 . _ : -, at most 128
    /// bytes). Default: `tx-` and a hash of the transfer without its
    /// reference (which commits to the id). Needs --pay.
    #[arg(long, requires = "pay", value_parser = parse_event_id)]
    pub event_id: Option<String>,
    /// Blocks from now during which the transfer may be included.
    #[arg(long, default_value_t = 600)]
    pub valid_for: u64,
    /// Register the event but never submit the transfer (a client that
    /// died between the two steps): the event is Cancelled once the chain
    /// is past the transfer's expiry, and nothing is paid. Needs --pay.
    #[arg(long, requires = "pay")]
    pub register_only: bool,
    /// Wait for a final state (the event's with --pay, else the
    /// transaction's), with a progress line on stderr when it is a terminal.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 1; the transfer
    /// and its event go on). 0: wait as long as it takes.
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
}

/// `lockstep event ...`.
#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// An event: its state, transfer, payment, evidence and receipt.
    Get {
        /// The event id.
        id: String,
    },
    /// Events: in id order, or with --state (or --overdue) oldest in that
    /// state first.
    List {
        /// Only events in this state (Registered, PendingAccount, Completed,
        /// Cancelled).
        #[arg(long, value_parser = parse_state)]
        state: Option<State>,
        /// Only PendingAccount events past the overdue threshold.
        #[arg(long)]
        overdue: bool,
        /// Most events to print (fetched in pages of at most 500).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        limit: u64,
        /// Continue after this cursor (printed at the end of a page).
        #[arg(long)]
        after: Option<String>,
    },
    /// An event's transitions, oldest first, with their evidence.
    History {
        /// The event id.
        id: String,
    },
    /// Stream transitions as they happen. With an id: that event's only,
    /// from its current state, until it is final (exit 0 Completed, 3
    /// Cancelled). The event system filters the stream (by id, --prefix,
    /// --state), so a watcher receives only what it prints.
    Watch {
        /// Only this event.
        id: Option<String>,
        /// Only events whose id starts with this.
        #[arg(long, conflicts_with = "id", value_parser = parse_event_id)]
        prefix: Option<String>,
        /// Only transitions into this state (Registered, PendingAccount,
        /// Completed, Cancelled); repeat for several.
        #[arg(long = "state", conflicts_with = "id", value_parser = parse_state)]
        states: Vec<State>,
        /// Start from this transition sequence number (replays the history
        /// from there). Default: only new transitions.
        #[arg(long)]
        from_seq: Option<u64>,
    },
    /// Counts per state, overdue events, bus depth, last height.
    Stats,
    /// Check an event's on-chain outcome offline, against the chain spec
    /// alone, trusting neither the event system nor any node.
    ///
    /// Reads the event and the proof of its outcome (`event_getProof`: the
    /// block's header with the validators' precommits, the transfer's
    /// receipt with its Merkle path, the transfer's bytes) from the event
    /// system, or from --from-file, and checks that a quorum of the spec's
    /// validators made the block final, that the receipt is in it and is
    /// the event's transfer's, that the transfer commits to the event's
    /// payment (or not), and that the event's state is the one this gives.
    /// The bridge's receipt of a Completed event is the bridge's word, not
    /// the chain's: the proof shows the payment owed.
    ///
    /// Exit codes: 0 the proof verifies (whatever the outcome it proves,
    /// Cancelled included); 4 it does not, or a decided event comes without
    /// one; 5 nothing to prove (Registered: not decided yet; Cancelled as
    /// expired: nothing was included); 1 an error (unreachable event
    /// system, unknown event, unreadable file). --json prints the event,
    /// the proof and the verdict as one document, which --from-file reads
    /// back.
    Verify {
        /// The event id (with --from-file, optional: the file's event must
        /// be this one).
        #[arg(required_unless_present = "from_file", value_parser = parse_event_id)]
        id: Option<String>,
        /// The chain spec (JSON) of the chain: its id and validators are
        /// all that is trusted.
        #[arg(long, env = "LOCKSTEP_CHAIN_SPEC")]
        chain_spec: PathBuf,
        /// Verify the event and proof saved in this file (what `lockstep
        /// --json event verify ID` prints: a JSON object with `event` and
        /// `proof`; anything else in it, such as an earlier verdict, is
        /// ignored), with no network at all.
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
    },
}

/// `lockstep chain ...`.
#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// The finalized head.
    Head,
    /// A block by number or hash (default: the head).
    Block {
        /// A block number or 0x hash.
        at: Option<String>,
    },
    /// An account's balance of an asset.
    Balance {
        /// A 0x account id, key file or dev name.
        account: String,
        /// The asset id.
        #[arg(long, default_value_t = 1)]
        asset: AssetId,
    },
    /// The nonce an account's next transaction must carry.
    Nonce {
        /// A 0x account id, key file or dev name.
        account: String,
    },
}

/// `lockstep key ...`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new random key into a file (mode 0600).
    Generate {
        /// The key file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Show the account id of a key file or dev name.
    Inspect {
        /// A key file or dev name.
        key: String,
    },
}

/// `lockstep audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The account bridge's ledger, opened read-only: a SQLite file or a
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DB` URL (give a password
    /// through the environment variable, not the command line).
    #[arg(long, env = "LOCKSTEP_LEDGER", hide_env_values = true)]
    pub ledger: LedgerLocation,
    /// The share of --nodes that must agree on each transfer's outcome.
    #[arg(long, default_value = "2/3")]
    pub quorum: Quorum,
    /// Count a non-final event (Registered, PendingAccount) as a violation.
    #[arg(long)]
    pub require_final: bool,
    /// The chain spec (JSON) the chain was started from: its genesis
    /// balances are the starting supply of the supply check, and its
    /// validators what every event's proof is verified against. Default:
    /// the dev chain's spec when the genesis hash is the dev chain's;
    /// otherwise the supply check is skipped and the proofs are only
    /// checked to be there (and the audit says so).
    #[arg(long, env = "LOCKSTEP_CHAIN_SPEC")]
    pub chain_spec: Option<PathBuf>,
    /// The total of every ledger balance per currency, system account
    /// included, that conservation requires, as `CUR=AMOUNT` (repeatable).
    /// Currencies not listed must total 0 (double entry).
    #[arg(long = "ledger-total", value_parser = parse_total)]
    pub ledger_totals: Vec<(String, i128)>,
    /// Skip the chain supply check (it reads every block).
    #[arg(long)]
    pub skip_supply: bool,
    /// Most node queries in flight at once (and event-system reads: that
    /// many batches of histories, 8 times that many proof reads).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
}

/// `lockstep bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Transfers (each with its event) to send (at most 1,000,000: all are
    /// signed before the run).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
    /// Transfers per second to offer; 0: open loop (as fast as accepted).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Sending accounts, funded by --funder before the run (at most 4096:
    /// the pool's per-account limit for the funder).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub accounts: u64,
    /// Concurrent clients (each registers and submits for its own accounts).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub clients: u64,
    /// Transfers per batch: one `event_registerBatch` call, then one
    /// JSON-RPC batch of submissions (a node takes at most 256 per batch).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub batch: u64,
    /// The key that funds the sending accounts.
    #[arg(long, default_value = "alice")]
    pub funder: String,
    /// The asset transferred.
    #[arg(long, default_value_t = 1)]
    pub asset: AssetId,
    /// Ledger accounts that pay and are paid, comma-separated (event i:
    /// payer i, payee i+1, round robin).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "alice,bob,charlie,dave,eve,ferdie,grace,heidi"
    )]
    pub ledger_accounts: Vec<String>,
    /// Payment amount per event, in minor units.
    #[arg(long, default_value_t = 1, value_parser = parse_positive)]
    pub pay_amount: Balance,
    /// Payment currency.
    #[arg(long, default_value = "USD")]
    pub currency: String,
    /// Blocks during which each transfer may be included.
    #[arg(long, default_value_t = 600)]
    pub valid_for: u64,
    /// Seconds to wait for the last events to settle after the last
    /// submission.
    #[arg(long, default_value_t = 120)]
    pub drain_timeout: u64,
    /// A name for this run: accounts and event ids derive from it
    /// (default: random, so every run starts with fresh accounts).
    #[arg(long, value_parser = parse_event_id)]
    pub run_id: Option<String>,
}

/// Checks a service URL: http(s) or ws(s), with a host.
pub fn parse_url(text: &str) -> Result<String, String> {
    let rest = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| text.strip_prefix(scheme))
        .ok_or_else(|| {
            format!("{text:?} is not a URL: expected http://host:port (or https://, ws://, wss://)")
        })?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(text.to_owned())
}

fn parse_positive(text: &str) -> Result<Balance, String> {
    match text.parse::<Balance>() {
        Ok(0) => Err("must be more than 0".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// `payer:payee:amount:currency`, checked as the event system will.
pub fn parse_payment(text: &str) -> Result<PaymentInstruction, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [payer, payee, amount, currency] = parts[..] else {
        return Err(format!(
            "{text:?}: expected payer:payee:amount:currency, e.g. bob:alice:2500:USD"
        ));
    };
    let payment = PaymentInstruction {
        payer: payer.to_owned(),
        payee: payee.to_owned(),
        amount: amount.to_owned(),
        currency: currency.to_owned(),
    };
    payment.check().map_err(|e| e.to_string())?;
    Ok(payment)
}

fn parse_event_id(text: &str) -> Result<String, String> {
    lockstep_api::event::check_event_id(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

fn parse_state(text: &str) -> Result<State, String> {
    State::ALL
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            format!("{text:?}: expected Registered, PendingAccount, Completed or Cancelled")
        })
}

fn parse_total(text: &str) -> Result<(String, i128), String> {
    let (currency, amount) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected CUR=AMOUNT, e.g. USD=0"))?;
    let amount = amount
        .parse::<i128>()
        .map_err(|_| format!("{text:?}: the amount is not a whole number"))?;
    Ok((currency.to_owned(), amount))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_parse_and_check() {
        let p = parse_payment("bob:alice:2500:USD").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((p.payer.as_str(), p.amount.as_str()), ("bob", "2500"));
        for bad in [
            "bob:alice:0:USD",
            "bob:alice:25:usd",
            "bob:alice:2500",
            "bob:bob:1:USD",
            "bob:alice:-1:USD",
            "a:b:c:d:e",
        ] {
            assert!(parse_payment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_states() {
        assert!(parse_url("http://127.0.0.1:9944").is_ok());
        assert!(parse_url("ws://node:1").is_ok());
        assert!(parse_url("https://localhost:9944").is_ok());
        assert!(parse_url("wss://localhost:9944").is_ok());
        assert!(parse_url("127.0.0.1:9944").is_err());
        assert!(parse_url("http://").is_err());
        assert_eq!(parse_state("pendingaccount"), Ok(State::PendingAccount));
        assert!(parse_state("done").is_err());
        assert_eq!(parse_total("USD=-5"), Ok(("USD".into(), -5)));
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
