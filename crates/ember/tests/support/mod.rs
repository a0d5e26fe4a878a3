//! Shared helpers of the real-process tests (every `crates/ember/tests/*.rs` that starts a
//! process): child processes behind guards that kill them on drop ([`Proc`]), `ember master` and
//! `ember worker` daemons ([`Master`], [`Worker`]), drivers running application *scenarios*
//! ([`scenario`], [`spawn_driver`]), a tiny HTTP/1.1 client for the web UIs ([`http_get`],
//! [`get_json`]), temp dirs removed on drop, and [`eventually`] / [`wait_until`] for waiting on a
//! condition with a deadline (never a bare sleep).
//!
//! Every daemon runs on 127.0.0.1 with port 0; the bound ports are learnt from its log lines
//! (`master listening url=… web_ui=…`, `worker settings worker_id=… web_ui=…`). The `EMBER_*`
//! variables of the test process are not passed on ([`hermetic`]), so a developer's environment
//! cannot change what a test sees.

// Each test binary uses a subset of these helpers.
#![allow(dead_code, unused_imports, unreachable_pub)]

mod apps;
mod daemons;
mod http;
mod process;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use apps::{
    SCENARIO_VAR, scenario, scenario_context, spawn_driver, tell, tell_pids, wait_for_test,
};
pub use daemons::{Master, Worker, worker_state};
pub use http::{Response, get_json, http_get, http_post};
pub use nix::sys::signal::Signal;
pub use process::Proc;

/// How long a test waits for something that normally takes well under a second (an executor
/// hashing a debug build of its binary on a loaded machine takes the longest).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The `ember` binary under test.
pub fn ember_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ember"))
}

/// Polls `check` every 20 ms until it returns `Some`, and returns that; panics naming `what`
/// once `timeout` has passed.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`eventually`] for a condition, with [`DEADLINE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    eventually(DEADLINE, what, || cond().then_some(()));
}

/// A directory removed (with everything in it) when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new, empty directory under the system temp dir; `name` is for people reading `/tmp`.
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ember-it-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago: bound on 127.0.0.1:0 and released. The caller should use it
/// at once; another process could take it in between.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `command` without the test process's `EMBER_*` variables, logging at `info`, stdin empty.
pub fn hermetic(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EMBER_") {
            command.env_remove(&key);
        }
    }
    command.env("RUST_LOG", "info").stdin(Stdio::null())
}

/// Whether the process `pid` is gone: no such process, or a zombie (it runs nothing, and this
/// machine's init may not reap the orphans a test leaves).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The value of `key=value` in a tracing log line.
pub fn log_field(line: &str, key: &str) -> Option<String> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_owned())
}
