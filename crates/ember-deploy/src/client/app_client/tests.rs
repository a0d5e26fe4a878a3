//! The AppClient against test masters in one process: endpoints in the masters' place that
//! record what they hear and answer as a master would.

use std::time::Instant;

use ember_rpc::RpcEnvConfig;

use super::*;
use crate::description::{AppBinary, BinaryLocation, Command};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }
    fn has(&self, event: &str) -> bool {
        self.0.lock().unwrap().iter().any(|e| e == event)
    }
}

impl AppClientListener for Recorder {
    fn connected(&self, app_id: &AppId) {
        self.push(format!("connected {app_id}"));
    }
    fn disconnected(&self) {
        self.push("disconnected".into());
    }
    fn dead(&self, reason: &str) {
        self.push(format!("dead {reason}"));
    }
    fn executor_added(&self, id: ExecutorId, worker: &WorkerId, _: &str, cores: u32, _: u32) {
        self.push(format!("added {id} on {worker} with {cores}"));
    }
    fn executor_removed(
        &self,
        id: ExecutorId,
        state: ExecutorState,
        message: &str,
        exit_status: Option<i32>,
        _: Option<&str>,
    ) {
        self.push(format!("removed {id} {state} {message} {exit_status:?}"));
    }
    fn worker_removed(&self, worker_id: &WorkerId, host: &str, _: &str) {
        self.push(format!("worker removed {worker_id} {host}"));
    }
}

/// A master that records what it hears and, if `respond`, accepts the application.
struct FakeMaster {
    respond: bool,
    seen: Arc<Recorder>,
    driver: Arc<Mutex<Option<EndpointRef<AppClientMessage>>>>,
}

impl RpcEndpoint for FakeMaster {
    type Message = MasterMessage;

    async fn receive(
        &mut self,
        ctx: &EndpointContext<MasterMessage>,
        message: MasterMessage,
    ) -> HandlerResult {
        match message {
            MasterMessage::App(AppToMaster::RegisterApplication { driver, .. }) => {
                self.seen.push("register".into());
                if self.respond {
                    driver.send(MasterToApp::RegisteredApplication {
                        app_id: AppId::from("app-1"),
                        master: ctx.self_ref().clone(),
                    })?;
                }
                *self.driver.lock().unwrap() = Some(driver);
            }
            MasterMessage::App(AppToMaster::MasterChangeAcknowledged { app_id }) => {
                self.seen.push(format!("ack {app_id}"));
            }
            MasterMessage::App(AppToMaster::UnregisterApplication { app_id }) => {
                self.seen.push(format!("unregister {app_id}"));
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
        match message {
            MasterMessage::App(AppToMaster::RequestExecutors {
                app_id,
                requested_total,
            }) => {
                self.seen
                    .push(format!("request {app_id} {requested_total}"));
                reply.reply(true);
            }
            MasterMessage::App(AppToMaster::KillExecutors {
                app_id,
                executor_ids,
            }) => {
                self.seen.push(format!("kill {app_id} {executor_ids:?}"));
                reply.reply(true);
            }
            other => reply.send_error(&format!("unexpected {other:?}")),
        }
        Ok(())
    }
}

type DriverSlot = Arc<Mutex<Option<EndpointRef<AppClientMessage>>>>;

async fn master(
    respond: bool,
) -> (
    RpcEnv,
    EndpointRef<MasterMessage>,
    Arc<Recorder>,
    DriverSlot,
) {
    let env = RpcEnv::create(RpcEnvConfig::new("master", "127.0.0.1", 0))
        .await
        .unwrap();
    let seen = Arc::new(Recorder::default());
    let driver = Arc::new(Mutex::new(None));
    let master = env
        .setup_endpoint(
            MASTER_ENDPOINT,
            FakeMaster {
                respond,
                seen: seen.clone(),
                driver: driver.clone(),
            },
        )
        .await
        .unwrap();
    (env, master, seen, driver)
}

fn app_desc() -> ApplicationDescription {
    ApplicationDescription {
        name: "test-app".into(),
        max_cores: None,
        memory_per_executor_mb: 512,
        cores_per_executor: Some(1),
        initial_executor_limit: None,
        command: Command {
            binary: AppBinary {
                name: "app".into(),
                digest: "0".repeat(64),
                size: 1,
                location: BinaryLocation::LocalPath("/bin/app".into()),
            },
            arguments: vec![],
            environment: vec![],
        },
        app_ui_url: None,
        user: "me".into(),
    }
}

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A driver's RpcEnv with an AppClient registering with the master in `master_env`, and
/// what the client tells its listener.
async fn driver(master_env: &RpcEnv, conf: AppClientConf) -> (RpcEnv, Arc<Recorder>, AppClient) {
    driver_of(&[master_env], conf).await
}

/// As [`driver`], registering with every master in `master_envs`.
async fn driver_of(
    master_envs: &[&RpcEnv],
    conf: AppClientConf,
) -> (RpcEnv, Arc<Recorder>, AppClient) {
    let env = RpcEnv::create(RpcEnvConfig::new("driver", "127.0.0.1", 0))
        .await
        .unwrap();
    let listener = Arc::new(Recorder::default());
    let client = AppClient::start(
        &env,
        master_envs.iter().map(|e| e.address().clone()).collect(),
        app_desc(),
        listener.clone(),
        conf,
    )
    .await
    .unwrap();
    (env, listener, client)
}

fn conf(timeout_ms: u64, retries: u32) -> AppClientConf {
    AppClientConf {
        registration_timeout: Duration::from_millis(timeout_ms),
        registration_retries: retries,
    }
}

#[tokio::test]
async fn registers_relays_follows_a_new_master_and_unregisters() {
    let (m1_env, _m1, m1_seen, driver_slot) = master(true).await;
    let (m2_env, m2, m2_seen, _) = master(true).await;
    let (env, listener, client) = driver(&m1_env, conf(10_000, 3)).await;
    eventually("registration", || listener.has("connected app-1")).await;
    assert_eq!(client.app_id(), Some(AppId::from("app-1")));
    assert_eq!(client.active_master().as_ref(), Some(m1_env.address()));
    assert!(m1_seen.has("register"));

    let driver = driver_slot.lock().unwrap().clone().unwrap();
    driver
        .send(MasterToApp::ExecutorAdded {
            id: ExecutorId(0),
            worker_id: WorkerId::from("w1"),
            host_port: "h:1".into(),
            cores: 2,
            memory_mb: 512,
        })
        .unwrap();
    driver
        .send(MasterToApp::ExecutorUpdated {
            id: ExecutorId(0),
            state: ExecutorState::Running,
            message: None,
            exit_status: None,
            worker_host: None,
        })
        .unwrap();
    driver
        .send(MasterToApp::ExecutorUpdated {
            id: ExecutorId(0),
            state: ExecutorState::Exited,
            message: Some("Command exited with code 1".into()),
            exit_status: Some(1),
            worker_host: None,
        })
        .unwrap();
    driver
        .send(MasterToApp::WorkerRemoved {
            id: WorkerId::from("w1"),
            host: "h".into(),
            message: "gone".into(),
        })
        .unwrap();
    eventually("the worker removal", || listener.has("worker removed w1 h")).await;
    assert!(listener.has("added 0 on w1 with 2"));
    assert!(listener.has("removed 0 EXITED Command exited with code 1 Some(1)"));
    // RUNNING is not a removal.
    assert_eq!(
        listener
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.starts_with("removed"))
            .count(),
        1
    );

    // Spark parity: StandaloneAppClient answers MasterChanged with MasterChangeAcknowledged.
    driver
        .send(MasterToApp::MasterChanged {
            master: m1_env.endpoint_ref(m2_env.address().clone(), MASTER_ENDPOINT),
            master_web_ui_url: "http://m2".into(),
        })
        .unwrap();
    eventually("the acknowledgement", || m2_seen.has("ack app-1")).await;
    assert_eq!(client.active_master().as_ref(), Some(m2.address()));

    client.stop().await;
    eventually("unregistration", || m2_seen.has("unregister app-1")).await;
    assert!(!m1_seen.has("unregister app-1"));
    for e in [env, m1_env, m2_env] {
        e.shutdown().await;
    }
}

#[tokio::test]
async fn gives_up_when_no_master_answers() {
    let (m_env, _m, seen, _) = master(false).await;
    let (env, listener, _client) = driver(&m_env, conf(20, 3)).await;
    eventually("giving up", || {
        listener.has("dead All masters are unresponsive! Giving up.")
    })
    .await;
    assert_eq!(
        seen.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == "register")
            .count(),
        3,
        "three rounds of registration"
    );
    env.shutdown().await;
    m_env.shutdown().await;
}

#[tokio::test]
async fn application_removed_is_fatal() {
    let (m_env, _m, _seen, driver_slot) = master(true).await;
    let (env, listener, client) = driver(&m_env, conf(10_000, 3)).await;
    eventually("registration", || listener.has("connected app-1")).await;
    let driver = driver_slot.lock().unwrap().clone().unwrap();
    driver
        .send(MasterToApp::ApplicationRemoved {
            message: "KILLED".into(),
        })
        .unwrap();
    eventually("death", || {
        listener.has("dead Master removed our application: KILLED")
    })
    .await;
    client.stop().await;
    env.shutdown().await;
    m_env.shutdown().await;
}

#[tokio::test]
async fn registers_with_every_master_and_follows_the_one_that_answers() {
    // Spark parity: StandaloneAppClient.registerWithMaster sends to every master at once; a
    // standby master does not answer, the leader does.
    let (standby_env, _standby, standby_seen, _) = master(false).await;
    let (leader_env, _leader, leader_seen, _) = master(true).await;
    let (env, listener, client) = driver_of(&[&standby_env, &leader_env], conf(10_000, 3)).await;
    eventually("registration", || listener.has("connected app-1")).await;
    assert!(
        standby_seen.has("register"),
        "the standby master was asked too"
    );
    assert!(leader_seen.has("register"));
    assert_eq!(client.active_master().as_ref(), Some(leader_env.address()));
    client.stop().await;
    eventually("unregistration", || leader_seen.has("unregister app-1")).await;
    assert!(!standby_seen.has("unregister app-1"));
    for e in [env, standby_env, leader_env] {
        e.shutdown().await;
    }
}

#[tokio::test]
async fn executor_requests_go_to_the_master_once_it_accepted_the_application() {
    let (silent_env, _silent, silent_seen, _) = master(false).await;
    let (env, _listener, client) = driver(&silent_env, conf(10_000, 3)).await;
    // Not registered yet: nothing to ask, and the answer says so.
    assert!(!client.request_total_executors(3).await.unwrap());
    assert!(!client.kill_executors(vec![ExecutorId(1)]).await.unwrap());
    assert!(
        !silent_seen
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("request")),
        "nothing reached the master"
    );
    client.stop().await;
    env.shutdown().await;
    silent_env.shutdown().await;

    let (m_env, _m, seen, _) = master(true).await;
    let (env, listener, client) = driver(&m_env, conf(10_000, 3)).await;
    eventually("registration", || listener.has("connected app-1")).await;
    assert!(client.request_total_executors(3).await.unwrap());
    assert!(
        client
            .kill_executors(vec![ExecutorId(0), ExecutorId(2)])
            .await
            .unwrap()
    );
    assert!(seen.has("request app-1 3"));
    assert!(seen.has("kill app-1 [0, 2]"));
    client.stop().await;
    env.shutdown().await;
    m_env.shutdown().await;
}
