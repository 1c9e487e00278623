//! [`TestPostgres`]: a PostgreSQL cluster of a test's own, on a loopback
//! port, with its data in the test's directory.
//!
//! The cluster is made with `initdb` (locale C, trust authentication on
//! loopback only) and its postmaster runs as a [`TestProcess`], so its log
//! is kept and printed like every other process's when a test fails.
//! PostgreSQL refuses to run as root: as root, every server command runs
//! as the `postgres` user (`setpriv`, which execs in place, so the pid a
//! test holds is the postmaster's own), and the data directory is given to
//! that user. The binaries are found under `/usr/lib/postgresql/<version>/
//! bin` (Debian's layout, the newest version) or else on `PATH`;
//! `scripts/test.sh` installs Debian's `postgresql` when missing.
//!
//! Faults a test can cause: [`TestPostgres::stop_immediate`] (`pg_ctl stop
//! -m immediate`: no checkpoint, recovery at the next start),
//! [`TestPostgres::terminate_backends`] (`pg_terminate_backend` of every
//! client session), and [`TestPostgres::start`] again on the same data.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{free_port, TestProcess};

/// A PostgreSQL cluster for one test (see the [module docs](self)).
#[derive(Debug)]
pub struct TestPostgres {
    process: TestProcess,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// `setpriv` arguments that run a command as `postgres` (when root).
    as_postgres: Vec<String>,
}

/// Where the server binaries are: Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else the directory of `initdb` on
/// `PATH`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists())
        .unwrap_or_else(|| {
            panic!("no PostgreSQL server binaries (initdb): install Debian's postgresql package")
        })
}

fn output(command: &mut Command, what: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

impl TestPostgres {
    /// Makes a cluster in `<dir>/pgdata` and starts it on a free loopback
    /// port; returns once it accepts connections. As root, `dir` is made
    /// traversable for the `postgres` user.
    pub fn start(dir: &Path) -> TestPostgres {
        let bin = bin_dir();
        let data = dir.join("pgdata");
        let as_postgres = if is_root() {
            let uid = output(
                Command::new("id").args(["-u", "postgres"]),
                "id -u postgres",
            );
            let gid = output(
                Command::new("id").args(["-g", "postgres"]),
                "id -g postgres",
            );
            std::fs::create_dir_all(&data).expect("create the data directory");
            let (uid, gid): (u32, u32) = (
                uid.trim().parse().expect("postgres uid"),
                gid.trim().parse().expect("postgres gid"),
            );
            std::os::unix::fs::chown(&data, Some(uid), Some(gid))
                .expect("chown the data directory");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
                .expect("make the test directory traversable");
            vec![
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--init-groups".into(),
            ]
        } else {
            Vec::new()
        };
        let port = free_port();
        let data_arg = data.display().to_string();
        let as_user = |program: PathBuf| -> (PathBuf, Vec<String>) {
            if as_postgres.is_empty() {
                (program, Vec::new())
            } else {
                let mut args = as_postgres.clone();
                args.push(program.display().to_string());
                (PathBuf::from("setpriv"), args)
            }
        };
        let (program, mut args) = as_user(bin.join("initdb"));
        args.extend(
            [
                "-D",
                &data_arg,
                "--locale=C",
                "-E",
                "UTF8",
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ]
            .map(String::from),
        );
        output(Command::new(&program).args(&args), "initdb");
        let (program, mut args) = as_user(bin.join("postgres"));
        args.extend(
            [
                "-D",
                &data_arg,
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
                "-c",
                "log_min_messages=warning",
            ]
            .map(String::from),
        );
        let mut cluster = TestPostgres {
            process: TestProcess::new("postgres", program, dir).args(args),
            bin,
            data,
            port,
            as_postgres,
        };
        cluster.spawn();
        cluster
    }

    fn command(&self, program: &Path) -> Command {
        if self.as_postgres.is_empty() {
            Command::new(program)
        } else {
            let mut command = Command::new("setpriv");
            command.args(&self.as_postgres).arg(program);
            command
        }
    }

    fn spawn(&mut self) {
        self.process.spawn();
        self.process
            .wait_for_log("database system is ready to accept connections");
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (user `postgres`, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with `psql` in database `db` and returns its unaligned,
    /// tuples-only output. Panics if it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        output(
            Command::new("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(self.url(db))
                .args(["-c", sql]),
            &format!("psql {sql:?}"),
        )
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// `pg_ctl stop -m immediate`: the server stops at once, without a
    /// checkpoint (as after a crash: it recovers from its WAL at the next
    /// start). Returns once every server process is gone.
    pub fn stop_immediate(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data.display().to_string();
        output(
            self.command(&pg_ctl)
                .args(["stop", "-m", "immediate", "-w", "-D", &data]),
            "pg_ctl stop -m immediate",
        );
        self.process.wait_exit();
    }

    /// Starts the server again on the same data and port.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Ends every client session (`pg_terminate_backend`) but this one's;
    /// returns how many were ended.
    pub fn terminate_backends(&self, db: &str) -> usize {
        let out = self.psql(
            "postgres",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            ),
        );
        out.trim().parse().unwrap_or(0)
    }

    /// Stops the server (`pg_ctl stop -m fast`: sessions are ended, a
    /// checkpoint is written) if it runs.
    pub fn stop(&mut self) {
        if !self.process.is_running() {
            return;
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data.display().to_string();
        output(
            self.command(&pg_ctl)
                .args(["stop", "-m", "fast", "-w", "-D", &data]),
            "pg_ctl stop -m fast",
        );
        self.process.wait_exit();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.process.kill();
        } else {
            self.stop();
        }
    }
}
