//! Helpers for the application tests (`app_*.rs`): driver processes running *scenarios*, real
//! `ember master` / `ember worker` daemons, guards that kill every process a test started, and
//! polling with a deadline.
//!
//! A scenario is a `#[test]` function of the test binary that does nothing in an ordinary test
//! run. A test starts its own binary again as a driver with `--exact <scenario>` and
//! [`SCENARIO_VAR`] naming it; the scenario then runs as an Ember application under
//! [`ember::main`]. Workers start executors from that same binary with the driver's arguments, so
//! in an executor `--exact <scenario>` runs the same function, and `ember::main` turns the
//! process into an executor before the scenario's body could run. Drivers talk to their test
//! through lines on stdout (`KEY value`), and wait for the test by reading stdin to its end.
//!
//! Every process is started in its own process group, which a [`ProcessGuard`] kills (SIGKILL)
//! when dropped, so executors started by a driver's in-process workers or by a worker daemon go
//! with their parent even when a test fails half-way.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long anything a test waits for may take; things normally take well under a second.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Names the scenario a driver process runs.
pub const SCENARIO_VAR: &str = "EMBER_APP_TEST_SCENARIO";

/// Polls `cond` every few milliseconds until it holds; panics naming `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `body` as the scenario `name` when this process was started for it (see the module
/// docs); in an ordinary test run it returns at once. In an executor it never returns.
pub fn scenario(name: &str, body: impl FnOnce() -> anyhow::Result<()>) {
    ember::main(|| {
        if std::env::var(SCENARIO_VAR).as_deref() != Ok(name) {
            return;
        }
        if let Err(e) = body() {
            panic!("scenario {name} failed: {e:#}");
        }
    });
}

/// In a scenario: tells the test `key value` on stdout (on a line of its own: the test
/// harness leaves `test name ... ` unterminated while the test runs).
pub fn tell(key: &str, value: impl std::fmt::Display) {
    println!("\n{key} {value}");
}

/// In a scenario: blocks until the test closes our stdin.
pub fn wait_for_test() {
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// Whether the process `pid` is gone (a zombie counts as gone: it runs nothing).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A directory removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ember-app-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines a process wrote, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn collect(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    pub fn find(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.0.lock().unwrap().iter().find(|l| pred(l)).cloned()
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&self, needle: &str) -> String {
        let mut found = None;
        wait_until(&format!("a line containing {needle:?}"), || {
            found = self.find(|l| l.contains(needle));
            found.is_some()
        });
        found.unwrap()
    }

    /// The value of the first `key value` line, waiting for it.
    pub fn value(&self, key: &str) -> String {
        let prefix = format!("{key} ");
        let mut found = None;
        wait_until(&format!("the line {key:?}"), || {
            found = self.find(|l| l.starts_with(&prefix));
            found.is_some()
        });
        found.unwrap()[prefix.len()..].to_owned()
    }
}

/// A child process (and its process group) killed when dropped.
pub struct ProcessGuard {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub stdout: Lines,
    pub stderr: Lines,
    status: Option<ExitStatus>,
}

impl ProcessGuard {
    /// Starts `command` in a process group of its own, with piped stdio.
    pub fn spawn(name: &str, command: &mut Command) -> ProcessGuard {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        let stdout = Lines::collect(child.stdout.take().unwrap());
        let stderr = Lines::collect(child.stderr.take().unwrap());
        ProcessGuard {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes the process's stdin (a scenario waiting in [`wait_for_test`] goes on).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends SIGKILL to the process only (not its group).
    pub fn sigkill(&self) {
        let _ = kill(Pid::from_raw(self.pid() as i32), Signal::SIGKILL);
    }

    /// Waits (with the deadline) for the process to exit and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let mut status = None;
        wait_until(&format!("{} to exit", self.name), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        self.status = status;
        status.unwrap()
    }

    /// Waits for a successful exit; on failure panics with the process's output.
    pub fn wait_success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "{} failed ({status}):\n{}",
            self.name,
            self.output()
        );
    }

    /// Everything the process wrote, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- {} stdout ---\n{}\n--- {} stderr ---\n{}",
            self.name,
            self.stdout.text(),
            self.name,
            self.stderr.text()
        )
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
    }
}

/// Starts this test binary again as a driver running `scenario`, with `envs` added.
pub fn spawn_driver(scenario: &str, envs: &[(&str, &str)]) -> ProcessGuard {
    let exe = std::env::current_exe().unwrap();
    spawn_driver_from(&exe, scenario, envs)
}

/// [`spawn_driver`] from another binary (a copy of this one).
pub fn spawn_driver_from(exe: &Path, scenario: &str, envs: &[(&str, &str)]) -> ProcessGuard {
    let mut command = Command::new(exe);
    command
        .args(["--exact", scenario, "--nocapture", "--test-threads=1"])
        .env(SCENARIO_VAR, scenario)
        .env("EMBER_LOG", "info")
        .env_remove("EMBER_MASTER")
        .env_remove("EMBER_AUTHENTICATE_SECRET")
        .env(
            "EMBER_CONF_DIR",
            std::env::temp_dir().join("ember-app-test-no-conf"),
        );
    for (key, value) in envs {
        command.env(key, value);
    }
    ProcessGuard::spawn(&format!("driver {scenario}"), &mut command)
}

/// The `ember` command.
pub fn ember_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ember"));
    command
        .env("RUST_LOG", "info")
        .env_remove("EMBER_LOG")
        .env_remove("EMBER_MASTER")
        .env(
            "EMBER_CONF_DIR",
            std::env::temp_dir().join("ember-app-test-no-conf"),
        );
    command
}

/// The value of `key=` in a log line (`url=ember://… web_ui=…`).
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .map(|v| v.trim_matches('"').to_owned())
}

/// An `ember master` process.
pub struct MasterProcess {
    pub process: ProcessGuard,
    /// `ember://127.0.0.1:port`.
    pub url: String,
    /// `http://127.0.0.1:port`.
    pub web_ui: String,
}

impl MasterProcess {
    pub fn start(extra: &[&str]) -> MasterProcess {
        let mut command = ember_command();
        command
            .args(["master", "-h", "127.0.0.1", "-p", "0", "--webui-port", "0"])
            .args(extra);
        let process = ProcessGuard::spawn("master", &mut command);
        let line = process.stderr.wait_for("master listening");
        let url = log_field(&line, "url").expect("the master logs its url");
        let web_ui = log_field(&line, "web_ui").expect("the master logs its web UI");
        MasterProcess {
            process,
            url,
            web_ui,
        }
    }

    /// `GET /json` from the web UI.
    pub fn json(&self) -> serde_json::Value {
        let body = http(&self.web_ui, "GET", "/json");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad /json ({e}): {body}"))
    }

    /// The ids and states of `activeapps` or `completedapps`.
    pub fn apps(&self, field: &str) -> Vec<(String, String)> {
        self.json()[field]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|a| {
                (
                    a["id"].as_str().unwrap_or_default().to_owned(),
                    a["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// An `ember worker` process.
pub struct WorkerProcess {
    pub process: ProcessGuard,
    pub worker_id: String,
    pub dir: TempDir,
}

impl WorkerProcess {
    /// Starts a worker of `cores` cores and `memory` (`1g`, `512m`) and waits until it has
    /// registered.
    pub fn start(master: &MasterProcess, cores: u32, memory: &str) -> WorkerProcess {
        let dir = TempDir::new("worker");
        let mut command = ember_command();
        command.args([
            "worker",
            &master.url,
            "-h",
            "127.0.0.1",
            "-p",
            "0",
            "--webui-port",
            "0",
            "-c",
            &cores.to_string(),
            "-m",
            memory,
            "-d",
            &dir.path().display().to_string(),
        ]);
        let process = ProcessGuard::spawn("worker", &mut command);
        let line = process.stderr.wait_for("worker_id=");
        let worker_id = log_field(&line, "worker_id").expect("the worker logs its id");
        process
            .stderr
            .wait_for("successfully registered with master");
        WorkerProcess {
            process,
            worker_id,
            dir,
        }
    }
}

/// A minimal HTTP/1.0 request to `base` (`http://host:port`); returns the body of a 2xx or 3xx
/// answer.
pub fn http(base: &str, method: &str, path: &str) -> String {
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    assert!(
        status.starts_with('2') || status.starts_with('3'),
        "{method} {path}: {head}"
    );
    body.to_owned()
}
