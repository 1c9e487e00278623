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
