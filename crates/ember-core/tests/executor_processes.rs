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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ember_core::closure::{binary_digest, digest_file};
use ember_core::scheduler::messages::{DRIVER_ENDPOINT, DriverMessage, ExecutorMessage};
use ember_core::{Context, CoreError};
use ember_deploy::description::ApplicationDescription;
use ember_deploy::ids::{AppId, ExecutorId as DeployExecutorId, WorkerId};
use ember_deploy::messages::{
    AppClientMessage, AppToMaster, ClientToMaster, MASTER_ENDPOINT, MasterMessage,
    MasterStateResponse, MasterToApp, WORKER_ENDPOINT, WorkerMessage, WorkerSummary,
};
use ember_deploy::state::{ExecutorState, MasterState, WorkerState};
use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcCallContext, RpcEndpoint, RpcEnv,
    RpcEnvConfig,
};
use serde_closure::Fn;

/// Runs only in executor processes: the entry point for the executor role.
#[test]
fn executor_entry() {
    ember_core::run_if_executor_role();
}

/// Deadline for anything a test waits for; things normally take milliseconds.
const DEADLINE: Duration = Duration::from_secs(60);
const APP_ID: &str = "app-20260101000000-0000";

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ember-exec-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An executor process the fake worker started.
struct Launched {
    exec_id: u32,
    pid: u32,
    dir: PathBuf,
    child: Arc<Mutex<Child>>,
    exit: Arc<Mutex<Option<i32>>>,
}

#[derive(Default)]
struct ClusterLog {
    app: Option<ApplicationDescription>,
    driver: Option<EndpointRef<AppClientMessage>>,
    unregistered: bool,
    executors: Vec<Launched>,
}

#[derive(Clone)]
struct FakeConfig {
    executors: u32,
    binary: PathBuf,
    state: Option<MasterStateResponse>,
    worker_url: String,
    work_dir: PathBuf,
}

struct FakeMaster {
    config: FakeConfig,
    log: Arc<Mutex<ClusterLog>>,
    stop: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
}

impl FakeMaster {
    fn launch(
        &self,
        exec_id: u32,
        desc: &ApplicationDescription,
        driver: &EndpointRef<AppClientMessage>,
    ) -> Launched {
        let dir = self.config.work_dir.join(APP_ID).join(exec_id.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let substitute = |v: &str| {
            v.replace("{{EXECUTOR_ID}}", &exec_id.to_string())
                .replace("{{HOSTNAME}}", "127.0.0.1")
                .replace("{{CORES}}", "1")
                .replace("{{MEMORY_MB}}", "1024")
                .replace("{{APP_ID}}", APP_ID)
                .replace("{{WORKER_URL}}", &self.config.worker_url)
        };
        let mut command = Command::new(&self.config.binary);
        command.args([
            "--exact",
            "executor_entry",
            "--nocapture",
            "--test-threads=1",
        ]);
        for (key, value) in &desc.command.environment {
            command.env(key, substitute(value));
        }
        let child = command
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("start an executor process");
        let pid = child.id();
        let child = Arc::new(Mutex::new(child));
        let exit = Arc::new(Mutex::new(None));
        // The worker's ExecutorRunner: report the process's exit.
        let (watched, exit_slot, stop, driver, runtime) = (
            child.clone(),
            exit.clone(),
            self.stop.clone(),
            driver.clone(),
            self.runtime.clone(),
        );
        std::thread::spawn(move || {
            let _runtime = runtime.enter();
            while !stop.load(Ordering::SeqCst) {
                let status = watched.lock().unwrap().try_wait();
                if let Ok(Some(status)) = status {
                    *exit_slot.lock().unwrap() = Some(status.code().unwrap_or(-1));
                    let _ = driver.send(MasterToApp::ExecutorUpdated {
                        id: DeployExecutorId(exec_id),
                        state: ExecutorState::Exited,
                        message: Some(format!("Command exited with {status}")),
                        exit_status: Some(status.code().unwrap_or(-1)),
                        worker_host: None,
                    });
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Launched {
            exec_id,
            pid,
            dir,
            child,
            exit,
        }
    }
}

impl RpcEndpoint for FakeMaster {
    type Message = MasterMessage;

    async fn receive(
        &mut self,
        ctx: &EndpointContext<MasterMessage>,
        message: MasterMessage,
    ) -> HandlerResult {
        match message {
            MasterMessage::App(AppToMaster::RegisterApplication { app_desc, driver }) => {
                driver.send(MasterToApp::RegisteredApplication {
                    app_id: AppId::from(APP_ID),
                    master: ctx.self_ref().clone(),
                })?;
                for exec_id in 0..self.config.executors {
                    driver.send(MasterToApp::ExecutorAdded {
                        id: DeployExecutorId(exec_id),
                        worker_id: WorkerId::from("worker-fake"),
                        host_port: "127.0.0.1:1".into(),
                        cores: 1,
                        memory_mb: 1024,
                    })?;
                    let launched = self.launch(exec_id, &app_desc, &driver);
                    self.log.lock().unwrap().executors.push(launched);
                }
                let mut log = self.log.lock().unwrap();
                log.app = Some(app_desc);
                log.driver = Some(driver);
            }
            MasterMessage::App(AppToMaster::UnregisterApplication { .. }) => {
                self.log.lock().unwrap().unregistered = true;
            }
            _ => {}
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _ctx: &EndpointContext<MasterMessage>,
        message: MasterMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match (message, &self.config.state) {
            (MasterMessage::Client(ClientToMaster::RequestMasterState), Some(state)) => {
                reply.reply(state.clone())
            }
            _ => reply.send_error(&"not supported by the fake master"),
        }
        Ok(())
    }
}

/// The fake worker endpoint executors watch.
struct FakeWorker;

impl RpcEndpoint for FakeWorker {
    type Message = WorkerMessage;

    async fn receive(
        &mut self,
        _: &EndpointContext<WorkerMessage>,
        _: WorkerMessage,
    ) -> HandlerResult {
        Ok(())
    }
}

/// A fake master and worker; kills every executor process it started when dropped.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    master_env: RpcEnv,
    worker_env: RpcEnv,
    log: Arc<Mutex<ClusterLog>>,
    stop: Arc<AtomicBool>,
    dir: TempDir,
}

impl Cluster {
    fn start(name: &str, executors: u32) -> Cluster {
        Self::start_with(name, executors, None, None)
    }

    fn start_with(
        name: &str,
        executors: u32,
        binary: Option<PathBuf>,
        state: Option<MasterStateResponse>,
    ) -> Cluster {
        let dir = TempDir::new(name);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(ClusterLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (master_env, worker_env) = runtime.block_on(async {
            let worker_env = RpcEnv::create(RpcEnvConfig::new("fake-worker", "127.0.0.1", 0))
                .await
                .unwrap();
            let worker = worker_env
                .setup_endpoint(WORKER_ENDPOINT, FakeWorker)
                .await
                .unwrap();
            let master_env = RpcEnv::create(RpcEnvConfig::new("fake-master", "127.0.0.1", 0))
                .await
                .unwrap();
            let config = FakeConfig {
                executors,
                binary: binary.unwrap_or_else(|| std::env::current_exe().unwrap()),
                state,
                worker_url: worker.url(),
                work_dir: dir.0.join("work"),
            };
            master_env
                .setup_endpoint(
                    MASTER_ENDPOINT,
                    FakeMaster {
                        config,
                        log: log.clone(),
                        stop: stop.clone(),
                        runtime: tokio::runtime::Handle::current(),
                    },
                )
                .await
                .unwrap();
            (master_env, worker_env)
        });
        Cluster {
            runtime,
            master_env,
            worker_env,
            log,
            stop,
            dir,
        }
    }

    fn master_url(&self) -> String {
        self.master_env.address().to_ember_url()
    }

    fn context(&self, extra: &[(&str, &str)]) -> Context {
        let mut conf = EmberConf::from_pairs([
            ("ember.master", self.master_url().as_str()),
            ("ember.app.name", "executor-process-test"),
            ("ember.driver.host", "127.0.0.1"),
            ("ember.ui.showConsoleProgress", "false"),
        ]);
        for (k, v) in extra {
            conf.set(*k, *v);
        }
        Context::new(conf).expect("the driver starts")
    }

    fn pids(&self) -> Vec<u32> {
        self.log
            .lock()
            .unwrap()
            .executors
            .iter()
            .map(|e| e.pid)
            .collect()
    }

    fn kill(&self, pid: u32) {
        let log = self.log.lock().unwrap();
        let launched = log.executors.iter().find(|e| e.pid == pid).unwrap();
        launched.child.lock().unwrap().kill().unwrap();
    }

    fn exit_codes(&self) -> Vec<Option<i32>> {
        self.log
            .lock()
            .unwrap()
            .executors
            .iter()
            .map(|e| *e.exit.lock().unwrap())
            .collect()
    }

    fn stderr_of(&self, exec_id: u32) -> String {
        let log = self.log.lock().unwrap();
        let launched = log.executors.iter().find(|e| e.exec_id == exec_id).unwrap();
        std::fs::read_to_string(launched.dir.join("stderr")).unwrap_or_default()
    }

    fn gates(&self) -> PathBuf {
        let gates = self.dir.0.join("gates");
        std::fs::create_dir_all(&gates).unwrap();
        gates
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for launched in &self.log.lock().unwrap().executors {
            let mut child = launched.child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
        let (master, worker) = (self.master_env.clone(), self.worker_env.clone());
        self.runtime.block_on(async move {
            master.shutdown().await;
            worker.shutdown().await;
        });
    }
}

/// A task that marks itself started in `gates` and waits until `gates/release` exists; returns
/// its partition and the executor's pid.
macro_rules! gated_task {
    ($gates:expr) => {{
        let gates = $gates.to_string_lossy().into_owned();
        Fn!(move |p: usize| {
            let pid = std::process::id();
            let dir = std::path::Path::new(&gates);
            std::fs::write(dir.join(format!("started-{}-{}", pid, p)), b"").unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !dir.join("release").exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            (p, pid)
        })
    }};
}

fn started_pids(gates: &Path) -> Vec<u32> {
    std::fs::read_dir(gates)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let name = e.ok()?.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("started-")?
                        .split('-')
                        .next()?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default()
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

/// Captures WARN and above from every test of this binary.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || SharedWriter(writer.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
