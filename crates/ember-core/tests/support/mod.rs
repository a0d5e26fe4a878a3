//! A fake standalone cluster for tests: a fake `Master` endpoint that grants executors and starts
//! them as a worker would (re-executing the test binary with `--exact executor_entry`), and a fake
//! `Worker` endpoint the executors watch.
//!
//! A test binary using this must define `#[test] fn executor_entry() {
//! ember_core::run_if_executor_role(); }`.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ember_core::Context;
use ember_deploy::description::ApplicationDescription;
use ember_deploy::ids::{AppId, ExecutorId as DeployExecutorId, WorkerId};
use ember_deploy::messages::{
    AppClientMessage, AppToMaster, ClientToMaster, MASTER_ENDPOINT, MasterMessage,
    MasterStateResponse, MasterToApp, WORKER_ENDPOINT, WorkerMessage,
};
use ember_deploy::state::ExecutorState;
use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcCallContext, RpcEndpoint, RpcEnv,
    RpcEnvConfig,
};

/// Deadline for anything a test waits for; things normally take milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const APP_ID: &str = "app-20260101000000-0000";

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A directory removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
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
pub struct Launched {
    pub exec_id: u32,
    pub pid: u32,
    pub dir: PathBuf,
    pub child: Arc<Mutex<Child>>,
    pub exit: Arc<Mutex<Option<i32>>>,
}

#[derive(Default)]
pub struct ClusterLog {
    pub app: Option<ApplicationDescription>,
    pub driver: Option<EndpointRef<AppClientMessage>>,
    pub unregistered: bool,
    pub executors: Vec<Launched>,
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
pub struct Cluster {
    pub runtime: tokio::runtime::Runtime,
    pub master_env: RpcEnv,
    pub worker_env: RpcEnv,
    pub log: Arc<Mutex<ClusterLog>>,
    pub stop: Arc<AtomicBool>,
    pub dir: TempDir,
}

impl Cluster {
    pub fn start(name: &str, executors: u32) -> Cluster {
        Self::start_with(name, executors, None, None)
    }

    pub fn start_with(
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

    pub fn master_url(&self) -> String {
        self.master_env.address().to_ember_url()
    }

    pub fn context(&self, extra: &[(&str, &str)]) -> Context {
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

    pub fn pids(&self) -> Vec<u32> {
        self.log
            .lock()
            .unwrap()
            .executors
            .iter()
            .map(|e| e.pid)
            .collect()
    }

    pub fn kill(&self, pid: u32) {
        let log = self.log.lock().unwrap();
        let launched = log.executors.iter().find(|e| e.pid == pid).unwrap();
        launched.child.lock().unwrap().kill().unwrap();
    }

    pub fn exit_codes(&self) -> Vec<Option<i32>> {
        self.log
            .lock()
            .unwrap()
            .executors
            .iter()
            .map(|e| *e.exit.lock().unwrap())
            .collect()
    }

    pub fn stderr_of(&self, exec_id: u32) -> String {
        let log = self.log.lock().unwrap();
        let launched = log.executors.iter().find(|e| e.exec_id == exec_id).unwrap();
        std::fs::read_to_string(launched.dir.join("stderr")).unwrap_or_default()
    }

    pub fn gates(&self) -> PathBuf {
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
#[macro_export]
macro_rules! gated_task {
    ($gates:expr) => {{
        let gates = $gates.to_string_lossy().into_owned();
        serde_closure::Fn!(move |p: usize| {
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

pub fn started_pids(gates: &Path) -> Vec<u32> {
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

/// Captures WARN and above from every test of this binary.
pub fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
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

pub struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
