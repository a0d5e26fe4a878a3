//! A worker running real processes: the application binary (a shell script) is served by a real
//! FileServer, fetched into the worker's cache, verified and run; states go to a fake master.

mod worker_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ember_deploy::description::{AppBinary, DriverDescription};
use ember_deploy::file_server::FileServer;
use ember_deploy::ids::{AppId, DriverId, ExecutorId};
use ember_deploy::messages::MasterToWorker;
use ember_deploy::state::{DriverState, ExecutorState};
use ember_deploy::worker::{self, WorkerHandle};
use ember_rpc::{RpcEnv, RpcEnvConfig};
use worker_support::*;

const SCRIPT: &str = r#"#!/bin/sh
echo "pid $$"
echo "args $*"
echo "cwd $(pwd)"
echo "dirs $EMBER_EXECUTOR_DIRS"
echo "stdout-url $EMBER_LOG_URL_STDOUT"
echo "role $ROLE"
echo "to stderr" >&2
case "$MODE" in
  sleep) exec sleep 60 ;;
  *) exit "${EXIT_CODE:-0}" ;;
esac
"#;

struct Setup {
    master: FakeMaster,
    driver_env: RpcEnv,
    binary: AppBinary,
    script: PathBuf,
    worker: Option<WorkerHandle>,
    dir: PathBuf,
    pids: PidGuard,
}

impl Setup {
    async fn new(name: &str) -> Setup {
        let dir = temp_dir(name);
        let master = FakeMaster::start(Answer::Accept).await;
        let driver_env = RpcEnv::create(RpcEnvConfig::new("driver", "127.0.0.1", 0))
            .await
            .unwrap();
        let file_server = FileServer::start(&driver_env).await.unwrap();
        let script = dir.join("app.sh");
        std::fs::write(&script, SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let binary = file_server.add_file(&script).await.unwrap();
        let (config, conf) = worker_config(&dir.join("work"), vec![master.address()], &[]);
        let worker = worker::start(config, conf).await.unwrap();
        eventually("registration", || master.heartbeats() >= 1).await;
        Setup {
            master,
            driver_env,
            binary,
            script,
            worker: Some(worker),
            dir,
            pids: PidGuard::default(),
        }
    }

    fn worker(&self) -> &WorkerHandle {
        self.worker.as_ref().unwrap()
    }

    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn launch(&self, app: &str, exec: u32, binary: AppBinary, env: &[(&str, &str)]) {
        let desc = app_desc(
            binary,
            &[
                "--executor-id",
                "{{EXECUTOR_ID}}",
                "--cores",
                "{{CORES}}",
                "--app-id",
                "{{APP_ID}}",
                "--worker",
                "{{WORKER_URL}}",
                "--mem={{MEMORY_MB}}",
                "--host={{HOSTNAME}}",
            ],
            env,
        );
        self.master.send(MasterToWorker::LaunchExecutor {
            master_url: self.master.url(),
            app_id: AppId::from(app),
            exec_id: ExecutorId(exec),
            app_desc: desc,
            cores: 1,
            memory_mb: 256,
        });
    }

    /// Waits for the executor's stdout to name its pid; guards the pid.
    async fn pid_of(&self, app: &str, exec: u32) -> i32 {
        let stdout = self.work().join(app).join(exec.to_string()).join("stdout");
        eventually("the executor's pid", || read(&stdout).contains("pid ")).await;
        let pid = read(&stdout)
            .lines()
            .find_map(|l| l.strip_prefix("pid "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.pids.add(pid);
        pid
    }

    async fn finish(mut self) {
        self.worker.take().unwrap().shutdown().await.unwrap();
        self.master.shutdown().await;
        self.driver_env.shutdown().await;
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn states(master: &FakeMaster) -> Vec<ExecutorState> {
    master.executor_states().into_iter().map(|s| s.0).collect()
}

#[tokio::test]
async fn runs_the_fetched_binary_and_reports_its_exit_code() {
    let s = Setup::new("exit").await;
    // A launch from a master that is not the active one is ignored.
    s.master.send(MasterToWorker::LaunchExecutor {
        master_url: "ember://someone-else:7077".into(),
        app_id: "app-x".into(),
        exec_id: ExecutorId(9),
        app_desc: app_desc(s.binary.clone(), &[], &[]),
        cores: 1,
        memory_mb: 1,
    });
    s.launch(
        "app-x",
        0,
        s.binary.clone(),
        &[("EXIT_CODE", "3"), ("ROLE", "exec-{{EXECUTOR_ID}}")],
    );
    eventually("EXITED", || {
        states(&s.master).contains(&ExecutorState::Exited)
    })
    .await;
    assert_eq!(
        s.master.executor_states(),
        vec![
            (ExecutorState::Launching, None, None),
            (ExecutorState::Running, None, None),
            (
                ExecutorState::Exited,
                Some("Command exited with code 3".into()),
                Some(3)
            ),
        ]
    );
    let exec_dir = s.work().join("app-x").join("0");
    let stdout = read(&exec_dir.join("stdout"));
    let port = s.worker().rpc_address().port;
    assert!(
        stdout.contains(&format!(
            "args --executor-id 0 --cores 1 --app-id app-x --worker ember://Worker@127.0.0.1:{port} \
             --mem=256 --host=127.0.0.1"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("cwd {}", exec_dir.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "dirs {}",
            s.work().join("app-x").join("local").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "stdout-url {}/logPage/?appId=app-x&executorId=0&logType=stdout",
            s.worker().web_ui_url()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("role exec-0"), "{stdout}");
    let stderr = read(&exec_dir.join("stderr"));
    assert!(stderr.starts_with("Ember Executor Command: \""), "{stderr}");
    assert!(stderr.ends_with("to stderr\n"), "{stderr}");
    // The binary sits in the cache under its digest, executable.
    let cached = s.work().join("app-binaries").join(&s.binary.digest);
    assert_eq!(std::fs::read(&cached).unwrap(), SCRIPT.as_bytes());
    assert_eq!(
        std::fs::metadata(&cached).unwrap().permissions().mode() & 0o777,
        0o755
    );

    let state = eventually_state(s.worker(), "the executor finished", |st| {
        st.finished_executors.len() == 1
    })
    .await;
    assert!(state.executors.is_empty());
    assert_eq!((state.cores_used, state.memory_used_mb), (0, 0));
    let finished = &state.finished_executors[0];
    assert_eq!(
        (finished.state, finished.exit_status),
        (ExecutorState::Exited, Some(3))
    );

    // The application finished: its scratch directory goes, its logs stay.
    s.master.send(MasterToWorker::ApplicationFinished {
        app_id: "app-x".into(),
    });
    let local = s.work().join("app-x").join("local");
    eventually("the scratch dir removed", || !local.exists()).await;
    assert!(exec_dir.join("stdout").exists());
    s.finish().await;
}

#[tokio::test]
async fn a_binary_whose_bytes_do_not_match_its_digest_fails_the_executor() {
    let s = Setup::new("digest").await;
    // The file changes on disk after it was registered: same size, other bytes.
    let changed = SCRIPT.replace("to stderr", "TO STDERR");
    std::fs::write(&s.script, &changed).unwrap();
    s.launch("app-d", 0, s.binary.clone(), &[]);
    eventually("FAILED", || {
        states(&s.master).contains(&ExecutorState::Failed)
    })
    .await;
    let (state, message, exit) = s.master.executor_states().pop().unwrap();
    assert_eq!((state, exit), (ExecutorState::Failed, None));
    let message = message.unwrap();
    let actual = {
        use sha2::Digest as _;
        ember_deploy::file_server::hex(&sha2::Sha256::digest(changed.as_bytes()))
    };
    assert!(message.contains("wrong SHA-256 digest"), "{message}");
    assert!(
        message.contains(&s.binary.digest) && message.contains(&actual),
        "{message}"
    );
    assert!(!states(&s.master).contains(&ExecutorState::Running));
    // Nothing is left in the cache.
    let cache = s.work().join("app-binaries");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert_eq!(left, vec![0]);

    // An unknown digest is refused by the file server, and said so.
    let mut unknown = s.binary.clone();
    unknown.digest = "e".repeat(64);
    s.launch("app-d", 1, unknown, &[]);
    eventually("second FAILED", || {
        states(&s.master)
            .iter()
            .filter(|st| **st == ExecutorState::Failed)
            .count()
            == 2
    })
    .await;
    let message = s.master.executor_states().pop().unwrap().1.unwrap();
    assert!(
        message.contains("no file with SHA-256 digest eeee"),
        "{message}"
    );
    s.finish().await;
}

#[tokio::test]
async fn kill_executor_terminates_the_process() {
    let s = Setup::new("kill").await;
    s.launch("app-k", 0, s.binary.clone(), &[("MODE", "sleep")]);
    let pid = s.pid_of("app-k", 0).await;
    assert!(pid_alive(pid));
    eventually("RUNNING", || {
        states(&s.master).contains(&ExecutorState::Running)
    })
    .await;
    s.master.send(MasterToWorker::KillExecutor {
        master_url: s.master.url(),
        app_id: "app-k".into(),
        exec_id: ExecutorId(0),
    });
    eventually("KILLED", || {
        states(&s.master).contains(&ExecutorState::Killed)
    })
    .await;
    let (_, message, exit) = s.master.executor_states().pop().unwrap();
    assert_eq!(message.as_deref(), Some("Killed by the worker"));
    assert_eq!(exit, Some(128 + 15), "SIGTERM ended it");
    assert!(!pid_alive(pid), "pid {pid} still runs");
    s.finish().await;
}

#[tokio::test]
async fn shutting_the_worker_down_kills_its_children() {
    let mut s = Setup::new("shutdown").await;
    s.launch("app-s", 0, s.binary.clone(), &[("MODE", "sleep")]);
    s.launch("app-s", 1, s.binary.clone(), &[("MODE", "sleep")]);
    let pids = [s.pid_of("app-s", 0).await, s.pid_of("app-s", 1).await];
    let state = eventually_state(s.worker(), "two running executors", |st| {
        st.executors
            .iter()
            .filter(|e| e.state == ExecutorState::Running)
            .count()
            == 2
    })
    .await;
    assert_eq!((state.cores_used, state.memory_used_mb), (2, 512));
    s.worker.take().unwrap().shutdown().await.unwrap();
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} survived the worker");
    }
    s.master.shutdown().await;
    s.driver_env.shutdown().await;
    std::fs::remove_dir_all(&s.dir).unwrap();
}

#[tokio::test]
async fn drivers_run_in_their_directory_and_report_their_final_state() {
    let s = Setup::new("driver").await;
    let driver = |supervise: bool| DriverDescription {
        mem_mb: 512,
        cores: 1,
        supervise,
        command: ember_deploy::description::Command {
            binary: s.binary.clone(),
            arguments: vec!["{{WORKER_URL}}".into(), "{{MEMORY_MB}}".into()],
            environment: vec![],
        },
    };
    s.master.send(MasterToWorker::LaunchDriver {
        driver_id: DriverId::from("driver-1"),
        driver_desc: driver(false),
    });
    let driver_states = |master: &FakeMaster| -> Vec<(DriverId, DriverState)> {
        master
            .seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Driver {
                    driver_id, state, ..
                } => Some((driver_id, state)),
                _ => None,
            })
            .collect()
    };
    eventually("driver-1 FINISHED", || !driver_states(&s.master).is_empty()).await;
    assert_eq!(
        driver_states(&s.master),
        vec![("driver-1".into(), DriverState::Finished)]
    );
    let stdout = read(&s.work().join("driver-1").join("stdout"));
    let port = s.worker().rpc_address().port;
    assert!(
        stdout.contains(&format!("args ember://Worker@127.0.0.1:{port} 512")),
        "{stdout}"
    );
    assert!(read(&s.work().join("driver-1").join("stderr")).starts_with("Launch Command: "));
    // Its log is on the worker UI.
    let (status, page) = http_get(
        s.worker().web_ui_url(),
        "/log/?driverId=driver-1&logType=stdout",
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(&format!("args ember://Worker@127.0.0.1:{port} 512")),
        "{page}"
    );

    // A long-running supervised driver, killed.
    let mut sleeping = driver(true);
    sleeping.command.environment = vec![("MODE".into(), "sleep".into())];
    s.master.send(MasterToWorker::LaunchDriver {
        driver_id: DriverId::from("driver-2"),
        driver_desc: sleeping,
    });
    let stdout = s.work().join("driver-2").join("stdout");
    eventually("driver-2 running", || read(&stdout).contains("pid ")).await;
    let pid: i32 = read(&stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .unwrap()
        .parse()
        .unwrap();
    s.pids.add(pid);
    let state = s.worker().state().await.unwrap();
    assert_eq!(state.drivers.len(), 1);
    assert_eq!((state.cores_used, state.memory_used_mb), (1, 512));
    s.master.send(MasterToWorker::KillDriver {
        driver_id: "driver-2".into(),
    });
    eventually("driver-2 KILLED", || driver_states(&s.master).len() == 2).await;
    assert_eq!(
        driver_states(&s.master)[1],
        ("driver-2".into(), DriverState::Killed)
    );
    assert!(!pid_alive(pid));
    let state = s.worker().state().await.unwrap();
    assert_eq!(state.finished_drivers.len(), 2);
    assert_eq!((state.cores_used, state.memory_used_mb), (0, 0));
    s.finish().await;
}
