//! How results reach the user: one JSON document (or one per line for
//! streams) with `--json`, text otherwise; progress on stderr.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// `println!` for results: a reader that goes away (`| head`) ends the
/// program quietly instead of panicking it.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout (see [`out!`]).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Prints a result: `value` with `--json`, `text` otherwise.
pub fn print(json: bool, value: &Value, text: impl AsRef<str>) {
    if json {
        out!("{value}");
    } else {
        out!("{}", text.as_ref());
    }
}

/// A one-line progress display on stderr, rewritten in place; silent when
/// stderr is not a terminal (unless `always`), so logs and pipes stay clean.
#[derive(Debug)]
pub struct Progress {
    terminal: bool,
    always: bool,
    shown: bool,
}

impl Progress {
    /// Progress shown only on a terminal.
    pub fn on_terminal() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            always: false,
            shown: false,
        }
    }

    /// Progress shown always: rewritten in place on a terminal, one line per
    /// update elsewhere.
    pub fn always() -> Progress {
        Progress {
            always: true,
            ..Progress::on_terminal()
        }
    }

    /// Replaces the line.
    pub fn update(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.shown = true;
        } else if self.always {
            let _ = writeln!(err, "{line}");
        }
    }

    /// Ends the line, so what follows starts on its own.
    pub fn finish(&mut self) {
        if self.shown {
            let _ = writeln!(std::io::stderr());
            self.shown = false;
        }
    }
}
