//! The application client: registers a driver's application with the masters and relays what
//! they say about it.
//!
//! Spark counterpart: `StandaloneAppClient` (its `ClientEndpoint`) and
//! `StandaloneAppClientListener`.
//!
//! ```text
//!   on_start ──RegisterApplication to every master──▶ waiting
//!   waiting ──RegisteredApplication(app_id, master)──▶ registered ──▶ listener.connected
//!   waiting ──no answer in ember.app.registration.timeout──▶ again, up to
//!             ember.app.registration.retries rounds ──▶ dead ("All masters are unresponsive")
//!   registered ──ExecutorAdded / ExecutorUpdated / WorkerRemoved──▶ listener
//!   registered ──MasterChanged──▶ MasterChangeAcknowledged to the new master
//!   registered ──ApplicationRemoved──▶ dead ("Master removed our application: …")
//!   Stop ──▶ UnregisterApplication to the master, endpoint stops
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext,
    RpcEndpoint, RpcEnv, TimerHandle,
};
use tracing::{debug, error, info, warn};

use crate::description::ApplicationDescription;
use crate::error::DeployError;
use crate::ids::{AppId, ExecutorId, WorkerId};
use crate::messages::{
    APP_CLIENT_ENDPOINT, AppClientInternal, AppClientMessage, AppToMaster, MASTER_ENDPOINT,
    MasterMessage, MasterToApp,
};
use crate::state::ExecutorState;

use super::{APP_REGISTRATION_RETRIES, APP_REGISTRATION_TIMEOUT};

/// What the AppClient tells its driver. Called on the AppClient's task: implementations must
/// not block (send a message or flip a flag).
pub trait AppClientListener: Send + Sync + 'static {
    /// A master accepted the application.
    fn connected(&self, app_id: &AppId);
    /// The connection to the master was lost; a new master may take over.
    fn disconnected(&self);
    /// The application cannot go on (removed by the master, or no master answered).
    fn dead(&self, reason: &str);
    /// The master granted an executor (its worker is starting it).
    fn executor_added(
        &self,
        id: ExecutorId,
        worker_id: &WorkerId,
        host_port: &str,
        cores: u32,
        memory_mb: u32,
    );
    /// An executor ended.
    fn executor_removed(
        &self,
        id: ExecutorId,
        state: ExecutorState,
        message: &str,
        exit_status: Option<i32>,
        worker_host: Option<&str>,
    );
    /// A worker was lost.
    fn worker_removed(&self, worker_id: &WorkerId, host: &str, message: &str);
}

/// The AppClient's settings.
#[derive(Debug, Clone, Copy)]
pub struct AppClientConf {
    /// `ember.app.registration.timeout`.
    pub registration_timeout: Duration,
    /// `ember.app.registration.retries`.
    pub registration_retries: u32,
}

impl AppClientConf {
    /// Reads the settings.
    pub fn from_conf(conf: &EmberConf) -> Result<Self, DeployError> {
        Ok(Self {
            registration_timeout: conf.get(&APP_REGISTRATION_TIMEOUT)?,
            registration_retries: conf.get(&APP_REGISTRATION_RETRIES)?.max(1),
        })
    }
}

/// What the AppClient knows, readable from outside its endpoint.
#[derive(Debug, Default)]
pub struct AppClientState {
    app_id: Option<AppId>,
    master: Option<RpcAddress>,
}

struct AppClientEndpoint {
    masters: Vec<RpcAddress>,
    app_desc: ApplicationDescription,
    listener: Arc<dyn AppClientListener>,
    conf: AppClientConf,
    state: Arc<Mutex<AppClientState>>,
    master: Option<EndpointRef<MasterMessage>>,
    registered: bool,
    rounds: u32,
    retry_timer: Option<TimerHandle>,
    dead: bool,
}

impl AppClientEndpoint {
    fn register_with_masters(&mut self, ctx: &EndpointContext<AppClientMessage>) {
        self.rounds += 1;
        for address in &self.masters {
            info!(master = %address.to_ember_url(), app = %self.app_desc.name,
                round = self.rounds, "registering the application with the master");
            let master: EndpointRef<MasterMessage> =
                ctx.env().endpoint_ref(address.clone(), MASTER_ENDPOINT);
            let message = AppToMaster::RegisterApplication {
                app_desc: self.app_desc.clone(),
                driver: ctx.self_ref().clone(),
            };
            if let Err(e) = master.send(message) {
                warn!(master = %address, error = %e.error, "could not send the registration");
            }
        }
        self.retry_timer = Some(ctx.schedule_once(
            self.conf.registration_timeout,
            AppClientMessage::Internal(AppClientInternal::RetryRegistration),
        ));
    }

    fn mark_dead(&mut self, ctx: &EndpointContext<AppClientMessage>, reason: &str) {
        if self.dead {
            return;
        }
        self.dead = true;
        self.retry_timer = None;
        error!(%reason, "application has been killed");
        self.listener.dead(reason);
        ctx.stop_self();
    }

    fn app_id(&self) -> Option<AppId> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .app_id
            .clone()
    }

    fn unregister(&mut self) {
        if let (Some(master), Some(app_id)) = (&self.master, self.app_id())
            && self.registered
        {
            info!(%app_id, "unregistering the application");
            let _ = master.send(AppToMaster::UnregisterApplication { app_id });
            self.registered = false;
        }
    }

    fn handle_master(&mut self, ctx: &EndpointContext<AppClientMessage>, message: MasterToApp) {
        match message {
            MasterToApp::RegisteredApplication { app_id, master } => {
                info!(%app_id, master = %master.address(), "registered the application");
                self.registered = true;
                self.retry_timer = None;
                {
                    let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    state.app_id = Some(app_id.clone());
                    state.master = Some(master.address().clone());
                }
                self.master = Some(master);
                self.listener.connected(&app_id);
            }
            MasterToApp::ApplicationRemoved { message } => {
                self.registered = false;
                self.mark_dead(ctx, &format!("Master removed our application: {message}"));
            }
            MasterToApp::ExecutorAdded {
                id,
                worker_id,
                host_port,
                cores,
                memory_mb,
            } => {
                info!(executor_id = %id, %worker_id, %host_port, cores, memory_mb,
                    "executor added");
                self.listener
                    .executor_added(id, &worker_id, &host_port, cores, memory_mb);
            }
            MasterToApp::ExecutorUpdated {
                id,
                state,
                message,
                exit_status,
                worker_host,
            } => {
                let message = message.unwrap_or_default();
                info!(executor_id = %id, %state, %message, ?exit_status, "executor updated");
                if state.is_finished() {
                    self.listener.executor_removed(
                        id,
                        state,
                        &message,
                        exit_status,
                        worker_host.as_deref(),
                    );
                }
            }
            MasterToApp::WorkerRemoved { id, host, message } => {
                info!(worker_id = %id, %host, %message, "worker removed");
                self.listener.worker_removed(&id, &host, &message);
            }
            MasterToApp::MasterChanged {
                master,
                master_web_ui_url,
            } => {
                info!(master = %master.address(), %master_web_ui_url, "master changed");
                self.state.lock().unwrap_or_else(|e| e.into_inner()).master =
                    Some(master.address().clone());
                if let Some(app_id) = self.app_id() {
                    let _ = master.send(AppToMaster::MasterChangeAcknowledged { app_id });
                }
                self.master = Some(master);
                self.registered = true;
            }
        }
    }
}

impl RpcEndpoint for AppClientEndpoint {
    type Message = AppClientMessage;

    async fn on_start(&mut self, ctx: &EndpointContext<AppClientMessage>) -> HandlerResult {
        self.register_with_masters(ctx);
        Ok(())
    }

    async fn receive(
        &mut self,
        ctx: &EndpointContext<AppClientMessage>,
        message: AppClientMessage,
    ) -> HandlerResult {
        match message {
            AppClientMessage::Master(message) => self.handle_master(ctx, message),
            AppClientMessage::Internal(AppClientInternal::RetryRegistration) => {
                if self.registered || self.dead {
                    return Ok(());
                }
                if self.rounds >= self.conf.registration_retries {
                    self.mark_dead(ctx, "All masters are unresponsive! Giving up.");
                } else {
                    self.register_with_masters(ctx);
                }
            }
            AppClientMessage::Internal(AppClientInternal::Stop) => {
                self.unregister();
                ctx.stop_self();
            }
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        ctx: &EndpointContext<AppClientMessage>,
        message: AppClientMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match message {
            AppClientMessage::Internal(AppClientInternal::Stop) => {
                self.unregister();
                self.dead = true;
                reply.reply(true);
                ctx.stop_self();
            }
            other => {
                self.receive(ctx, other).await?;
                reply.reply(true);
            }
        }
        Ok(())
    }

    async fn on_disconnected(
        &mut self,
        _ctx: &EndpointContext<AppClientMessage>,
        remote: RpcAddress,
    ) {
        if self.master.as_ref().is_some_and(|m| *m.address() == remote) {
            warn!(master = %remote, "connection to the master failed; waiting for a master to reconnect");
            self.listener.disconnected();
        }
    }

    async fn on_stop(&mut self, _ctx: &EndpointContext<AppClientMessage>) {
        self.retry_timer = None;
        debug!("AppClient stopped");
    }
}

/// A running AppClient.
#[derive(Debug)]
pub struct AppClient {
    endpoint: EndpointRef<AppClientMessage>,
    state: Arc<Mutex<AppClientState>>,
}

impl AppClient {
    /// Starts the `AppClient` endpoint in `env`; it registers `app_desc` with every master in
    /// `masters` at once and reports to `listener`.
    pub async fn start(
        env: &RpcEnv,
        masters: Vec<RpcAddress>,
        app_desc: ApplicationDescription,
        listener: Arc<dyn AppClientListener>,
        conf: AppClientConf,
    ) -> Result<AppClient, DeployError> {
        let state = Arc::new(Mutex::new(AppClientState::default()));
        let endpoint = env
            .setup_endpoint(
                APP_CLIENT_ENDPOINT,
                AppClientEndpoint {
                    masters,
                    app_desc,
                    listener,
                    conf,
                    state: state.clone(),
                    master: None,
                    registered: false,
                    rounds: 0,
                    retry_timer: None,
                    dead: false,
                },
            )
            .await?;
        Ok(AppClient { endpoint, state })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &EndpointRef<AppClientMessage> {
        &self.endpoint
    }

    /// The application id, once a master accepted the application.
    pub fn app_id(&self) -> Option<AppId> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .app_id
            .clone()
    }

    /// The master that accepted the application (or took over), once known.
    pub fn active_master(&self) -> Option<RpcAddress> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .master
            .clone()
    }

    /// Unregisters the application (if registered) and stops the endpoint.
    pub async fn stop(&self) {
        let stopped: Result<bool, _> = self
            .endpoint
            .ask_with_timeout(
                AppClientMessage::Internal(AppClientInternal::Stop),
                Duration::from_secs(10),
                ember_rpc::ASK_TIMEOUT_KEY,
            )
            .await;
        if let Err(e) = stopped {
            debug!(error = %e, "AppClient already stopped");
        }
    }
}

#[cfg(test)]
mod tests {
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
    async fn driver(
        master_env: &RpcEnv,
        conf: AppClientConf,
    ) -> (RpcEnv, Arc<Recorder>, AppClient) {
        let env = RpcEnv::create(RpcEnvConfig::new("driver", "127.0.0.1", 0))
            .await
            .unwrap();
        let listener = Arc::new(Recorder::default());
        let client = AppClient::start(
            &env,
            vec![master_env.address().clone()],
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
}
