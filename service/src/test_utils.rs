//! The one way Lockstep's multi-process tests run a binary: [`TestProcess`].
//!
//! A [`TestProcess`] holds a command (program, arguments, environment) and
//! runs it any number of times: [`TestProcess::spawn`], then
//! [`TestProcess::kill`] (SIGKILL, no shutdown code runs) or
//! [`TestProcess::terminate`] (SIGTERM and a bounded wait), then
//! [`TestProcess::spawn`] or [`TestProcess::restart`] again with the same
//! command, on the same data and ports.
//!
//! Every run's stdout and stderr are copied line by line, as they arrive,
//! into `<dir>/<name>.log` (run 0) or `<dir>/<name>.<run>.log` (later runs).
//! Both streams are drained for the process's whole life, so it never
//! blocks on a full pipe. Stdout lines are also kept, so a test can wait
//! for the line that announces an address
//! ([`TestProcess::wait_for_stdout`]); a line in either stream can be
//! waited for too ([`TestProcess::wait_for_log`]).
//!
//! Waits never sleep for a guessed time: they block on the arrival of the
//! next line (or the process's exit) with a bounded deadline, and a missed
//! deadline or an early exit panics with the end of the log. When a test
//! fails, the end of every run's log is printed as the process is dropped
//! (or at [`TestProcess::finish`], for owners whose log directory goes
//! before they do).
//!
//! [`NatsServer`] runs `nats-server` with JetStream on a loopback port,
//! for the tests of the message bus on NATS.
//!
//! [`TestCa`] makes a CA and a server certificate for `localhost` and
//! `127.0.0.1` as PEM files, for tests of the servers' TLS and of the
//! clients' `--ca-file`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod nats;
mod postgres;
mod test_ca;

pub use self::nats::{nats_server_binary, NatsServer};
pub use self::postgres::TestPostgres;
pub use self::test_ca::TestCa;

/// How long a wait takes at most unless [`TestProcess::timeout`] says
/// otherwise. Generous: a deadline turns a hang into a failure, it is not a
/// timing assertion.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A binary under test, run (and re-run) with one command; see the
/// [module docs](self).
#[derive(Debug)]
pub struct TestProcess {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    dir: PathBuf,
    timeout: Duration,
    tail_lines: usize,
    collapse: Vec<String>,
    child: Option<Child>,
    /// The output of the current (or last) run.
    output: Option<Arc<RunOutput>>,
    runs: u32,
    reported: bool,
}

/// What the copying threads share with the waits, for one run.
#[derive(Debug)]
struct RunOutput {
    state: Mutex<OutputState>,
    changed: Condvar,
}

#[derive(Debug)]
struct OutputState {
    log: std::fs::File,
    log_path: PathBuf,
    /// Where this run's lines start in the log (it is appended to).
    log_start: u64,
    stdout: Vec<String>,
    /// Streams not yet at end of file: both close when the process exits.
    open: u8,
}

impl TestProcess {
    /// `program`, logging to files named after `name` in `dir` (which must
    /// exist). Nothing runs until [`Self::spawn`].
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, dir: &Path) -> TestProcess {
        TestProcess {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            dir: dir.to_path_buf(),
            timeout: DEFAULT_TIMEOUT,
            tail_lines: 30,
            collapse: Vec::new(),
            child: None,
            output: None,
            runs: 0,
            reported: false,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> TestProcess {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> TestProcess
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (on top of the test's environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> TestProcess {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets an environment variable for the next runs (replacing an
    /// earlier value).
    pub fn set_env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
    }

    /// Removes an environment variable for the next runs.
    pub fn remove_env(&mut self, key: impl Into<OsString>) {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
    }

    /// Sets environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> TestProcess
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The bound on every wait (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> TestProcess {
        self.timeout = timeout;
        self
    }

    /// How many lines of each run's log a failure prints (default 30).
    pub fn tail_lines(mut self, lines: usize) -> TestProcess {
        self.tail_lines = lines;
        self
    }

    /// Routine lines (those containing `marker`) that a printed tail leaves
    /// out, but for the last one, so that they do not crowd out the rest.
    pub fn collapse_lines_containing(mut self, marker: impl Into<String>) -> TestProcess {
        self.collapse.push(marker.into());
        self
    }

    /// The name its logs are named after.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times it was started.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// The log of run `run` (0 for the first).
    pub fn log_path(&self, run: u32) -> PathBuf {
        if run == 0 {
            self.dir.join(format!("{}.log", self.name))
        } else {
            self.dir.join(format!("{}.{run}.log", self.name))
        }
    }

    /// The process id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and has neither been stopped nor exited.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none() && self.child.is_some()
    }

    /// Starts a run with the command. Panics if a run is still going.
    pub fn spawn(&mut self) {
        // A run that ended on its own is reaped here, so it may be
        // started again.
        let _ = self.try_wait();
        assert!(self.child.is_none(), "{} is running already", self.name);
        let log_path = self.log_path(self.runs);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("{}: cannot open {}: {e}", self.name, log_path.display()));
        let log_start = log
            .metadata()
            .map(|m| m.len())
            .unwrap_or_else(|e| panic!("{}: {}: {e}", self.name, log_path.display()));
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} ({}): {e}", self.name, self.program.display()));
        let output = Arc::new(RunOutput {
            state: Mutex::new(OutputState {
                log,
                log_path,
                log_start,
                stdout: Vec::new(),
                open: 2,
            }),
            changed: Condvar::new(),
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        copy_lines(&self.name, stdout, true, output.clone());
        copy_lines(&self.name, stderr, false, output.clone());
        self.child = Some(child);
        self.output = Some(output);
        self.runs += 1;
    }

    /// Kills the current run if there is one (SIGKILL), then starts a new
    /// one with the same command.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits for a stdout line of the current run that starts with
    /// `prefix` and returns the rest of it (an address, say). Panics, with
    /// the end of the log, if the process exits first or none comes within
    /// the timeout.
    pub fn wait_for_stdout(&mut self, prefix: &str) -> String {
        let what = format!("a stdout line starting with {prefix:?}");
        self.wait_until(&what, |state| {
            state
                .stdout
                .iter()
                .find_map(|line| line.strip_prefix(prefix))
                .map(str::to_owned)
        })
    }

    /// Waits for a line of the current run, in either stream, that
    /// contains `marker`, and returns what follows the marker on it (for
    /// addresses only ever logged, not printed). Panics as
    /// [`Self::wait_for_stdout`] does.
    pub fn wait_for_log(&mut self, marker: &str) -> String {
        let what = format!("a log line containing {marker:?}");
        let mut cursor = None;
        self.wait_until(&what, |state| {
            let from = *cursor.get_or_insert(state.log_start);
            let (found, next) = scan_log(&state.log_path, from, marker);
            cursor = Some(next);
            found
        })
    }

    /// Calls `check` on the run's output each time it changes, until it
    /// returns `Some`.
    fn wait_until<T>(
        &mut self,
        what: &str,
        mut check: impl FnMut(&mut OutputState) -> Option<T>,
    ) -> T {
        let output = self
            .output
            .clone()
            .unwrap_or_else(|| panic!("{}: waiting for {what}, but it never ran", self.name));
        let deadline = Instant::now() + self.timeout;
        let mut state = lock(&output.state);
        loop {
            if let Some(found) = check(&mut state) {
                return found;
            }
            if state.open == 0 {
                drop(state);
                let status = self.reap();
                panic!(
                    "{} exited ({}) before {what}; {}",
                    self.name,
                    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string()),
                    self.tail()
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(state);
                panic!(
                    "{}: {what} did not come within {:?}; {}",
                    self.name,
                    self.timeout,
                    self.tail()
                );
            }
            state = output
                .changed
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Its exit status if it has exited (and reaps it); `None` if it is
    /// running or was never started.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = child
            .try_wait()
            .unwrap_or_else(|e| panic!("{}: waiting: {e}", self.name))?;
        self.child = None;
        self.await_output_closed();
        Some(status)
    }

    /// Kills the running process with SIGKILL (`kill -9`: no shutdown code
    /// runs) and reaps it; does nothing if none runs.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // `Child::kill` is SIGKILL on Unix. It only fails for a process
            // already reaped, which `self.child` never holds.
            let _ = child.kill();
        }
        self.reap();
    }

    /// Sends SIGTERM and waits, bounded by the timeout, for the process to
    /// exit; returns how it exited. Panics, with the end of the log, if it
    /// is not running or does not exit in time (it is killed then).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        // Both pipes close when it exits; a process still holding them
        // past the deadline did not stop.
        if !self.await_output_closed() {
            let tail = self.tail();
            self.kill();
            panic!(
                "{} did not exit within {:?} of SIGTERM; {tail}",
                self.name, self.timeout
            );
        }
        self.reap()
            .unwrap_or_else(|| panic!("{}: no exit status after SIGTERM", self.name))
    }

    /// Freezes the running process (SIGSTOP): it holds its sockets and
    /// files but runs no code, as a process on a stalled machine or a
    /// paused VM does, until [`Self::resume`]. Panics if none runs.
    pub fn pause(&mut self) {
        self.signal("STOP");
    }

    /// Lets a process frozen by [`Self::pause`] go on (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("CONT");
    }

    /// Sends `SIG<name>` to the running process; panics if none runs.
    fn signal(&self, name: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{}: SIG{name}, but it is not running", self.name));
        // `kill(1)`: sending a signal from Rust needs `unsafe` or a crate.
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("{}: running kill -{name} {pid}: {e}", self.name));
        assert!(sent.success(), "{}: kill -{name} {pid} failed", self.name);
    }

    /// Waits, bounded by the timeout, for the run to exit on its own and
    /// returns how it exited. Panics, with the end of the log, if it is not
    /// running or is still running at the deadline (it is killed then).
    pub fn wait_exit(&mut self) -> ExitStatus {
        assert!(
            self.child.is_some(),
            "{}: wait_exit, but it is not running",
            self.name
        );
        if !self.await_output_closed() {
            let tail = self.tail();
            self.kill();
            panic!(
                "{} did not exit within {:?}; {tail}",
                self.name, self.timeout
            );
        }
        self.reap()
            .unwrap_or_else(|| panic!("{}: no exit status", self.name))
    }

    /// Waits for the process to exit (and reaps it) and returns its status
    /// (`None` if none ran, or waiting failed). Never panics: it runs in
    /// `Drop`, perhaps during a panic.
    fn reap(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let status = child.wait().ok();
        self.await_output_closed();
        status
    }

    /// Waits, bounded, until the copying threads have seen both streams
    /// end, so that the log holds everything the run wrote. Returns whether
    /// they did.
    fn await_output_closed(&self) -> bool {
        let Some(output) = &self.output else {
            return true;
        };
        let deadline = Instant::now() + self.timeout;
        let mut state = lock(&output.state);
        while state.open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = output
                .changed
                .wait_timeout(state, left)
                .map(|(state, _)| state)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        true
    }

    /// The end of the current (or last) run's log, with a heading.
    pub fn tail(&self) -> String {
        let run = self.runs.saturating_sub(1);
        self.tail_of_run(run)
    }

    fn tail_of_run(&self, run: u32) -> String {
        let path = self.log_path(run);
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return format!("(no log at {}: {e})\n", path.display()),
        };
        let routine = |line: &str| self.collapse.iter().any(|m| line.contains(m.as_str()));
        let last_routine = text.lines().rev().find(|l| routine(l));
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !routine(l))
            .chain(last_routine)
            .collect();
        let mut out = format!(
            "---- {}, run {run}: last lines of {} ----\n",
            self.name,
            path.display()
        );
        for line in &lines[lines.len().saturating_sub(self.tail_lines)..] {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// Prints the end of every run's log to stderr.
    pub fn print_tail(&self) {
        for run in 0..self.runs.max(1) {
            eprint!("{}", self.tail_of_run(run));
        }
    }

    /// Kills the process, first printing the end of every run's log if the
    /// thread is panicking (a test failing), once. Dropping does the same;
    /// call this where the log directory would be deleted first.
    pub fn finish(&mut self) {
        if std::thread::panicking() && !self.reported && self.runs > 0 {
            self.reported = true;
            self.print_tail();
        }
        self.kill();
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        self.finish();
    }
}

fn lock(state: &Mutex<OutputState>) -> MutexGuard<'_, OutputState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Copies `stream` line by line into the run's log, keeping stdout lines,
/// on a thread of its own until the stream ends.
fn copy_lines(
    name: &str,
    stream: impl Read + Send + 'static,
    is_stdout: bool,
    output: Arc<RunOutput>,
) {
    let thread = format!("{name}-{}", if is_stdout { "stdout" } else { "stderr" });
    let spawned = std::thread::Builder::new().name(thread).spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            let done = !matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0);
            let mut state = lock(&output.state);
            if done {
                state.open -= 1;
                output.changed.notify_all();
                return;
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            // The log is for people; a failed write loses a line of it.
            let _ = state.log.write_all(&line);
            if is_stdout {
                let text = String::from_utf8_lossy(&line);
                state
                    .stdout
                    .push(text.trim_end_matches(['\r', '\n']).to_owned());
            }
            output.changed.notify_all();
        }
    });
    if let Err(e) = spawned {
        panic!("{name}: cannot start the thread that copies its output: {e}");
    }
}

/// Looks for `marker` in the complete lines of the log from byte `from`;
/// returns what follows it on the first line that has it, and where the
/// next scan starts.
fn scan_log(path: &Path, from: u64, marker: &str) -> (Option<String>, u64) {
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(from))?;
        file.read_to_end(&mut bytes)
    });
    if read.is_err() {
        return (None, from);
    }
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&bytes[..complete]);
    let found = text
        .lines()
        .find_map(|line| line.split_once(marker).map(|(_, rest)| rest.to_owned()));
    (found, from + complete as u64)
}

/// A loopback port that is free now and stays out of the way of outgoing
/// connections, for a process that must come back on the same port after
/// a restart. Ports the kernel hands out for `bind(0)` and for the source
/// side of connections come from the ephemeral range (32768 and up on
/// Linux), so a port picked there can be taken as a connection's source
/// port before the process binds it (or while a killed process is down,
/// before it binds it again). Ports are taken below that range instead,
/// each at most once per test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start somewhere different in each test process.
    let offset = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + ((u32::from(offset) + u32::from(n)) % u32::from(SPAN)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + SPAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c script`, logging in `dir`.
    fn shell(dir: &Path, script: &str) -> TestProcess {
        TestProcess::new("sh", "sh", dir)
            .args(["-c", script])
            .timeout(Duration::from_secs(20))
    }

    #[test]
    fn the_address_line_is_read_and_both_streams_are_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = shell(
            dir.path(),
            "echo starting >&2; echo \"listening on $GREETING\"; echo 'rpc at http://1.2.3.4:5 and more' >&2; exec sleep 60",
        )
        .env("GREETING", "127.0.0.1:9");
        process.spawn();
        assert_eq!(process.wait_for_stdout("listening on "), "127.0.0.1:9");
        assert_eq!(process.wait_for_log("rpc at http://"), "1.2.3.4:5 and more");
        assert!(process.is_running());
        assert!(process.pid().is_some());
        process.kill();
        assert!(!process.is_running());
        let log = std::fs::read_to_string(process.log_path(0)).expect("log");
        assert!(log.contains("starting\n"), "{log}");
        assert!(log.contains("listening on 127.0.0.1:9\n"), "{log}");
        assert!(process.tail().contains("rpc at http://1.2.3.4:5"));
    }

    #[test]
    fn a_restart_runs_the_same_command_and_logs_to_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = shell(dir.path(), "echo \"run $$\"; exec sleep 60");
        process.spawn();
        let first = process.wait_for_stdout("run ");
        process.restart();
        let second = process.wait_for_stdout("run ");
        assert_ne!(first, second, "the same process after a restart");
        assert_eq!(process.runs(), 2);
        assert!(process.log_path(1).ends_with("sh.1.log"));
        let log = std::fs::read_to_string(process.log_path(1)).expect("log");
        assert_eq!(log, format!("run {second}\n"));
    }

    #[test]
    fn sigterm_is_waited_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = shell(
            dir.path(),
            "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done",
        );
        process.spawn();
        process.wait_for_stdout("up");
        assert!(process.terminate().success());
        assert!(!process.is_running());
        let log = std::fs::read_to_string(process.log_path(0)).expect("log");
        assert!(log.ends_with("bye\n"), "{log}");
    }

    #[test]
    fn a_process_that_exits_on_its_own_can_be_started_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = shell(dir.path(), "echo once; exit 3");
        process.spawn();
        process.wait_for_stdout("once");
        // Seeing its line does not mean it has exited yet: wait for that.
        assert_eq!(process.wait_exit().code(), Some(3));
        assert!(!process.is_running());
        process.spawn();
        process.wait_for_stdout("once");
        assert_eq!(process.wait_exit().code(), Some(3));
        assert_eq!(process.runs(), 2);
    }

    #[test]
    #[should_panic(expected = "exited")]
    fn an_exit_before_the_line_fails_with_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = shell(dir.path(), "echo 'cannot bind' >&2; exit 1");
        process.spawn();
        process.wait_for_stdout("listening on ");
    }

    #[test]
    #[should_panic(expected = "within")]
    fn a_line_that_never_comes_fails_at_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process =
            shell(dir.path(), "echo busy; exec sleep 60").timeout(Duration::from_millis(300));
        process.spawn();
        process.wait_for_stdout("listening on ");
    }

    #[test]
    fn tails_collapse_routine_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut process = shell(
            dir.path(),
            "echo 'finalized #1'; echo 'peer up'; echo 'finalized #2'; echo done",
        )
        .collapse_lines_containing("finalized #");
        process.spawn();
        process.wait_for_stdout("done");
        // It has exited; this reaps it and waits for the last lines.
        process.kill();
        let tail = process.tail();
        assert!(!tail.contains("finalized #1"), "{tail}");
        assert!(tail.contains("peer up\ndone\nfinalized #2\n"), "{tail}");
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let (a, b) = (free_port(), free_port());
        assert_ne!(a, b);
        assert!(a < 32_768 && b < 32_768);
        std::net::TcpListener::bind(("127.0.0.1", a)).expect("bind");
    }
}
