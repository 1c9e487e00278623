//! A NATS server with JetStream for the tests of the broker bus:
//! `nats-server` (Debian's package; `scripts/test.sh` installs it) on a
//! loopback port, its JetStream store in a directory of the test's, run as
//! a [`TestProcess`] so that it can be killed with SIGKILL and started
//! again on the same port and store.

use std::path::{Path, PathBuf};

use super::{free_port, TestProcess};

/// The line `nats-server` logs once it accepts clients.
const READY: &str = "Server is ready";

/// One `nats-server -js` process.
#[derive(Debug)]
pub struct NatsServer {
    /// The process, logging to `<name>.log` (`<name>.<run>.log` after
    /// restarts) in the test's directory.
    pub process: TestProcess,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Its JetStream store.
    pub store: PathBuf,
}

/// The `nats-server` binary: `$NATS_SERVER`, else the first on `PATH`,
/// `/usr/sbin` or `/usr/bin` (Debian puts it in `/usr/sbin`).
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

impl NatsServer {
    /// Starts a server named `name` with its store under `dir`, on a free
    /// loopback port, and waits until it accepts clients. Panics when
    /// `nats-server` is not installed.
    pub fn start(dir: &Path, name: &str) -> NatsServer {
        let binary = nats_server_binary().unwrap_or_else(|| {
            panic!("nats-server is not installed (apt-get install nats-server; scripts/test.sh does it)")
        });
        let port = free_port();
        let store = dir.join(format!("{name}-store"));
        let process = TestProcess::new(name, binary, dir)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .tail_lines(20);
        let mut server = NatsServer {
            process,
            port,
            store,
        };
        server.spawn();
        server
    }

    /// Its client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again: same port, same store) and waits until it accepts
    /// clients.
    pub fn spawn(&mut self) {
        self.process.spawn();
        self.process.wait_for_log(READY);
    }

    /// Kills it with SIGKILL (no shutdown, no flush) and reaps it.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Prints the end of its logs.
    pub fn print_tail(&self) {
        self.process.print_tail();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_starts_and_comes_back_on_its_port_and_store() {
        if nats_server_binary().is_none() {
            eprintln!("skipped: nats-server is not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = NatsServer::start(dir.path(), "nats");
        assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok());
        server.kill();
        server.spawn();
        assert!(std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok());
        assert!(server.store.join("jetstream").is_dir());
        assert_eq!(server.process.runs(), 2);
        server.process.terminate();
    }
}
