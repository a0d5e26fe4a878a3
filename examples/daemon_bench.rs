//! Figures for the standalone daemons as real processes: `ember master` from process spawn until
//! it accepts connections, `ember worker` from process spawn until the master's `/json/` lists it
//! ALIVE, and their resident memory once idle. Nothing is asserted; build the `ember` binary in
//! release first and read the output:
//!
//! ```text
//! cargo build --release -p ember && cargo run --release -p ember --example daemon_bench
//! ```
//!
//! The `ember` binary is the one beside this example's directory (`target/release/ember`), or
//! `EMBER_BIN`. Every process started is killed when the benchmark ends, also when it fails.
//! Daemons listen on 127.0.0.1; workers offer 1 core and 512 MiB each and keep running until the
//! end, so the master lists 10 workers when the memory is read.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

const RUNS: usize = 10;
const DEADLINE: Duration = Duration::from_secs(30);
/// How long the daemons sit idle before their memory is read (a few heartbeats' worth).
const SETTLE: Duration = Duration::from_secs(2);

fn main() -> anyhow::Result<()> {
    let ember = ember_binary()?;
    let scratch = Scratch::new()?;
    println!("ember binary: {}", ember.display());

    let (accepting, inside) = master_start(&ember, &scratch)?;
    println!(
        "master spawn -> accepting RPC connections ({RUNS} runs): median {}, max {}",
        ms(median(&accepting)),
        ms(max(&accepting))
    );
    println!(
        "  of which inside the process (its startup_ms): median {}, max {}",
        ms(median(&inside)),
        ms(max(&inside))
    );

    let port = free_port()?;
    let ui_port = free_port()?;
    let master = Daemon::spawn(
        &ember,
        &scratch,
        "master",
        &[
            "master",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--webui-port",
            &ui_port.to_string(),
        ],
    )?;
    let url = format!("ember://127.0.0.1:{port}");
    let ui = format!("127.0.0.1:{ui_port}");
    wait(|| Ok(get_json(&ui).ok()), "the master's web UI")?;
    std::thread::sleep(SETTLE);
    let master_rss_empty = rss_kib(master.pid())?;

    let mut workers = Vec::new();
    let mut alive = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for i in 0..RUNS {
        let work = scratch.path.join(format!("work-{i}"));
        let started = Instant::now();
        let worker = Daemon::spawn(
            &ember,
            &scratch,
            &format!("worker-{i}"),
            &[
                "worker",
                &url,
                "-h",
                "127.0.0.1",
                "-p",
                "0",
                "--webui-port",
                "0",
                "-c",
                "1",
                "-m",
                "512m",
                "-d",
                work.to_str().context("a UTF-8 scratch path")?,
            ],
        )?;
        let id = wait(
            || {
                let json = get_json(&ui)?;
                Ok(json["workers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|w| {
                        w["state"] == "ALIVE"
                            && w["id"]
                                .as_str()
                                .is_some_and(|id| !known.iter().any(|k| k == id))
                    })
                    .and_then(|w| w["id"].as_str().map(str::to_owned)))
            },
            "the new worker to be ALIVE in the master's /json/",
        )?;
        alive.push(started.elapsed());
        known.push(id);
        workers.push(worker);
    }
    println!(
        "worker spawn -> ALIVE in the master's /json/ ({RUNS} runs): median {}, max {}",
        ms(median(&alive)),
        ms(max(&alive))
    );

    std::thread::sleep(SETTLE);
    let master_rss = rss_kib(master.pid())?;
    let mut worker_rss = workers
        .iter()
        .map(|w| rss_kib(w.pid()))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    worker_rss.sort_unstable();
    println!(
        "idle master RSS: {} with no workers, {} with {RUNS} workers",
        mib(master_rss_empty),
        mib(master_rss)
    );
    let median_rss = (worker_rss[(RUNS - 1) / 2] + worker_rss[RUNS / 2]) / 2;
    println!(
        "idle worker RSS ({RUNS} workers): median {}, max {}",
        mib(median_rss),
        mib(worker_rss[RUNS - 1])
    );
    drop(workers);
    drop(master);
    Ok(())
}

/// `RUNS` masters, one after another: spawn until the RPC port accepts, and the start-up time
/// the master logs itself.
fn master_start(ember: &Path, scratch: &Scratch) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let mut accepting = Vec::new();
    let mut inside = Vec::new();
    for i in 0..RUNS {
        let port = free_port()?;
        let started = Instant::now();
        let name = format!("master-start-{i}");
        let master = Daemon::spawn(
            ember,
            scratch,
            &name,
            &[
                "master",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--webui-port",
                "0",
            ],
        )?;
        wait(
            || Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(drop)),
            "the master to accept connections",
        )?;
        accepting.push(started.elapsed());
        let startup_ms = wait(
            || Ok(master.log_field("master listening", "startup_ms")),
            "the master's listening line",
        )?;
        let startup_ms: f64 = startup_ms
            .parse()
            .with_context(|| format!("startup_ms={startup_ms}"))?;
        inside.push(Duration::from_secs_f64(startup_ms / 1000.0));
    }
    Ok((accepting, inside))
}

/// A daemon process, killed and reaped when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(ember: &Path, scratch: &Scratch, name: &str, args: &[&str]) -> anyhow::Result<Daemon> {
        let log = scratch.path.join(format!("{name}.log"));
        let mut command = Command::new(ember);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("EMBER_") {
                command.env_remove(&key);
            }
        }
        let child = command
            .args(args)
            .env("RUST_LOG", "info")
            .current_dir(&scratch.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("start {name} ({})", ember.display()))?;
        Ok(Daemon { child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value of `key=` in the first log line containing `message`.
    fn log_field(&self, message: &str, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text.lines().find(|l| l.contains(message))?;
        let needle = format!(" {key}=");
        let rest = &line[line.find(&needle)? + needle.len()..];
        Some(rest.split_whitespace().next()?.to_owned())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory for logs and work dirs, removed when dropped (after the daemons: declared first).
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let path = std::env::temp_dir().join(format!("ember-daemon-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn ember_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("EMBER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/daemon_bench -> target/<profile>/ember
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("ember"))
        .context("no directory above this example")?;
    ensure!(
        bin.is_file(),
        "{} not found: build it first (cargo build --release -p ember) or set EMBER_BIN",
        bin.display()
    );
    Ok(bin)
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` every 100 µs until it gives a value; fails after [`DEADLINE`].
fn wait<T>(mut check: impl FnMut() -> anyhow::Result<Option<T>>, what: &str) -> anyhow::Result<T> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// `GET http://<authority>/json/` (HTTP/1.0: the body is the rest of the stream).
fn get_json(authority: &str) -> anyhow::Result<serde_json::Value> {
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET /json/ HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("a malformed HTTP response")?;
    ensure!(head.contains(" 200 "), "GET /json/: {head}");
    Ok(serde_json::from_str(body)?)
}

/// `VmRSS` of process `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n.is_multiple_of(2) {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    } else {
        sorted[n / 2]
    }
}

fn max(values: &[Duration]) -> Duration {
    values.iter().copied().max().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
