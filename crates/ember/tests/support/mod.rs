//! Shared helpers of the real-process tests of the standalone cluster (`standalone_*`,
//! `scripts_*`, `cli_*`): `ember master` and `ember worker` processes behind guards that kill
//! them on drop, temp dirs removed on drop, log polling, a tiny HTTP/1.1 client for the web UIs'
//! JSON, and `eventually` for waiting on a condition with a deadline (never a bare sleep).
//!
//! Every daemon runs on 127.0.0.1 with port 0 and logs to a file in its test's temp dir; the
//! bound ports are learnt from its log lines (`master listening url=… web_ui=…`, `worker settings
//! worker_id=… web_ui=…`). The `EMBER_*` variables of the test process are not passed on, so a
//! developer's environment cannot change what a test sees.

// Each test binary uses a subset of these helpers.
#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use serde_json::Value;

/// How long a test waits for something that normally takes milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(20);

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

/// [`eventually`] for a condition.
pub fn eventually_true(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    eventually(timeout, what, || check().then_some(()));
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

/// `command` without the test process's `EMBER_*` variables, logging at `info`.
pub fn hermetic(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("EMBER_") {
            command.env_remove(&key);
        }
    }
    command.env("RUST_LOG", "info").stdin(Stdio::null())
}

/// A child process killed (SIGCONT first, in case a test stopped it, then SIGKILL) and reaped
/// when dropped, even when the test panics. Its stdout and stderr go to `log`.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `ember <args>` in `cwd` with `envs`, logging to `<cwd>/<name>.log`.
    pub fn spawn(name: &str, cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let log = cwd.join(format!("{name}.log"));
        let file = File::create(&log).expect("create a log file");
        let mut command = Command::new(ember_bin());
        hermetic(&mut command)
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(cwd)
            .stdout(file.try_clone().expect("clone a log file handle"))
            .stderr(file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log,
            status: None,
        }
    }

    /// Its name in the test.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a child").id()
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) {
        let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("send {signal} to {}: {e}", self.name));
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where it logs.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits for a log line containing `needle` and returns it; fails early if the process
    /// exits first.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let what = format!("{} to log {needle:?}", self.name);
        eventually(DEADLINE, &what, || {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return Some(line.to_owned());
            }
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited ({status}) before logging {needle:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            None
        })
    }

    /// Whether it is still running (stopped counts as running).
    pub fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            let child = self.child.as_mut().expect("a child");
            self.status = child.try_wait().expect("try_wait");
        }
        self.status
    }

    /// Waits (up to `timeout`) for it to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        eventually(timeout, &format!("{name} to exit"), || self.try_exit())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
                let _ = child.kill();
            }
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "----- log of {} ({}) -----\n{}",
                    self.name,
                    self.log.display(),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
        }
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

/// A running `ember master`.
#[derive(Debug)]
pub struct Master {
    /// The process.
    pub proc: Proc,
    /// `ember://127.0.0.1:PORT`.
    pub url: String,
    /// `http://127.0.0.1:PORT`.
    pub web_ui: String,
}

impl Master {
    /// Starts `ember master -h 127.0.0.1 -p 0 --webui-port 0 <extra>` and waits until it listens.
    pub fn start(dir: &TempDir, name: &str, extra: &[&str]) -> Master {
        Master::start_on(dir, name, 0, extra)
    }

    /// [`start`](Self::start) on a given RPC port.
    pub fn start_on(dir: &TempDir, name: &str, port: u16, extra: &[&str]) -> Master {
        let port = port.to_string();
        let mut args = vec![
            "master",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--webui-port",
            "0",
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn(name, dir.path(), &args, &[]);
        Master::attach(proc)
    }

    /// Waits for `proc` (an `ember master`) to listen and learns its addresses.
    pub fn attach(mut proc: Proc) -> Master {
        let line = proc.wait_for_line("master listening");
        let url = log_field(&line, "url").expect("url= in the listening line");
        let web_ui = log_field(&line, "web_ui").expect("web_ui= in the listening line");
        Master { proc, url, web_ui }
    }

    /// The RPC port.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the master URL")
    }

    /// `GET /json/`.
    pub fn json(&self) -> Value {
        get_json(&format!("{}/json/", self.web_ui))
    }

    /// The state of worker `id` as `/json/` lists it (`None` if it is not listed).
    pub fn worker_state(&self, id: &str) -> Option<String> {
        worker_state(&self.json(), id)
    }

    /// Waits until `/json/` lists worker `id` in `state`.
    pub fn await_worker_state(&self, id: &str, state: &str, timeout: Duration) {
        eventually_true(timeout, &format!("worker {id} to be {state}"), || {
            self.worker_state(id).as_deref() == Some(state)
        });
    }
}

/// The `state` of worker `id` in a master's `/json/`.
pub fn worker_state(json: &Value, id: &str) -> Option<String> {
    json["workers"]
        .as_array()?
        .iter()
        .find(|w| w["id"] == id)
        .and_then(|w| w["state"].as_str())
        .map(str::to_owned)
}

/// A running `ember worker`.
#[derive(Debug)]
pub struct Worker {
    /// The process.
    pub proc: Proc,
    /// Its worker id.
    pub id: String,
    /// `http://127.0.0.1:PORT` of its web UI.
    pub web_ui: String,
}

impl Worker {
    /// Starts `ember worker <master_url> -h 127.0.0.1 -p 0 --webui-port 0 -d <dir>/<name>-work
    /// <extra>` (with `-c 1 -m 512m` unless `extra` sets them) and waits until it has chosen its id (not for registration:
    /// see [`registered`](Self::registered)).
    pub fn start(dir: &TempDir, name: &str, master_url: &str, extra: &[&str]) -> Worker {
        let work = dir.join(&format!("{name}-work"));
        let work = work.to_str().expect("a UTF-8 temp path");
        let mut args = vec![
            "worker",
            master_url,
            "-h",
            "127.0.0.1",
            "-p",
            "0",
            "--webui-port",
            "0",
            "-d",
            work,
        ];
        if !extra.contains(&"-c") {
            args.extend(["-c", "1"]);
        }
        if !extra.contains(&"-m") {
            args.extend(["-m", "512m"]);
        }
        args.extend_from_slice(extra);
        Worker::attach(Proc::spawn(name, dir.path(), &args, &[]))
    }

    /// Waits for `proc` (an `ember worker`) to choose its id and learns its web UI.
    pub fn attach(mut proc: Proc) -> Worker {
        let line = proc.wait_for_line("worker settings");
        let id = log_field(&line, "worker_id").expect("worker_id= in the settings line");
        let web_ui = log_field(&line, "web_ui").expect("web_ui= in the settings line");
        Worker { proc, id, web_ui }
    }

    /// Waits until it logged its registration with a master.
    pub fn registered(mut self) -> Worker {
        self.proc
            .wait_for_line("successfully registered with master");
        self
    }

    /// `GET /json/` of its web UI.
    pub fn json(&self) -> Value {
        get_json(&format!("{}/json/", self.web_ui))
    }
}

/// An HTTP response: status code and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: String,
}

/// `GET url` over HTTP/1.1 with `Connection: close` (only `http://host:port/path`).
pub fn http_get(url: &str) -> std::io::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other(format!("not an http:// URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("no address for {authority}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let _ = stream.shutdown(Shutdown::Both);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::other(format!("malformed HTTP response: {what}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("chunked body"))?;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// `GET url`, expecting 200 and a JSON body.
pub fn get_json(url: &str) -> Value {
    let response = http_get(url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status, 200, "GET {url}: {}", response.body);
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {}", response.body))
}
