//! Executor state changes reach the master by ask, retried; when they cannot, the worker exits.
//! Processes are in memory here (the seam of `ProcessLauncher`).

mod worker_support;

use std::sync::Arc;
use std::time::Duration;

use ember_deploy::DeployError;
use ember_deploy::description::{AppBinary, BinaryLocation};
use ember_deploy::file_server::digest_file;
use ember_deploy::ids::ExecutorId;
use ember_deploy::messages::MasterToWorker;
use ember_deploy::state::ExecutorState;
use ember_deploy::worker::{self, InMemoryLauncher};
use worker_support::*;

fn local_binary(dir: &std::path::Path) -> AppBinary {
    let path = dir.join("app");
    std::fs::write(&path, b"an application").unwrap();
    let (digest, size) = digest_file(&path).unwrap();
    AppBinary {
        name: "app".into(),
        digest,
        size,
        location: BinaryLocation::LocalPath(path.display().to_string()),
    }
}

fn launch(master: &FakeMaster, binary: AppBinary) {
    master.send(MasterToWorker::LaunchExecutor {
        master_url: master.url(),
        app_id: "app-s".into(),
        exec_id: ExecutorId(0),
        app_desc: app_desc(binary, &["{{EXECUTOR_ID}}"], &[]),
        cores: 1,
        memory_mb: 128,
    });
}

#[tokio::test]
async fn a_refused_report_is_retried_and_order_is_kept() {
    let dir = temp_dir("sync-retry");
    let master = FakeMaster::start(Answer::Accept).await;
    *master.shared.fail_state_asks.lock().unwrap() = 1;
    let (config, conf) = worker_config(
        &dir.join("work"),
        vec![master.address()],
        &[("ember.rpc.askTimeout", "100ms")],
    );
    let launcher = InMemoryLauncher::new();
    let worker = worker::start_with_launcher(config, conf, Arc::new(launcher.clone()))
        .await
        .unwrap();
    eventually("registration", || master.heartbeats() >= 1).await;
    launch(&master, local_binary(&dir));
    let process = launcher.wait_for_launches(1).await.remove(0);
    assert_eq!(process.spec().args, vec!["0"]);
    eventually("RUNNING", || master.executor_states().len() == 2).await;
    process.exit(0);
    eventually("EXITED", || master.executor_states().len() == 3).await;
    let states: Vec<_> = master.executor_states().into_iter().map(|s| s.0).collect();
    assert_eq!(
        states,
        vec![
            ExecutorState::Launching,
            ExecutorState::Running,
            ExecutorState::Exited
        ]
    );
    assert_eq!(*master.shared.failed_state_asks.lock().unwrap(), 1);
    worker.shutdown().await.unwrap();
    master.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_worker_exits_when_the_master_never_acknowledges_and_kills_its_children() {
    let dir = temp_dir("sync-give-up");
    let master = FakeMaster::start(Answer::Accept).await;
    *master.shared.fail_state_asks.lock().unwrap() = u32::MAX;
    let (config, conf) = worker_config(
        &dir.join("work"),
        vec![master.address()],
        &[
            ("ember.rpc.askTimeout", "50ms"),
            ("ember.worker.executorStateSync.maxAttempts", "3"),
        ],
    );
    let launcher = InMemoryLauncher::new();
    let worker = worker::start_with_launcher(config, conf, Arc::new(launcher.clone()))
        .await
        .unwrap();
    eventually("registration", || master.heartbeats() >= 1).await;
    launch(&master, local_binary(&dir));
    let process = launcher.wait_for_launches(1).await.remove(0);
    let err = tokio::time::timeout(Duration::from_secs(20), worker.join())
        .await
        .expect("the worker exits")
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeployError::ExecutorStateSync {
                attempts: 3,
                state: ExecutorState::Launching,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("app-s/0"), "{err}");
    // Three for LAUNCHING; the RUNNING report may have begun before the worker stopped.
    assert!(*master.shared.failed_state_asks.lock().unwrap() >= 3);
    // Stopping by itself, the worker killed its executor.
    assert!(!process.is_running());
    assert_eq!(process.signals(), vec!["SIGTERM"]);
    master.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
