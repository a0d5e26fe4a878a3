//! Shared by the in-process master tests: a real master on 127.0.0.1:0, test RpcEnvs playing
//! workers and applications, polling with a deadline, a minimal HTTP client, temp dirs.

// Each test binary uses a subset of these; they also re-export what the tests name.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub use std::future::Future;
pub use std::path::PathBuf;
pub use std::sync::{Arc, Mutex};
pub use std::time::{Duration, Instant};

pub use ember_deploy::DeployError;
pub use ember_deploy::description::{
    AppBinary, ApplicationDescription, BinaryLocation, Command, ExecutorDescription,
};
pub use ember_deploy::ids::{AppId, ExecutorId, WorkerId};
pub use ember_deploy::master::{self, MasterConfig, MasterHandle};
pub use ember_deploy::messages::{
    APP_CLIENT_ENDPOINT, AppClientMessage, AppToMaster, ClientToMaster, MASTER_ENDPOINT,
    MasterInternal, MasterMessage, MasterStateResponse, MasterToApp, MasterToWorker,
    WORKER_ENDPOINT, WorkerMessage, WorkerToMaster,
};
pub use ember_deploy::state::{ApplicationState, ExecutorState, MasterState, WorkerState};
pub use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcEndpoint, RpcEnv,
    RpcEnvConfig,
};
pub use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn conf(pairs: &[(&str, &str)]) -> Arc<EmberConf> {
    let mut conf = EmberConf::from_pairs([
        ("ember.master.host", "127.0.0.1"),
        ("ember.master.port", "0"),
        ("ember.master.ui.port", "0"),
    ]);
    for (k, v) in pairs {
        conf.set(*k, *v);
    }
    Arc::new(conf)
}

pub async fn start_master(pairs: &[(&str, &str)]) -> MasterHandle {
    let conf = conf(pairs);
    let config = MasterConfig::from_conf(&conf).expect("valid test conf");
    master::start(config, conf).await.expect("master starts")
}

pub async fn state(m: &MasterHandle) -> MasterStateResponse {
    m.master_ref()
        .ask(ClientToMaster::RequestMasterState)
        .await
        .expect("the master answers")
}

pub async fn wait_ready(m: &MasterHandle) {
    eventually("the master leads", || async {
        m.master_ref()
            .ask::<bool>(ClientToMaster::RequestReadyz)
            .await
            .unwrap_or(false)
    })
    .await;
}

/// What a fake worker or application endpoint received.
pub struct Inbox<T> {
    messages: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Self {
            messages: self.messages.clone(),
        }
    }
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self {
            messages: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> Inbox<T> {
    pub fn push(&self, m: T) {
        self.messages.lock().unwrap().push(m);
    }

    pub fn count(&self, pred: impl Fn(&T) -> bool) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| pred(m))
            .count()
    }

    pub fn find<R>(&self, f: impl Fn(&T) -> Option<R>) -> Option<R> {
        self.messages.lock().unwrap().iter().find_map(f)
    }
}

pub struct FakeWorker {
    pub id: WorkerId,
    pub inbox: Inbox<MasterToWorker>,
    /// Answer `MasterChanged` at once (with no executors).
    pub answer_master_changed: bool,
}

impl RpcEndpoint for FakeWorker {
    type Message = WorkerMessage;

    async fn receive(
        &mut self,
        _: &EndpointContext<WorkerMessage>,
        m: WorkerMessage,
    ) -> HandlerResult {
        if let WorkerMessage::Master(m) = m {
            if let MasterToWorker::MasterChanged { master, .. } = &m
                && self.answer_master_changed
            {
                master.send(WorkerToMaster::WorkerSchedulerStateResponse {
                    id: self.id.clone(),
                    executors: vec![],
                    driver_ids: vec![],
                })?;
            }
            self.inbox.push(m);
        }
        Ok(())
    }
}

/// A worker process: its own RpcEnv with a `Worker` endpoint.
pub struct Worker {
    pub env: RpcEnv,
    pub me: EndpointRef<WorkerMessage>,
    pub master: EndpointRef<MasterMessage>,
    pub id: WorkerId,
    pub inbox: Inbox<MasterToWorker>,
}

impl Worker {
    pub async fn start(id: &str, master: &RpcAddress, answer_master_changed: bool) -> Worker {
        let env = RpcEnv::create(RpcEnvConfig::new("test-worker", "127.0.0.1", 0))
            .await
            .unwrap();
        let inbox = Inbox::default();
        let me = env
            .setup_endpoint(
                WORKER_ENDPOINT,
                FakeWorker {
                    id: id.into(),
                    inbox: inbox.clone(),
                    answer_master_changed,
                },
            )
            .await
            .unwrap();
        let master = env.endpoint_ref(master.clone(), MASTER_ENDPOINT);
        Worker {
            env,
            me,
            master,
            id: id.into(),
            inbox,
        }
    }

    pub fn register(&self, cores: u32, memory_mb: u32) {
        let address = self.env.address().clone();
        self.master
            .send(WorkerToMaster::RegisterWorker {
                id: self.id.clone(),
                host: address.host.clone(),
                port: address.port,
                worker: self.me.clone(),
                cores,
                memory_mb,
                web_ui_url: "http://127.0.0.1:1".into(),
                master_address: self.master.address().clone(),
            })
            .unwrap();
    }

    pub fn registered(&self) -> usize {
        self.inbox
            .count(|m| matches!(m, MasterToWorker::RegisteredWorker { .. }))
    }
}

pub struct FakeApp {
    pub inbox: Inbox<MasterToApp>,
}

impl RpcEndpoint for FakeApp {
    type Message = AppClientMessage;

    async fn receive(
        &mut self,
        _: &EndpointContext<AppClientMessage>,
        m: AppClientMessage,
    ) -> HandlerResult {
        if let AppClientMessage::Master(m) = m {
            self.inbox.push(m);
        }
        Ok(())
    }
}

/// A driver process: its own RpcEnv with an `AppClient` endpoint.
pub struct App {
    pub env: RpcEnv,
    pub me: EndpointRef<AppClientMessage>,
    pub master: EndpointRef<MasterMessage>,
    pub inbox: Inbox<MasterToApp>,
}

impl App {
    pub async fn start(master: &RpcAddress) -> App {
        let env = RpcEnv::create(RpcEnvConfig::new("test-driver", "127.0.0.1", 0))
            .await
            .unwrap();
        let inbox = Inbox::default();
        let me = env
            .setup_endpoint(
                APP_CLIENT_ENDPOINT,
                FakeApp {
                    inbox: inbox.clone(),
                },
            )
            .await
            .unwrap();
        let master = env.endpoint_ref(master.clone(), MASTER_ENDPOINT);
        App {
            env,
            me,
            master,
            inbox,
        }
    }

    pub fn register(&self, desc: ApplicationDescription) {
        self.master
            .send(AppToMaster::RegisterApplication {
                app_desc: desc,
                driver: self.me.clone(),
            })
            .unwrap();
    }

    pub fn app_id(&self) -> Option<AppId> {
        self.inbox.find(|m| match m {
            MasterToApp::RegisteredApplication { app_id, .. } => Some(app_id.clone()),
            _ => None,
        })
    }
}

pub fn app_desc(memory_mb: u32, max_cores: Option<u32>) -> ApplicationDescription {
    ApplicationDescription {
        name: "daemon-test".into(),
        max_cores,
        memory_per_executor_mb: memory_mb,
        cores_per_executor: None,
        initial_executor_limit: None,
        command: Command {
            binary: AppBinary {
                name: "app".into(),
                digest: "00".into(),
                size: 1,
                location: BinaryLocation::LocalPath("/bin/true".into()),
            },
            arguments: vec![],
            environment: vec![],
        },
        app_ui_url: None,
        user: "tester".into(),
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub async fn http_get(base: &str, path: &str) -> (u16, String) {
    let host_port = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host_port).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// A minimal HTTP/1.1 POST without a body: (status, Location header).
pub async fn http_post(base: &str, path: &str) -> (u16, Option<String>) {
    let host_port = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host_port).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap().parse().unwrap();
    let location = response
        .lines()
        .find_map(|l| l.strip_prefix("location: ").map(str::to_owned));
    (status, location)
}

pub async fn http_json(base: &str, path: &str) -> serde_json::Value {
    let (status, body) = http_get(base, path).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        Self(std::env::temp_dir().join(format!(
            "ember-master-{tag}-{}-{}",
            std::process::id(),
            ember_deploy::ids::now_millis()
        )))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
