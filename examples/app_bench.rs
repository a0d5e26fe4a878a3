//! Figures for an application on `local-cluster[2,1,1024]` (a Master and two one-core Workers in
//! this process, two executor processes): app start, small-job latency, task throughput, π
//! against the two-thread baseline, and the executors' idle memory. Nothing is asserted; run it
//! in release and read the output:
//!
//! ```text
//! cargo run --release -p ember --example app_bench
//! ```
//!
//! App start is measured in fresh processes (this binary started again with
//! `APP_BENCH_START_ONLY=1`), since a process hashes its binary only once.
//!
//! Driver settings come from the environment as for any application; to compare task queue
//! depths (`ember.scheduler.executorTaskQueue`, 2 by default; 0 is Spark's one task per free
//! core), run it once per value:
//!
//! ```text
//! EMBER_DRIVER_OPTS=-Dember.scheduler.executorTaskQueue=0 cargo run --release -p ember --example app_bench
//! ```

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_closure::Fn;

#[path = "pi_sampling.rs"]
mod pi_sampling;

const MASTER: &str = "local-cluster[2,1,1024]";
const START_RUNS: usize = 7;

fn main() -> anyhow::Result<()> {
    ember::main(|| {
        if std::env::var_os("APP_BENCH_START_ONLY").is_some() {
            let (created, ready) = start_once()?;
            println!("START {} {}", created.as_micros(), ready.as_micros());
            return Ok(());
        }
        app_start()?;
        warm_figures()
    })
}

fn context() -> anyhow::Result<ember::Context> {
    Ok(ember::Context::builder()
        .app_name("app-bench")
        .master_if_unset(MASTER)
        .conf("ember.ui.showConsoleProgress", "false")
        .create()?)
}

/// Context::new, then until two executors take tasks; the context is stopped afterwards.
fn start_once() -> anyhow::Result<(Duration, Duration)> {
    let t = Instant::now();
    let ctx = context()?;
    let created = t.elapsed();
    wait_for(|| ctx.num_executors() >= 2)?;
    let ready = t.elapsed();
    ctx.stop();
    Ok((created, ready))
}

fn wait_for(mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        anyhow::ensure!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn app_start() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut created = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..START_RUNS {
        let out = std::process::Command::new(&exe)
            .env("APP_BENCH_START_ONLY", "1")
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("START "))
            .with_context(|| format!("no START line: {}", String::from_utf8_lossy(&out.stderr)))?;
        let mut words = line.split_whitespace().skip(1);
        created.push(words.next().context("created")?.parse::<u64>()?);
        ready.push(words.next().context("ready")?.parse::<u64>()?);
    }
    created.sort_unstable();
    ready.sort_unstable();
    println!(
        "app start on {MASTER} ({START_RUNS} fresh processes): Context::new median {:.1} ms; \
         two executors ready: median {:.1} ms (min {:.1}, max {:.1})",
        created[START_RUNS / 2] as f64 / 1e3,
        ready[START_RUNS / 2] as f64 / 1e3,
        ready[0] as f64 / 1e3,
        ready[START_RUNS - 1] as f64 / 1e3
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn warm_figures() -> anyhow::Result<()> {
    let ctx = context()?;
    wait_for(|| ctx.num_executors() >= 2)?;

    for _ in 0..200 {
        ctx.run_job(2, Fn!(|p: usize| p))?;
    }
    let mut latencies: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            ctx.run_job(2, Fn!(|p: usize| p)).map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()?;
    latencies.sort_unstable();
    println!(
        "2-task job: median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs (2,000 jobs, warm)",
        percentile(&latencies, 0.5).as_secs_f64() * 1e6,
        percentile(&latencies, 0.9).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6
    );

    let mut rates = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = ctx.run_job(10_000, Fn!(|_p: usize| ()))?;
        anyhow::ensure!(out.len() == 10_000);
        rates.push(10_000.0 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "10,000 empty tasks: median {:.0} tasks/s (min {:.0}, max {:.0}; 5 jobs)",
        rates[2], rates[0], rates[4]
    );

    let (slices, samples) = (20usize, 100_000_000u64);
    let t = Instant::now();
    let counts = ctx.run_job(
        slices,
        Fn!(move |slice: usize| pi_sampling::count_slice(samples, slices, slice)),
    )?;
    let ember_pi = t.elapsed();
    let t = Instant::now();
    // `examples/pi_baseline.rs`: the same slices on two plain threads.
    let baseline = pi_sampling::count_on_threads(samples, slices, 2);
    let baseline_time = t.elapsed();
    anyhow::ensure!(
        counts.iter().sum::<u64>() == baseline,
        "same generator, same count"
    );
    println!(
        "π, 10^8 samples in 20 slices: ember {:.3} s, two-thread baseline {:.3} s, ratio {:.2} \
         (π ≈ {})",
        ember_pi.as_secs_f64(),
        baseline_time.as_secs_f64(),
        ember_pi.as_secs_f64() / baseline_time.as_secs_f64(),
        4.0 * baseline as f64 / samples as f64
    );

    let mut pids: Vec<u32> = ctx.run_job(8, Fn!(|_p: usize| std::process::id()))?;
    pids.sort_unstable();
    pids.dedup();
    // Idle for a moment (no job), then read the executors' resident memory.
    std::thread::sleep(Duration::from_millis(500));
    for pid in pids {
        match rss_kib(pid) {
            Some(kib) => println!("idle executor {pid}: RSS {:.1} MiB", kib as f64 / 1024.0),
            None => println!("idle executor {pid}: RSS unknown"),
        }
    }
    if let Some(kib) = rss_kib(std::process::id()) {
        println!(
            "driver (with the in-process master and workers): RSS {:.1} MiB",
            kib as f64 / 1024.0
        );
    }
    ctx.stop();
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
