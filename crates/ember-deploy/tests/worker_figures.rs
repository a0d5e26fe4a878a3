//! Figures, printed and not asserted (run with `cargo test -p ember-deploy --test worker_figures
//! -- --ignored --nocapture`): a worker in a process of its own, how long from its start until a
//! (fake) master has its registration, and its resident memory once idle.
//!
//! The parent starts a fake master and re-runs this test binary as the child, selecting
//! `figures_child`, which runs nothing but `worker::run`. The parent reads the child's `VmRSS`
//! from `/proc` once the master has seen a few heartbeats, then kills the child.

mod worker_support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use ember_deploy::worker;
use ember_rpc::RpcAddress;
use tokio_util::sync::CancellationToken;
use worker_support::*;

const CHILD_ENV: &str = "EMBER_WORKER_FIGURES_MASTER";

#[tokio::test]
#[ignore = "prints figures; run on demand"]
async fn idle_worker_figures() {
    let master = FakeMaster::start(Answer::Accept).await;
    let dir = temp_dir("figures");
    let started = Instant::now();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "figures_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, master.address().to_string())
        .env("EMBER_WORKER_FIGURES_DIR", dir.join("work"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = KillOnDrop(child);
    let pid = child.0.id();
    eventually("registration", || master.registrations() >= 1).await;
    let registered = match master.seen().first() {
        Some(Seen::Register { at, .. }) => *at - started,
        other => panic!("{other:?}"),
    };
    eventually("3 heartbeats", || master.heartbeats() >= 3).await;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .to_owned();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap()
        .to_owned();
    println!("process spawn -> registration received by the master: {registered:?}");
    println!("idle worker process: {rss}, peak {hwm}");
    drop(child);
    master.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills and reaps the child, also when the test fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child: a worker and nothing else, until killed.
#[test]
fn figures_child() {
    let Ok(master) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::env::var("EMBER_WORKER_FIGURES_DIR").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let master: RpcAddress = master.parse().unwrap();
        let (config, conf) = worker_config(
            std::path::Path::new(&dir),
            vec![master],
            &[("ember.worker.timeout", "200ms")],
        );
        let _ = worker::run(config, Arc::clone(&conf), CancellationToken::new()).await;
    });
}
