//! Money is conserved after any run: four writers on their own
//! connections to one ledger (a SQLite file, or a PostgreSQL database)
//! make a seeded random mix of payments (fresh, re-delivered, refused for
//! funds or an unknown account, invalid) and deposits; afterwards every
//! currency's balances sum to zero, every balance equals its account's
//! postings, and each event moved money at most once.

use std::collections::{BTreeMap, HashSet};

use lockstep_api::event::PaymentInstruction;
use lockstep_bridge::ledger::{Instruction, PayOutcome, PaymentStatus};

use crate::harness::{assert_conserved, Engine, TestLedger};

const WRITERS: u64 = 4;
const OPERATIONS: usize = 400;
const ACCOUNTS: usize = 12;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

fn account(i: usize) -> String {
    // Two currencies; "ghost" accounts are never opened.
    match i {
        0..=5 => format!("usd-{i}"),
        6..=9 => format!("eur-{i}"),
        _ => format!("ghost-{i}"),
    }
}

#[test]
fn money_is_conserved_under_a_random_concurrent_mix() {
    random_concurrent_mix(Engine::Sqlite);
}

#[test]
fn money_is_conserved_under_a_random_concurrent_mix_on_postgres() {
    random_concurrent_mix(Engine::Postgres);
}

fn random_concurrent_mix(engine: Engine) {
    let seed = std::env::var("LOCKSTEP_LEDGER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(lockstep_bridge::now_ms);
    println!("ledger mix seed: {seed} (LOCKSTEP_LEDGER_SEED to replay)");
    let dir = tempfile::tempdir().unwrap();
    let test_ledger = TestLedger::new(engine, dir.path());
    let ledger = test_ledger.open();
    let usd: Vec<String> = (0..=5).map(account).collect();
    let eur: Vec<String> = (6..=9).map(account).collect();
    ledger.open_accounts(&usd, "USD", 0, 5_000, 1).unwrap();
    ledger.open_accounts(&eur, "EUR", 500, 5_000, 1).unwrap();

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let ledger = test_ledger.open();
            std::thread::spawn(move || {
                let mut rng = Rng((seed ^ (w + 1).wrapping_mul(0x9e37_79b9)) | 1);
                let mut paid = Vec::new();
                for op in 0..OPERATIONS {
                    if rng.below(10) == 0 {
                        let to = account(rng.below(10));
                        ledger
                            .deposit(&to, 1 + rng.below(3_000) as i128, 2)
                            .unwrap();
                        continue;
                    }
                    // Event ids shared across writers half the time, so
                    // the same instruction arrives concurrently.
                    let event = if rng.below(2) == 0 {
                        format!("shared-{}", rng.below(50))
                    } else {
                        format!("w{w}-{op}")
                    };
                    // The instruction is a function of the event id, as the
                    // event system guarantees.
                    let mut by_id = Rng(event.bytes().fold(7u64, |h, b| h * 31 + u64::from(b)) | 1);
                    let payer = by_id.below(ACCOUNTS);
                    let payee = (payer + 1 + by_id.below(ACCOUNTS - 1)) % ACCOUNTS;
                    let currency = if (6..=9).contains(&payer) {
                        "EUR"
                    } else {
                        "USD"
                    };
                    let amount = match by_id.below(20) {
                        0 => "0".to_string(),
                        1 => "9223372036854775808".to_string(),
                        _ => (1 + by_id.below(4_000)).to_string(),
                    };
                    let payment = PaymentInstruction {
                        payer: account(payer),
                        payee: account(payee),
                        amount,
                        currency: currency.into(),
                    };
                    let Ok(instruction) = Instruction::parse(&event, &payment) else {
                        continue; // invalid: never reaches the ledger
                    };
                    if let Ok(PayOutcome::Paid { .. }) = ledger.pay(&instruction, 3) {
                        paid.push(event);
                    }
                }
                paid
            })
        })
        .collect();
    let mut paid_events = Vec::new();
    for writer in writers {
        paid_events.extend(writer.join().unwrap());
    }

    // Each event was paid (moved money) at most once.
    let distinct: HashSet<&String> = paid_events.iter().collect();
    assert_eq!(distinct.len(), paid_events.len(), "an event was paid twice");
    let rows = ledger.payments().unwrap();
    let paid_rows: HashSet<&String> = rows
        .iter()
        .filter(|p| p.status == PaymentStatus::Paid)
        .map(|p| &p.event_id)
        .collect();
    assert_eq!(paid_rows, distinct);
    assert!(!paid_rows.is_empty(), "the mix paid nothing");
    assert!(
        rows.iter().any(|p| p.status == PaymentStatus::Failed),
        "the mix refused nothing"
    );

    // Balances sum to zero per currency; postings sum to zero per currency
    // and, per account, to its balance.
    assert_conserved(ledger.as_ref());
    let contents = ledger.contents().unwrap();
    let mut per_account: BTreeMap<&str, i128> = BTreeMap::new();
    for posting in &contents.postings {
        *per_account.entry(posting.account.as_str()).or_default() += posting.amount;
    }
    for account in &contents.accounts {
        let posted = per_account.get(account.id.as_str()).copied().unwrap_or(0);
        assert_eq!(posted, account.balance, "{}", account.id);
        assert!(
            account.system || account.balance >= -account.overdraft,
            "{account:?}"
        );
    }
    assert_eq!(
        contents.postings.len(),
        2 * (contents.deposits.len() + paid_rows.len())
    );
}
