//! Figures on two executor processes of one core each, the phase-1 stand-in for
//! `local-cluster[2,1,1024]` (the executors are started by the fake worker of `support`).
//! Nothing here asserts a time; run by hand and read the output:
//!
//! ```text
//! cargo test --release -p ember-core --test cluster_bench -- --ignored --nocapture
//! BENCH_QUEUES=0,1,2,4,8 cargo test --release … # compare ember.scheduler.executorTaskQueue
//! ```

mod support;

#[path = "../../../examples/pi_sampling.rs"]
mod pi_sampling;

use std::time::{Duration, Instant};

use serde_closure::Fn;
use support::{Cluster, wait_until};

/// Runs only in executor processes: the entry point for the executor role.
#[test]
fn executor_entry() {
    ember_core::run_if_executor_role();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
#[ignore = "benchmark: run by hand with --release -- --ignored --nocapture"]
fn two_single_core_executors() {
    let queues: Vec<String> = std::env::var("BENCH_QUEUES")
        .unwrap_or_else(|_| "2".to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let cluster = Cluster::start("bench", 2);
    for queue in &queues {
        println!("--- ember.scheduler.executorTaskQueue = {queue}");
        let start = Instant::now();
        let ctx = cluster.context(&[("ember.scheduler.executorTaskQueue", queue.as_str())]);
        let context_started = start.elapsed();
        wait_until("two executors", || ctx.num_executors() == 2);
        let executors_registered = start.elapsed();
        println!(
            "app start: Context::new {:.1} ms; two executor processes registered after {:.1} ms",
            context_started.as_secs_f64() * 1e3,
            executors_registered.as_secs_f64() * 1e3
        );

        for _ in 0..200 {
            ctx.run_job(2, Fn!(|p: usize| p)).unwrap();
        }
        let latencies: Vec<Duration> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                ctx.run_job(2, Fn!(|p: usize| p)).unwrap();
                t.elapsed()
            })
            .collect();
        println!(
            "2-task job latency: median {:.0} µs, p90 {:.0} µs, p99 {:.0} µs",
            median(latencies.clone()).as_secs_f64() * 1e6,
            percentile(latencies.clone(), 0.9).as_secs_f64() * 1e6,
            percentile(latencies, 0.99).as_secs_f64() * 1e6
        );

        let mut rates = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let out = ctx.run_job(10_000, Fn!(|_p: usize| ())).unwrap();
            assert_eq!(out.len(), 10_000);
            rates.push(10_000.0 / t.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "10,000 empty tasks: median {:.0} tasks/s (min {:.0}, max {:.0})",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1]
        );

        let (slices, samples) = (20usize, 100_000_000u64);
        let t = Instant::now();
        let counts = ctx
            .run_job(
                slices,
                Fn!(move |slice: usize| {
                    pi_sampling::count_inside(
                        slice as u64,
                        pi_sampling::share(samples, slices, slice),
                    )
                }),
            )
            .unwrap();
        let ember_pi = t.elapsed();
        let t = Instant::now();
        let baseline: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2usize)
                .map(|th| {
                    scope.spawn(move || {
                        (th..slices)
                            .step_by(2)
                            .map(|s| {
                                pi_sampling::count_inside(
                                    s as u64,
                                    pi_sampling::share(samples, slices, s),
                                )
                            })
                            .sum::<u64>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let baseline_time = t.elapsed();
        assert_eq!(
            counts.iter().sum::<u64>(),
            baseline,
            "same generator, same count"
        );
        println!(
            "pi 1e8 samples / 20 slices: ember {:.3} s, two-thread baseline {:.3} s, ratio {:.2} (pi ≈ {})",
            ember_pi.as_secs_f64(),
            baseline_time.as_secs_f64(),
            ember_pi.as_secs_f64() / baseline_time.as_secs_f64(),
            4.0 * baseline as f64 / samples as f64
        );

        // Idle: no job for a moment, then read the executors' resident memory.
        std::thread::sleep(Duration::from_millis(300));
        let live: Vec<u32> = cluster
            .log
            .lock()
            .unwrap()
            .executors
            .iter()
            .filter(|e| e.exit.lock().unwrap().is_none())
            .map(|e| e.pid)
            .collect();
        for pid in live {
            if let Some(kib) = rss_kib(pid) {
                println!("idle executor {pid}: RSS {:.1} MiB", kib as f64 / 1024.0);
            }
        }
        ctx.stop();
        wait_until("the executors to exit", || {
            cluster
                .log
                .lock()
                .unwrap()
                .executors
                .iter()
                .all(|e| e.exit.lock().unwrap().is_some())
        });
    }
}
