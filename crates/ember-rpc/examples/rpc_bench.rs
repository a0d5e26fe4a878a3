//! RPC benchmark: ask round trips, one-way throughput and the memory of idle connections,
//! between two processes over loopback.
//!
//! ```text
//! cargo run --release -p ember-rpc --example rpc_bench            # everything
//! cargo run --release -p ember-rpc --example rpc_bench -- ask     # one part: ask | oneway | idle
//! cargo run --release -p ember-rpc --example rpc_bench -- ask --conf ember.rpc.ask.busyPoll=0
//! ```
//!
//! The server runs in a child process (this same binary with `--serve`), so the client's work
//! and the server's memory are measured apart; the idle-connection figure gets a fresh server
//! process of its own. `--conf key=value` sets RPC configuration on both sides.
//!
//! Asks are timed from a task on the runtime (as endpoints and their tasks ask) and from a
//! plain thread, beside the platform's floor: a bare blocking-socket ping-pong between two
//! processes, timed alone first and then in rounds interleaved with the asks. On a virtual
//! machine that floor is dominated by waking halted CPUs and moves with load, so compare the
//! figures of one run with each other.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext,
    RpcEndpoint, RpcEnv, RpcEnvConfig,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Bench {
    /// One-way payload; counted.
    Blob(Vec<u8>),
    /// Ask → the same number.
    Ping(u64),
    /// Ask → how many blobs arrived.
    Count,
}

#[derive(Default)]
struct Sink {
    blobs: u64,
}

impl RpcEndpoint for Sink {
    type Message = Bench;

    async fn receive(&mut self, _: &EndpointContext<Bench>, msg: Bench) -> HandlerResult {
        if let Bench::Blob(_) = msg {
            self.blobs += 1;
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _: &EndpointContext<Bench>,
        msg: Bench,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match msg {
            Bench::Ping(n) => reply.reply(n),
            Bench::Count => reply.reply(self.blobs),
            Bench::Blob(_) => reply.reply(0u64),
        }
        Ok(())
    }
}

/// `--conf key=value` pairs given on the command line; the server process gets them too.
static CONF: OnceLock<Vec<String>> = OnceLock::new();

fn config(name: &str) -> RpcEnvConfig {
    let mut conf = EmberConf::new();
    for pair in CONF.get().into_iter().flatten() {
        let (key, value) = pair.split_once('=').expect("--conf takes key=value");
        conf.set(key, value);
    }
    RpcEnvConfig::from_conf(name, "127.0.0.1", 0, &conf).expect("a valid --conf")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Server {
    child: Child,
    address: RpcAddress,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server() -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("--serve")
        .args(CONF.get().into_iter().flatten().flat_map(|p| ["--conf", p]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines
        .next()
        .expect("server prints its port")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Server {
        child,
        address: RpcAddress::new("127.0.0.1", port),
    }
}

async fn serve() {
    let env = RpcEnv::create(config("bench-server")).await.unwrap();
    env.setup_endpoint("sink", Sink::default()).await.unwrap();
    println!("{}", env.address().port);
    // Serve until the parent closes stdin (or kills us).
    let _ = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    })
    .await;
}

/// Ask round trips, interleaved in short rounds with the platform's floor so that all three
/// series see the same machine: how busy the other CPUs are, and whether the two processes'
/// threads happen to share a virtual CPU (then a wake-up needs no halted CPU woken), moves
/// every figure here.
async fn bench_ask(server: &RpcAddress) {
    const ROUNDS: usize = 25;
    const PER_ROUND: usize = 2_000;
    let env = RpcEnv::create(config("bench-client")).await.unwrap();
    let sink: EndpointRef<Bench> = env.setup_endpoint_ref(server, "sink").await.unwrap();
    // The floor alone first, before anything else has run on this machine for a while.
    let mut floor = Floor::start();
    floor.samples(5_000);
    report(
        "platform floor (blocking 64-byte socket ping-pong between two processes, alone)",
        floor.samples(20_000),
    );
    for i in 0..5_000 {
        let _: u64 = sink.ask(Bench::Ping(i)).await.unwrap();
    }
    let (mut from_task, mut from_thread, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        bare.extend(floor.samples(PER_ROUND));
        // As endpoints and their spawned tasks ask: from a task on the runtime.
        let s = sink.clone();
        from_task.extend(
            tokio::spawn(async move { ask_samples(&s, PER_ROUND).await })
                .await
                .unwrap(),
        );
        // From a thread outside the runtime's workers (here the one blocked in block_on).
        from_thread.extend(ask_samples(&sink, PER_ROUND).await);
    }
    let n = ROUNDS * PER_ROUND;
    report(
        &format!("ask round trip, from a task ({n} asks, 1 sender)"),
        from_task,
    );
    report(
        &format!("ask round trip, from a plain thread ({n} asks, 1 sender)"),
        from_thread,
    );
    report(
        "platform floor (blocking 64-byte socket ping-pong between two processes, interleaved)",
        bare,
    );
    env.shutdown().await;
}

async fn ask_samples(sink: &EndpointRef<Bench>, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        let back: u64 = sink.ask(Bench::Ping(i)).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(back, i);
    }
    samples
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
    };
    println!(
        "{what}: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
}

async fn bench_oneway(server: &RpcAddress, senders: usize, total: u64) {
    // Payload sized so that the encoded message is 64 bytes: tag (1) + length (1) + 62.
    let payload = vec![7u8; 62];
    assert_eq!(
        postcard::to_allocvec(&Bench::Blob(payload.clone()))
            .unwrap()
            .len(),
        64
    );
    let mut envs = Vec::new();
    let mut refs = Vec::new();
    for i in 0..senders {
        let env = RpcEnv::create(config(&format!("bench-sender-{i}")))
            .await
            .unwrap();
        let r: EndpointRef<Bench> = env.setup_endpoint_ref(server, "sink").await.unwrap();
        refs.push(r);
        envs.push(env);
    }
    let before: u64 = refs[0].ask(Bench::Count).await.unwrap();
    let per_sender = total / senders as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for r in refs.clone() {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_sender {
                r.send(Bench::Blob(payload.clone())).unwrap();
            }
            // Everything this sender sent is handled before its Count is answered.
            let _: u64 = r
                .ask_with_timeout(Bench::Count, Duration::from_secs(300), "bench")
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let after: u64 = refs[0].ask(Bench::Count).await.unwrap();
    assert_eq!(after - before, per_sender * senders as u64);
    println!(
        "one-way 64-byte messages, {senders} sender(s): {} messages in {:.3} s = {:.0} messages/s",
        per_sender * senders as u64,
        elapsed.as_secs_f64(),
        (per_sender * senders as u64) as f64 / elapsed.as_secs_f64()
    );
    for env in envs {
        env.shutdown().await;
    }
}

/// Memory of idle connections, in a server process of its own: in one that has run the other
/// phases, the allocator's retained pages (and what it hands back meanwhile) swamp the figure.
async fn bench_idle(connections: usize) {
    let server = spawn_server();
    let pid = server.child.id();
    // A first connection warms the server's one-off allocations (the verifier's first
    // request, lazily built tables) so that they are not counted per connection.
    let warm = RpcEnv::create(config("idle-warm")).await.unwrap();
    let r: EndpointRef<Bench> = warm.endpoint_ref(server.address.clone(), "sink");
    let _: u64 = r.ask(Bench::Ping(1)).await.unwrap();
    let before = settled_rss_kib(pid).await;
    let mut envs = Vec::new();
    let mut steps = Vec::new();
    for step in [connections / 2, connections] {
        while envs.len() < step {
            let env = RpcEnv::create(config(&format!("idle-{}", envs.len())))
                .await
                .unwrap();
            let r: EndpointRef<Bench> = env.endpoint_ref(server.address.clone(), "sink");
            let _: u64 = r.ask(Bench::Ping(1)).await.unwrap();
            envs.push(env);
        }
        steps.push((step, settled_rss_kib(pid).await));
    }
    let per = |(n, rss): (usize, u64)| rss.saturating_sub(before) as f64 / n as f64;
    let (half, full) = (steps[0], steps[1]);
    println!(
        "idle connections (fresh server process): RSS {before} KiB before, {} KiB with {}, \
         {} KiB with {} = {:.1} KiB per connection ({:.1} at {})",
        half.1,
        half.0,
        full.1,
        full.0,
        per(full),
        per(half),
        half.0
    );
    for env in envs {
        env.shutdown().await;
    }
    warm.shutdown().await;
}

/// The server's RSS once it has stopped changing (it serves nothing meanwhile).
async fn settled_rss_kib(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = rss_kib(pid);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// The platform's floor for a round trip: 64 bytes echoed over a blocking socket between two
/// processes, with no framework at all.
struct Floor {
    child: Child,
    stream: std::net::TcpStream,
}

impl Floor {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--echo")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the echo process");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        Floor { child, stream }
    }

    fn samples(&mut self, n: usize) -> Vec<Duration> {
        use std::io::{Read, Write};
        let (out, mut back) = ([7u8; 64], [0u8; 64]);
        (0..n)
            .map(|_| {
                let t = Instant::now();
                self.stream.write_all(&out).unwrap();
                self.stream.read_exact(&mut back).unwrap();
                t.elapsed()
            })
            .collect()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn echo() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = [0u8; 64];
    while stream.read_exact(&mut buf).is_ok() {
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
}

fn main() {
    let mut args: Vec<String> = Vec::new();
    let mut confs = Vec::new();
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        if arg == "--conf" {
            confs.push(given.next().expect("--conf takes key=value"));
        } else {
            args.push(arg);
        }
    }
    CONF.set(confs).unwrap();
    if args.first().map(String::as_str) == Some("--echo") {
        echo();
        return;
    }
    // BENCH_RUNTIME=current runs both sides on single-threaded runtimes.
    let rt = if std::env::var("BENCH_RUNTIME").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    if args.first().map(String::as_str) == Some("--serve") {
        rt.block_on(serve());
        return;
    }
    let which = args.first().cloned().unwrap_or_else(|| "all".into());
    rt.block_on(async {
        if which == "all" || which == "ask" || which == "oneway" {
            let server = spawn_server();
            if which == "all" || which == "ask" {
                bench_ask(&server.address).await;
            }
            if which == "all" || which == "oneway" {
                bench_oneway(&server.address, 1, 2_000_000).await;
                bench_oneway(&server.address, 4, 2_000_000).await;
            }
        }
        if which == "all" || which == "idle" {
            bench_idle(1000).await;
        }
    });
}
