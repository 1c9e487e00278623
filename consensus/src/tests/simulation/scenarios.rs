//! Simulation runs over many seeds. Safety is asserted inside the
//! simulation on every step; these tests add progress once calm,
//! determinism, and that the faults they claim really happened.

use super::{run, Byzantine, Report, Scenario, Stats};

fn add(totals: &mut Stats, stats: &Stats) {
    totals.events += stats.events;
    totals.dropped += stats.dropped;
    totals.duplicated += stats.duplicated;
    totals.partitions += stats.partitions;
    totals.crashes += stats.crashes;
    totals.crashes_mid_output += stats.crashes_mid_output;
    totals.restores += stats.restores;
    totals.evidence += stats.evidence;
    totals.invalid_proposals += stats.invalid_proposals;
    totals.decisions += stats.decisions;
    totals.synced += stats.synced;
    totals.highest_decision_round = totals
        .highest_decision_round
        .max(stats.highest_decision_round);
}

/// Runs every seed, asserts progress in each, returns the summed stats.
fn run_seeds(seeds: std::ops::Range<u64>, scenario: impl Fn(u64) -> Scenario) -> Stats {
    let mut totals = Stats::default();
    let mut slowest = 0;
    for seed in seeds {
        let report = run(scenario(seed));
        let progress = report.progress_ms;
        assert!(
            progress.is_some(),
            "seed {seed}: no progress once calm: {:?}\n{}",
            report.stats,
            report.final_states.join("\n")
        );
        slowest = slowest.max(progress.unwrap_or(0));
        add(&mut totals, &report.stats);
    }
    println!("slowest progress {slowest} ms; totals {totals:?}");
    totals
}

fn assert_faults_happened(totals: &Stats) {
    assert!(totals.dropped > 0 && totals.duplicated > 0, "{totals:?}");
    assert!(totals.partitions > 0, "{totals:?}");
    assert!(
        totals.crashes > 0 && totals.crashes_mid_output > 0,
        "{totals:?}"
    );
    assert!(totals.restores > 0, "{totals:?}");
    assert!(totals.evidence > 0, "{totals:?}");
    assert!(totals.synced > 0, "{totals:?}");
    assert!(totals.highest_decision_round > 0, "{totals:?}");
}

#[test]
fn calm_network_decides_every_height_in_round_zero() {
    for n in [4, 7] {
        let report = run(Scenario::calm(n, 1));
        assert!(report.progress_ms.is_some(), "{report:?}");
        assert_eq!(report.stats.highest_decision_round, 0, "{report:?}");
        assert!(
            report.heights.iter().all(|height| *height >= 20),
            "{report:?}"
        );
        assert_eq!(report.stats.evidence, 0);
    }
}

#[test]
fn four_validators_stay_safe_and_live_under_every_fault() {
    let totals = run_seeds(0..1_000, |seed| Scenario::stormy(4, seed));
    assert_faults_happened(&totals);
}

#[test]
fn seven_validators_with_two_byzantine_stay_safe_and_live() {
    let totals = run_seeds(0..200, |seed| Scenario {
        byzantine: vec![
            Byzantine {
                index: 5,
                invalid_blocks: false,
            },
            Byzantine {
                index: 6,
                invalid_blocks: true,
            },
        ],
        ..Scenario::stormy(7, 1_000 + seed)
    });
    assert_faults_happened(&totals);
    assert!(totals.invalid_proposals > 0, "{totals:?}");
}

#[test]
fn invalid_blocks_from_a_byzantine_proposer_are_never_decided() {
    // The simulation panics if a correct validator decides an invalid block.
    let totals = run_seeds(0..200, |seed| Scenario {
        byzantine: vec![Byzantine {
            index: 2,
            invalid_blocks: true,
        }],
        progress_heights: 8,
        ..Scenario::stormy(4, 2_000 + seed)
    });
    assert!(totals.invalid_proposals > 0, "{totals:?}");
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let trace = |report: &Report| (report.trace, report.decided.clone(), report.stats.clone());
    let first = run(Scenario::stormy(4, 77));
    let again = run(Scenario::stormy(4, 77));
    assert_eq!(trace(&first), trace(&again));
    let other = run(Scenario::stormy(4, 78));
    assert_ne!(first.trace, other.trace);
    assert_ne!(first.decided, other.decided);
}

/// Many more seeds than the quick tests: run with
/// `cargo test -p lockstep-consensus seed_sweep -- --ignored --nocapture`,
/// optionally with `SWEEP=FROM..TO` to choose the seeds.
#[test]
#[ignore = "long: thousands of seeds"]
fn seed_sweep() {
    let range = std::env::var("SWEEP").unwrap_or_else(|_| "1000..5000".to_owned());
    let (from, to) = range.split_once("..").expect("SWEEP=FROM..TO");
    let seeds = from.parse().expect("FROM")..to.parse().expect("TO");
    let totals = run_seeds(seeds.clone(), |seed| Scenario::stormy(4, seed));
    assert_faults_happened(&totals);
    let totals = run_seeds(seeds, |seed| Scenario {
        byzantine: vec![
            Byzantine {
                index: 5,
                invalid_blocks: false,
            },
            Byzantine {
                index: 6,
                invalid_blocks: true,
            },
        ],
        ..Scenario::stormy(7, seed)
    });
    assert_faults_happened(&totals);
}
