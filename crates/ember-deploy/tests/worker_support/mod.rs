//! Shared by the worker tests: a fake master, worker configuration, polling, HTTP GET, cleanup.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_deploy::description::{AppBinary, ApplicationDescription, Command};
use ember_deploy::ids::{AppId, DriverId, ExecutorId, WorkerId};
use ember_deploy::messages::{
    MASTER_ENDPOINT, MasterMessage, MasterToWorker, WorkerMessage, WorkerToMaster,
};
use ember_deploy::state::{DriverState, ExecutorState};
use ember_deploy::worker::{WorkerConfig, WorkerHandle};
use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext,
    RpcEndpoint, RpcEnv, RpcEnvConfig,
};

/// How the fake master answers registrations.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Accept,
    Refuse(String),
    Standby,
    Silent,
}

/// What the fake master received.
#[derive(Debug, Clone)]
pub enum Seen {
    Register {
        id: WorkerId,
        host: String,
        port: u16,
        cores: u32,
        memory_mb: u32,
        web_ui_url: String,
        master_address: RpcAddress,
        at: Instant,
    },
    Heartbeat(WorkerId),
    LatestState(WorkerId),
    SchedulerState(WorkerId),
    Executor {
        app_id: AppId,
        exec_id: ExecutorId,
        state: ExecutorState,
        message: Option<String>,
        exit_status: Option<i32>,
    },
    Driver {
        driver_id: DriverId,
        state: DriverState,
        exception: Option<String>,
    },
}

#[derive(Debug, Default)]
pub struct Shared {
    pub seen: Mutex<Vec<Seen>>,
    pub answer: Mutex<Option<Answer>>,
    pub worker: Mutex<Option<EndpointRef<WorkerMessage>>>,
    /// How many of the next ExecutorStateChanged asks to fail.
    pub fail_state_asks: Mutex<u32>,
    /// How many were failed.
    pub failed_state_asks: Mutex<u32>,
}

struct FakeMasterEndpoint {
    shared: Arc<Shared>,
}

impl RpcEndpoint for FakeMasterEndpoint {
    type Message = MasterMessage;

    async fn receive(
        &mut self,
        ctx: &EndpointContext<MasterMessage>,
        message: MasterMessage,
    ) -> HandlerResult {
        let MasterMessage::Worker(message) = message else {
            return Ok(());
        };
        let seen = match message {
            WorkerToMaster::RegisterWorker {
                id,
                host,
                port,
                worker,
                cores,
                memory_mb,
                web_ui_url,
                master_address,
            } => {
                *self.shared.worker.lock().unwrap() = Some(worker.clone());
                let answer = self
                    .shared
                    .answer
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or(Answer::Accept);
                match answer {
                    Answer::Accept => worker.send(MasterToWorker::RegisteredWorker {
                        master: ctx.self_ref().clone(),
                        master_web_ui_url: "http://fake-master:8080".into(),
                        master_address: master_address.clone(),
                        duplicate: false,
                    })?,
                    Answer::Refuse(message) => {
                        worker.send(MasterToWorker::RegisterWorkerFailed { message })?
                    }
                    Answer::Standby => worker.send(MasterToWorker::MasterInStandby)?,
                    Answer::Silent => {}
                }
                Seen::Register {
                    id,
                    host,
                    port,
                    cores,
                    memory_mb,
                    web_ui_url,
                    master_address,
                    at: Instant::now(),
                }
            }
            WorkerToMaster::Heartbeat { worker_id, .. } => Seen::Heartbeat(worker_id),
            WorkerToMaster::WorkerLatestState { id, .. } => Seen::LatestState(id),
            WorkerToMaster::WorkerSchedulerStateResponse { id, .. } => Seen::SchedulerState(id),
            WorkerToMaster::DriverStateChanged {
                driver_id,
                state,
                exception,
            } => Seen::Driver {
                driver_id,
                state,
                exception,
            },
            _ => return Ok(()),
        };
        self.shared.seen.lock().unwrap().push(seen);
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        ctx: &EndpointContext<MasterMessage>,
        message: MasterMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match message {
            MasterMessage::Worker(WorkerToMaster::ExecutorStateChanged {
                app_id,
                exec_id,
                state,
                message,
                exit_status,
            }) => {
                {
                    let mut to_fail = self.shared.fail_state_asks.lock().unwrap();
                    if *to_fail > 0 {
                        *to_fail -= 1;
                        *self.shared.failed_state_asks.lock().unwrap() += 1;
                        return Err("the fake master refuses this state change".into());
                    }
                }
                self.shared.seen.lock().unwrap().push(Seen::Executor {
                    app_id,
                    exec_id,
                    state,
                    message,
                    exit_status,
                });
                reply.reply(true);
                Ok(())
            }
            other => {
                self.receive(ctx, other).await?;
                reply.reply(true);
                Ok(())
            }
        }
    }
}

/// A Master endpoint that records what workers send and answers registrations as told.
pub struct FakeMaster {
    pub env: RpcEnv,
    pub shared: Arc<Shared>,
    pub master_ref: EndpointRef<MasterMessage>,
}

impl FakeMaster {
    pub async fn start(answer: Answer) -> FakeMaster {
        Self::start_on(0, answer).await
    }

    pub async fn start_on(port: u16, answer: Answer) -> FakeMaster {
        let env = RpcEnv::create(RpcEnvConfig::new("fake-master", "127.0.0.1", port))
            .await
            .expect("fake master RpcEnv");
        let shared = Arc::new(Shared::default());
        *shared.answer.lock().unwrap() = Some(answer);
        let master_ref = env
            .setup_endpoint(
                MASTER_ENDPOINT,
                FakeMasterEndpoint {
                    shared: shared.clone(),
                },
            )
            .await
            .unwrap();
        FakeMaster {
            env,
            shared,
            master_ref,
        }
    }

    pub fn address(&self) -> RpcAddress {
        self.env.address().clone()
    }

    pub fn url(&self) -> String {
        self.env.address().to_ember_url()
    }

    pub fn set_answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = Some(answer);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn registrations(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Register { .. }))
            .count()
    }

    pub fn heartbeats(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| matches!(s, Seen::Heartbeat(_)))
            .count()
    }

    pub fn executor_states(&self) -> Vec<(ExecutorState, Option<String>, Option<i32>)> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Executor {
                    state,
                    message,
                    exit_status,
                    ..
                } => Some((state, message, exit_status)),
                _ => None,
            })
            .collect()
    }

    /// The worker ref from the latest registration, bound to this master's RpcEnv.
    pub fn worker(&self) -> EndpointRef<WorkerMessage> {
        self.shared
            .worker
            .lock()
            .unwrap()
            .clone()
            .expect("a worker registered")
    }

    pub fn send(&self, message: MasterToWorker) {
        self.worker().send(message).expect("send to the worker");
    }

    pub async fn shutdown(&self) {
        self.env.shutdown().await;
    }
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ember-worker-test-{name}-{}-{}",
        std::process::id(),
        ember_deploy::ids::now_millis()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A configuration for a worker on 127.0.0.1 with short intervals; `extra` overrides.
pub fn worker_config(
    work_dir: &Path,
    masters: Vec<RpcAddress>,
    extra: &[(&str, &str)],
) -> (WorkerConfig, Arc<EmberConf>) {
    let mut conf = EmberConf::new();
    conf.set("ember.worker.host", "127.0.0.1")
        .set("ember.worker.port", "0")
        .set("ember.worker.ui.port", "0")
        .set("ember.worker.cores", "4")
        .set("ember.worker.memory", "4g")
        .set("ember.worker.dir", work_dir.display().to_string())
        .set("ember.worker.timeout", "400ms")
        .set("ember.worker.registration.initialInterval", "50ms")
        .set("ember.worker.registration.prolongedInterval", "100ms")
        .set("ember.worker.executorTerminateTimeout", "3s")
        .set("ember.rpc.connect.timeout", "2s");
    for (k, v) in extra {
        conf.set(*k, *v);
    }
    let config = WorkerConfig::from_conf(&conf, masters).expect("valid worker config");
    (config, Arc::new(conf))
}

/// Polls `cond` every 5 ms until it holds; fails after 20 s naming `what`.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the worker's state until `cond` holds on it.
pub async fn eventually_state(
    worker: &WorkerHandle,
    what: &str,
    cond: impl Fn(&ember_deploy::messages::WorkerStateResponse) -> bool,
) -> ember_deploy::messages::WorkerStateResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = worker.state().await.expect("worker state");
        if cond(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An application whose executors run `binary` with `args` and `env`.
pub fn app_desc(binary: AppBinary, args: &[&str], env: &[(&str, &str)]) -> ApplicationDescription {
    ApplicationDescription {
        name: "test-app".into(),
        max_cores: Some(4),
        memory_per_executor_mb: 256,
        cores_per_executor: Some(1),
        initial_executor_limit: None,
        command: Command {
            binary,
            arguments: args.iter().map(|s| s.to_string()).collect(),
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        app_ui_url: None,
        user: "tester".into(),
    }
}

/// A plain HTTP/1.1 GET; returns (status, body).
pub async fn http_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host_port = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host_port)
        .await
        .expect("connect to the UI");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Kills the listed pids when dropped, so a failing test leaves no process behind.
#[derive(Debug, Default)]
pub struct PidGuard(pub Mutex<Vec<i32>>);

impl PidGuard {
    pub fn add(&self, pid: i32) {
        self.0.lock().unwrap().push(pid);
    }
}

impl Drop for PidGuard {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap().iter() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether a process with this pid exists (a reaped child no longer does).
pub fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
