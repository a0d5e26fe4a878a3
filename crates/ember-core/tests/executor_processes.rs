//! Executor processes without a worker: the phase-1 stand-in for a standalone cluster.
//!
//! The driver is a real `Context` on the standalone backend, talking through its AppClient to a
//! fake `Master` endpoint written here. On `RegisterApplication` the fake master answers
//! `RegisteredApplication`, sends `ExecutorAdded`, and then does what a worker would: it starts
//! the application binary (this test binary, re-executed with `--exact executor_entry`) with
//! the command's environment, placeholders substituted, stdout and stderr in
//! `work/<appId>/<execId>/`, and reports `ExecutorUpdated(EXITED)` when a process ends. A fake
//! `Worker` endpoint in its own RpcEnv stands for the worker the executors watch.
//!
//! In an ordinary run `executor_entry` finds no `EMBER_EXECUTOR` variable and returns at once.
//! Every process started here is killed when its test ends, however it ends.

mod support;

use std::io::Write;

use ember_core::CoreError;
use ember_core::closure::{binary_digest, digest_file};
use ember_core::scheduler::messages::{DRIVER_ENDPOINT, DriverMessage, ExecutorMessage};
use ember_deploy::ids::WorkerId;
use ember_deploy::messages::{MasterStateResponse, MasterToApp, WorkerSummary};
use ember_deploy::state::{MasterState, WorkerState};
use ember_rpc::{EndpointRef, RpcEnv, RpcEnvConfig};
use serde_closure::Fn;
use support::{APP_ID, Cluster, TempDir, captured_logs, started_pids, wait_until};

/// Runs only in executor processes: the entry point for the executor role.
#[test]
fn executor_entry() {
    ember_core::run_if_executor_role();
}

#[test]
fn a_job_runs_on_two_executor_processes() {
    let cluster = Cluster::start("two", 2);
    let ctx = cluster.context(&[]);
    wait_until("two executors", || ctx.num_executors() == 2);
    assert_eq!(ctx.application_id().as_deref(), Some(APP_ID));
    let base = 7u64;
    let results = ctx
        .run_job(
            16,
            Fn!(move |p: usize| (p as u64 * base, std::process::id())),
        )
        .unwrap();
    let values: Vec<u64> = results.iter().map(|(v, _)| *v).collect();
    assert_eq!(values, (0..16).map(|p| p * 7).collect::<Vec<_>>());
    let mut pids: Vec<u32> = results.iter().map(|(_, pid)| *pid).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 2, "tasks ran on both executors: {pids:?}");
    assert!(
        !pids.contains(&std::process::id()),
        "no task ran in the driver"
    );
    let mut launched = cluster.pids();
    launched.sort();
    assert_eq!(pids, launched);

    // The application description tells workers what to run.
    let desc = cluster.log.lock().unwrap().app.clone().unwrap();
    assert_eq!(desc.name, "executor-process-test");
    assert_eq!(desc.memory_per_executor_mb, 1024);
    assert_eq!(
        desc.command.binary.digest,
        binary_digest().unwrap().to_string()
    );
    assert!(
        desc.command
            .environment
            .iter()
            .any(|(k, v)| k == "EMBER_EXECUTOR" && v == "1")
    );

    // Stopping tells the executors to exit (status 0) and unregisters the application.
    ctx.stop();
    wait_until("the executors to exit", || {
        cluster.exit_codes().iter().all(Option::is_some)
    });
    assert_eq!(cluster.exit_codes(), vec![Some(0), Some(0)]);
    wait_until("unregistration", || {
        cluster.log.lock().unwrap().unregistered
    });
}

#[test]
fn tasks_of_a_killed_executor_are_resubmitted() {
    let cluster = Cluster::start("kill", 2);
    let ctx = cluster.context(&[]);
    wait_until("two executors", || ctx.num_executors() == 2);
    let gates = cluster.gates();
    let job_ctx = ctx.clone();
    let task = gated_task!(gates);
    let job = std::thread::spawn(move || job_ctx.run_job(6, task));
    wait_until("a task to start", || !started_pids(&gates).is_empty());
    let victim = started_pids(&gates)[0];
    cluster.kill(victim);
    wait_until("the driver to notice", || ctx.num_executors() == 1);
    std::fs::write(gates.join("release"), b"").unwrap();
    let results = job
        .join()
        .unwrap()
        .expect("the job survives the lost executor");
    assert_eq!(
        results.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    assert!(results.iter().all(|(_, pid)| *pid != victim), "{results:?}");
}

#[test]
fn a_task_that_keeps_panicking_fails_the_job_with_its_message() {
    let cluster = Cluster::start("panic", 2);
    let ctx = cluster.context(&[("ember.task.maxFailures", "3")]);
    let err = ctx
        .run_job(
            4,
            Fn!(|p: usize| {
                if p == 1 {
                    panic!("partition 1 cannot be computed");
                }
                p
            }),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("partition 1 cannot be computed"), "{text}");
    assert!(text.contains("failed 3 times"), "{text}");
    assert!(matches!(err, CoreError::JobFailed { .. }));
    // The executors survive user panics.
    assert_eq!(ctx.run_job(2, Fn!(|p: usize| p * 2)).unwrap(), vec![0, 2]);
}

#[test]
fn an_executor_running_another_binary_is_refused() {
    // A copy of this binary with bytes appended runs fine but has another digest.
    let dir = TempDir::new("other-binary");
    let other = dir.0.join("other-build");
    std::fs::copy(std::env::current_exe().unwrap(), &other).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&other)
        .unwrap()
        .write_all(b"a different build")
        .unwrap();
    let other_digest = digest_file(&other).unwrap();
    let driver_digest = *binary_digest().unwrap();
    assert_ne!(other_digest, driver_digest);

    let cluster = Cluster::start_with("mismatch", 1, Some(other), None);
    let ctx = cluster.context(&[]);
    wait_until("the refused executor to exit", || {
        cluster.exit_codes().iter().all(Option::is_some) && !cluster.exit_codes().is_empty()
    });
    assert_eq!(cluster.exit_codes(), vec![Some(1)]);
    let stderr = cluster.stderr_of(0);
    assert!(
        stderr.contains("runs a different binary than the driver"),
        "{stderr}"
    );
    assert!(stderr.contains(&other_digest.to_string()), "{stderr}");
    assert!(stderr.contains(&driver_digest.to_string()), "{stderr}");
    assert_eq!(ctx.num_executors(), 0);

    // The driver's side of the check, asked directly.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let address = ctx.driver_address().clone();
    let refusal = runtime.block_on(async move {
        let env = RpcEnv::create(RpcEnvConfig::new("impostor", "127.0.0.1", 0))
            .await
            .unwrap();
        let driver: EndpointRef<DriverMessage> = env.endpoint_ref(address, DRIVER_ENDPOINT);
        let me: EndpointRef<ExecutorMessage> = env.endpoint_ref(env.address().clone(), "Executor");
        let answer: Result<ember_core::scheduler::messages::ExecutorRegistration, _> = driver
            .ask(DriverMessage::RegisterExecutor {
                executor_id: "impostor".into(),
                executor_ref: me,
                hostname: "127.0.0.1".into(),
                cores: 1,
                log_urls: vec![],
                binary_digest: other_digest,
            })
            .await;
        env.shutdown().await;
        answer.unwrap_err().to_string()
    });
    assert!(refusal.contains(&other_digest.to_string()), "{refusal}");
    assert!(refusal.contains(&driver_digest.to_string()), "{refusal}");
}

#[test]
fn large_results_travel_through_the_block_store() {
    let cluster = Cluster::start("large", 2);
    // Messages of at most 1 MiB; each result is 3 MiB.
    let ctx = cluster.context(&[("ember.rpc.message.maxSize", "1")]);
    let results = ctx
        .run_job(
            3,
            Fn!(|p: usize| {
                (0..3 * 1024 * 1024u32)
                    .map(|i| (i as usize).wrapping_mul(p + 1) as u8)
                    .collect::<Vec<u8>>()
            }),
        )
        .unwrap();
    for (p, bytes) in results.iter().enumerate() {
        assert_eq!(bytes.len(), 3 * 1024 * 1024);
        assert!(
            bytes
                .iter()
                .enumerate()
                .all(|(i, b)| *b == i.wrapping_mul(p + 1) as u8)
        );
    }
    // Small results still go directly; both kinds mix in one job.
    let mixed = ctx
        .run_job(
            2,
            Fn!(|p: usize| std::iter::repeat_n(1u8, p * 2 * 1024 * 1024).collect::<Vec<u8>>()),
        )
        .unwrap();
    assert_eq!(mixed[0].len(), 0);
    assert_eq!(mixed[1].len(), 2 * 1024 * 1024);
}

#[test]
fn an_application_without_resources_waits_and_says_why() {
    let logs = captured_logs();
    let summary = |id: &str, memory_used_mb: u32| WorkerSummary {
        id: WorkerId::from(id),
        host: "127.0.0.1".into(),
        port: 1,
        web_ui_address: String::new(),
        cores: 4,
        cores_used: 4,
        memory_mb: 4096,
        memory_used_mb,
        state: WorkerState::Alive,
        last_heartbeat_ms: 0,
    };
    let state = MasterStateResponse {
        host: "127.0.0.1".into(),
        port: 7077,
        rest_port: None,
        web_ui_url: String::new(),
        workers: vec![summary("worker-a", 3584), summary("worker-b", 3700)],
        active_apps: vec![],
        completed_apps: vec![],
        active_drivers: vec![],
        completed_drivers: vec![],
        status: MasterState::Alive,
    };
    let cluster = Cluster::start_with("starved", 0, None, Some(state));
    let ctx = cluster.context(&[("ember.starvation.timeout", "50ms")]);
    let job_ctx = ctx.clone();
    let job = std::thread::spawn(move || job_ctx.run_job(2, Fn!(|p: usize| p)));
    let want = "The largest free memory on any alive worker is 512 MiB, below the 1024 MiB";
    wait_until("the starvation warning", || {
        String::from_utf8_lossy(&logs.lock().unwrap()).contains(want)
    });
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(
        text.contains("Initial job has not accepted any resources"),
        "{text}"
    );
    ctx.stop();
    let err = job.join().unwrap().unwrap_err();
    assert!(matches!(err, CoreError::ContextStopped { .. }), "{err:?}");
}

#[test]
fn the_context_stops_when_the_master_removes_the_application() {
    let cluster = Cluster::start("removed", 1);
    let ctx = cluster.context(&[]);
    wait_until("an executor", || ctx.num_executors() == 1);
    let gates = cluster.gates();
    let job_ctx = ctx.clone();
    let task = gated_task!(gates);
    let job = std::thread::spawn(move || job_ctx.run_job(2, task));
    wait_until("a task to start", || !started_pids(&gates).is_empty());
    let driver = cluster.log.lock().unwrap().driver.clone().unwrap();
    {
        let _runtime = cluster.runtime.enter();
        driver
            .send(MasterToApp::ApplicationRemoved {
                message: "KILLED".into(),
            })
            .unwrap();
    }
    let err = job.join().unwrap().unwrap_err();
    assert!(
        err.to_string()
            .contains("Master removed our application: KILLED"),
        "{err}"
    );
    wait_until("the context to stop", || ctx.is_stopped());
    wait_until("the executor to exit", || {
        cluster.exit_codes().iter().all(Option::is_some)
    });
}

#[test]
fn executors_exit_when_their_worker_goes_away() {
    let cluster = Cluster::start("worker-lost", 2);
    let ctx = cluster.context(&[]);
    wait_until("two executors", || ctx.num_executors() == 2);
    let worker = cluster.worker_env.clone();
    cluster
        .runtime
        .block_on(async move { worker.shutdown().await });
    wait_until("the executors to exit", || {
        cluster.exit_codes().iter().all(Option::is_some)
    });
    assert_eq!(cluster.exit_codes(), vec![Some(1), Some(1)]);
    wait_until("the driver to drop them", || ctx.num_executors() == 0);
    assert!(
        cluster.stderr_of(0).contains("disassociated"),
        "{}",
        cluster.stderr_of(0)
    );
}

#[test]
fn the_context_stops_when_no_master_answers() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let master = format!("ember://127.0.0.1:{port}");
    let ctx = ember_core::Context::new(ember_rpc::EmberConf::from_pairs([
        ("ember.master", master.as_str()),
        ("ember.driver.host", "127.0.0.1"),
        ("ember.ui.showConsoleProgress", "false"),
        ("ember.app.registration.timeout", "20ms"),
        ("ember.app.registration.retries", "2"),
    ]))
    .unwrap();
    wait_until("the context to stop", || ctx.is_stopped());
    let reason = ctx.stop_reason().unwrap();
    assert!(reason.contains("All masters are unresponsive"), "{reason}");
    let err = ctx.run_job(1, Fn!(|p: usize| p)).unwrap_err();
    assert!(
        err.to_string().contains("All masters are unresponsive"),
        "{err}"
    );
}

#[test]
fn a_silent_executor_is_declared_lost_after_the_network_timeout() {
    let cluster = Cluster::start("silent", 2);
    let ctx = cluster.context(&[
        ("ember.network.timeout", "1s"),
        ("ember.executor.heartbeatInterval", "100ms"),
    ]);
    wait_until("two executors", || ctx.num_executors() == 2);
    // A stopped process keeps its connection open but sends no heartbeat.
    let victim = cluster.pids()[0];
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &victim.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let stopped_at = std::time::Instant::now();
    wait_until("the driver to declare it lost", || ctx.num_executors() == 1);
    assert!(stopped_at.elapsed() >= std::time::Duration::from_millis(500));
    signal("-CONT");
    // Resumed, it learns it was dropped (StopExecutor, or a heartbeat the driver does not
    // know) and exits.
    wait_until("the dropped executor to exit", || {
        cluster.exit_codes()[0].is_some()
    });
    // Jobs run on the executor that is left.
    let pids = ctx.run_job(4, Fn!(|_p: usize| std::process::id())).unwrap();
    assert!(pids.iter().all(|p| *p == cluster.pids()[1]), "{pids:?}");
}

#[test]
fn a_task_too_large_for_a_message_fails_its_job_clearly() {
    let cluster = Cluster::start("oversized", 1);
    let ctx = cluster.context(&[("ember.rpc.message.maxSize", "1")]);
    wait_until("an executor", || ctx.num_executors() == 1);
    let big: Vec<u8> = vec![7; 2 * 1024 * 1024];
    let err = ctx
        .run_job(2, Fn!(move |p: usize| big.len() + p))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("ember.rpc.message.maxSize"), "{text}");
    assert!(matches!(
        err,
        CoreError::JobFailed {
            reason: ember_core::JobFailure::StageAborted { .. },
            ..
        }
    ));
    // The executor is still usable.
    assert_eq!(ctx.run_job(1, Fn!(|p: usize| p + 1)).unwrap(), vec![1]);
}
