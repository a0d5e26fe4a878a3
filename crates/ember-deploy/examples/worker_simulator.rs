//! Load test for the Master: many simulated workers registering and heartbeating.
//!
//! ```text
//! cargo run --release -p ember-deploy --example worker_simulator -- --workers 2000
//! ```
//!
//! By default the simulator starts the master as a **separate process** (this same binary with
//! `--serve-master`), so the figures are the master's own: its CPU time is read from
//! `/proc/<pid>/stat` (utime + stime, in clock ticks of 1/100 s, Linux's `USER_HZ`) and its
//! resident memory from `/proc/<pid>/status` (`VmRSS`). With `--master-url ember://h:p
//! --master-pid PID` it drives a master started elsewhere (e.g. by `ember master`).
//!
//! Each simulated worker is its own RpcEnv (the master tells workers apart by the address of
//! their RpcEnv, as Spark does, so they cannot share one) with a `Worker` endpoint that registers,
//! then heartbeats every `--heartbeat-ms` (default 1000 ms, fifteen times Spark's default rate of
//! one per 15 s), each worker at its own phase so the load is even.
//!
//! Options: `--workers N` (2000), `--duration S` (20, the measuring window), `--heartbeat-ms MS`
//! (1000), `--master-url URL --master-pid PID`.
//!
//! Reported: master start → accepting connections (measured inside the master process around
//! `master::start`, and from process spawn to the ready line), idle RSS, time to register all
//! workers, then CPU % of one core and RSS while every worker heartbeats.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ember_deploy::ids::{WorkerId, now_millis};
use ember_deploy::master::{self, MasterConfig};
use ember_deploy::messages::{
    ClientToMaster, MASTER_ENDPOINT, MasterMessage, MasterStateResponse, MasterToWorker,
    WORKER_ENDPOINT, WorkerInternal, WorkerMessage, WorkerToMaster,
};
use ember_deploy::state::WorkerState;
use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcEndpoint, RpcEnv,
    RpcEnvConfig, TimerHandle,
};
use tokio::io::{AsyncBufReadExt, BufReader};

const READY: &str = "EMBER-MASTER-READY";

struct Options {
    workers: usize,
    duration: Duration,
    heartbeat: Duration,
    master_url: Option<String>,
    master_pid: Option<u32>,
    serve_master: bool,
}

fn options() -> Options {
    let mut o = Options {
        workers: 2000,
        duration: Duration::from_secs(20),
        heartbeat: Duration::from_millis(1000),
        master_url: None,
        master_pid: None,
        serve_master: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--workers" => o.workers = value().parse().unwrap_or_else(|_| usage("--workers N")),
            "--duration" => {
                o.duration =
                    Duration::from_secs(value().parse().unwrap_or_else(|_| usage("--duration S")))
            }
            "--heartbeat-ms" => {
                o.heartbeat = Duration::from_millis(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--heartbeat-ms MS")),
                )
            }
            "--master-url" => o.master_url = Some(value()),
            "--master-pid" => {
                o.master_pid = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("--master-pid PID")),
                )
            }
            "--serve-master" => o.serve_master = true,
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    o
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("worker_simulator: {problem}");
    }
    eprintln!(
        "usage: worker_simulator [--workers N] [--duration S] [--heartbeat-ms MS] \
         [--master-url ember://host:port --master-pid PID]"
    );
    std::process::exit(2)
}

/// Child mode: run a master on 127.0.0.1 (ports 0), print the ready line, stop when stdin closes.
async fn serve_master() {
    let began = Instant::now();
    let conf = Arc::new(EmberConf::from_pairs([
        ("ember.master.host", "127.0.0.1"),
        ("ember.master.port", "0"),
        ("ember.master.ui.port", "0"),
    ]));
    let config = MasterConfig::from_conf(&conf).expect("valid configuration");
    let handle = master::start(config, conf)
        .await
        .expect("the master starts");
    let startup = began.elapsed();
    println!(
        "{READY} {} {} {:.3}",
        handle.master_url(),
        handle.web_ui_url(),
        startup.as_secs_f64() * 1000.0
    );
    let _ = std::io::stdout().flush();
    // Until stdin closes (the simulator drops its end).
    let _ = tokio::task::spawn_blocking(|| {
        use std::io::Read as _;
        let mut buf = [0u8; 64];
        while std::io::stdin().read(&mut buf).is_ok_and(|n| n > 0) {}
    })
    .await;
    handle.shutdown().await;
}

/// `(cpu seconds, rss MiB)` of a process.
fn usage_of(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks as f64 / 100.0, rss_kb / 1024.0))
}

struct SimWorker {
    id: WorkerId,
    master: EndpointRef<MasterMessage>,
    phase: Duration,
    period: Duration,
    registered: Arc<AtomicUsize>,
    heartbeats: Arc<AtomicU64>,
    timer: Option<TimerHandle>,
}

impl RpcEndpoint for SimWorker {
    type Message = WorkerMessage;

    async fn receive(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        m: WorkerMessage,
    ) -> HandlerResult {
        match m {
            WorkerMessage::Master(MasterToWorker::RegisteredWorker { .. }) => {
                self.registered.fetch_add(1, Ordering::Relaxed);
                if self.timer.is_none() {
                    self.timer = Some(ctx.schedule_every(self.phase, self.period, || {
                        WorkerInternal::SendHeartbeat.into()
                    }));
                }
            }
            WorkerMessage::Master(MasterToWorker::RegisterWorkerFailed { message }) => {
                eprintln!("{} refused: {message}", self.id);
            }
            WorkerMessage::Internal(WorkerInternal::SendHeartbeat) => {
                self.master.send(WorkerToMaster::Heartbeat {
                    worker_id: self.id.clone(),
                    worker: ctx.self_ref().clone(),
                })?;
                self.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok(())
    }
}

fn main() {
    let o = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if o.serve_master {
        runtime.block_on(serve_master());
    } else {
        runtime.block_on(simulate(o));
    }
}

async fn simulate(o: Options) {
    let mut child = None;
    let (master_address, pid) = match (&o.master_url, o.master_pid) {
        (Some(url), Some(pid)) => (RpcAddress::from_ember_url(url).expect("a master URL"), pid),
        (Some(_), None) | (None, Some(_)) => usage("--master-url and --master-pid go together"),
        (None, None) => {
            let spawned = Instant::now();
            let mut c = tokio::process::Command::new(std::env::current_exe().expect("own path"))
                .arg("--serve-master")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("the master process starts");
            let pid = c.id().expect("a pid");
            let mut lines = BufReader::new(c.stdout.take().expect("piped stdout")).lines();
            let line = loop {
                match lines.next_line().await.expect("master output") {
                    Some(l) if l.starts_with(READY) => break l,
                    Some(_) => continue,
                    None => panic!("the master process exited before it was ready"),
                }
            };
            let to_ready = spawned.elapsed();
            let parts: Vec<&str> = line.split_whitespace().collect();
            println!(
                "master start -> accepting connections: {} ms inside the master process \
                 (master::start), {:.1} ms from process spawn to the ready line",
                parts[3],
                to_ready.as_secs_f64() * 1000.0
            );
            println!("master web UI: {}", parts[2]);
            child = Some(c);
            (
                RpcAddress::from_ember_url(parts[1]).expect("a master URL"),
                pid,
            )
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, idle_rss) = usage_of(pid).expect("/proc of the master");
    println!("master idle RSS: {idle_rss:.1} MiB");

    let client = RpcEnv::create(RpcEnvConfig::new("simulator", "127.0.0.1", 0))
        .await
        .expect("client RpcEnv");
    let master: EndpointRef<MasterMessage> = client
        .setup_endpoint_ref(&master_address, MASTER_ENDPOINT)
        .await
        .expect("the master answers");

    let registered = Arc::new(AtomicUsize::new(0));
    let heartbeats = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (cpu_before_reg, _) = usage_of(pid).unwrap();
    let mut envs = Vec::with_capacity(o.workers);
    for i in 0..o.workers {
        let env = RpcEnv::create(RpcEnvConfig::new("sim-worker", "127.0.0.1", 0))
            .await
            .expect("worker RpcEnv");
        let address = env.address().clone();
        let id = WorkerId::generate(now_millis(), &address.host, address.port);
        let master_ref: EndpointRef<MasterMessage> =
            env.endpoint_ref(master_address.clone(), MASTER_ENDPOINT);
        let phase = o.heartbeat.mul_f64(i as f64 / o.workers as f64);
        let me = env
            .setup_endpoint(
                WORKER_ENDPOINT,
                SimWorker {
                    id: id.clone(),
                    master: master_ref.clone(),
                    phase,
                    period: o.heartbeat,
                    registered: registered.clone(),
                    heartbeats: heartbeats.clone(),
                    timer: None,
                },
            )
            .await
            .expect("worker endpoint");
        master_ref
            .send(WorkerToMaster::RegisterWorker {
                id,
                host: address.host.clone(),
                port: address.port,
                worker: me,
                cores: 8,
                memory_mb: 16_384,
                web_ui_url: format!("http://{}:1", address.host),
                master_address: master_address.clone(),
            })
            .expect("send");
        envs.push(env);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while registered.load(Ordering::Relaxed) < o.workers {
        assert!(Instant::now() < deadline, "registration did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu_after_reg, rss_after_reg) = usage_of(pid).unwrap();
    println!(
        "registered {} workers in {:.2} s (master CPU {:.2} s, RSS {rss_after_reg:.1} MiB)",
        o.workers,
        started.elapsed().as_secs_f64(),
        cpu_after_reg - cpu_before_reg
    );

    // Let every worker's heartbeat timer start, then measure.
    tokio::time::sleep(o.heartbeat + Duration::from_millis(500)).await;
    let (cpu0, _) = usage_of(pid).unwrap();
    let beats0 = heartbeats.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(o.duration).await;
    let (cpu1, rss) = usage_of(pid).unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    let beats = heartbeats.load(Ordering::Relaxed) - beats0;
    println!(
        "steady state over {elapsed:.1} s: {beats} heartbeats ({:.0}/s); master CPU {:.2}% of one \
         core; master RSS {rss:.1} MiB",
        beats as f64 / elapsed,
        100.0 * (cpu1 - cpu0) / elapsed
    );

    let state: MasterStateResponse = master
        .ask(ClientToMaster::RequestMasterState)
        .await
        .expect("master state");
    let alive = state
        .workers
        .iter()
        .filter(|w| w.state == WorkerState::Alive)
        .count();
    let freshest = state
        .workers
        .iter()
        .map(|w| w.last_heartbeat_ms)
        .max()
        .unwrap_or(0);
    println!(
        "master reports {alive} ALIVE of {} workers; newest heartbeat {} ms ago",
        state.workers.len(),
        now_millis().saturating_sub(freshest)
    );

    for env in envs {
        env.shutdown().await;
    }
    client.shutdown().await;
    if let Some(mut c) = child {
        drop(c.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
    }
}
