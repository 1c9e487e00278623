//! Logging set-up, the same in every binary: to stderr, filtered by
//! `RUST_LOG` (default: the binary's own default, usually `info`), as text
//! for people or as one JSON object per line for log shippers.

use clap::ValueEnum;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG`
/// is unset or unparsable (for example `"info"` or
/// `"info,libp2p_gossipsub=error"`). A second call does nothing.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The summary loop of a service's log: every `period` until `shutdown`
/// turns true, takes a `sample` of its counters and hands `log` the line
/// `summarise` makes of it against the previous sample (`None`: nothing
/// happened worth a line; an idle service logs nothing). A zero period is
/// taken as a millisecond.
pub async fn summarise_every<T>(
    period: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut sample: impl FnMut() -> T,
    summarise: impl Fn(&T, &T, std::time::Duration) -> Option<String>,
    log: impl Fn(&str),
) {
    // A zero period would panic in tokio.
    let period = period.max(std::time::Duration::from_millis(1));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = sample();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = interval.tick() => {}
        }
        let now = sample();
        if let Some(line) = summarise(&now, &last, period) {
            log(&line);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_summary_line_for_each_change_and_none_for_an_idle_interval() {
        let counter = Arc::new(AtomicU64::new(0));
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let sampled = counter.clone();
        let (first_tx, first) = tokio::sync::oneshot::channel();
        let mut first_tx = Some(first_tx);
        let task = tokio::spawn(summarise_every(
            std::time::Duration::ZERO,
            shutdown,
            move || {
                if let Some(first) = first_tx.take() {
                    let _ = first.send(());
                }
                sampled.load(Ordering::Relaxed)
            },
            |now: &u64, last: &u64, _| (now != last).then(|| format!("{last} -> {now}")),
            move |line| {
                let _ = lines_tx.send(line.to_owned());
            },
        ));
        // Changed only once the first sample is taken.
        first.await.unwrap();
        for expected in ["0 -> 1", "1 -> 2", "2 -> 3"] {
            counter.fetch_add(1, Ordering::Relaxed);
            assert_eq!(lines.recv().await.as_deref(), Some(expected));
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        // Idle intervals in between logged nothing, and it has stopped.
        assert_eq!(lines.recv().await, None);
    }
}
