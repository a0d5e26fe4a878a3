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
//!   registered ──RequestTotalExecutors / KillExecutors (driver)──▶ asked of the master, its
//!             answer relayed (false before any master accepted the application)
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

    /// Asks the active master on the driver's behalf and relays its answer, without holding up
    /// this endpoint while the master answers (Spark: `askAndReplyAsync`).
    fn ask_master(
        &self,
        ctx: &EndpointContext<AppClientMessage>,
        reply: RpcCallContext,
        message: AppToMaster,
    ) {
        let Some(master) = self.master.clone().filter(|_| self.registered) else {
            warn!(app = %self.app_desc.name, "no master has accepted the application yet; \
                cannot change its executors");
            reply.reply(false);
            return;
        };
        ctx.spawn(async move {
            match master.ask::<bool>(message).await {
                Ok(answer) => reply.reply(answer),
                Err(e) => reply.send_error(&format!(
                    "the master at {} did not answer: {e}",
                    master.address().to_ember_url()
                )),
            }
        });
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
            AppClientMessage::Internal(
                request @ (AppClientInternal::RequestTotalExecutors { .. }
                | AppClientInternal::KillExecutors { .. }),
            ) => debug!(?request, "ignoring a request sent one way"),
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
            AppClientMessage::Internal(AppClientInternal::RequestTotalExecutors { total }) => {
                match self.app_id() {
                    Some(app_id) => self.ask_master(
                        ctx,
                        reply,
                        AppToMaster::RequestExecutors {
                            app_id,
                            requested_total: total,
                        },
                    ),
                    None => reply.reply(false),
                }
            }
            AppClientMessage::Internal(AppClientInternal::KillExecutors { executor_ids }) => {
                match self.app_id() {
                    Some(app_id) => self.ask_master(
                        ctx,
                        reply,
                        AppToMaster::KillExecutors {
                            app_id,
                            executor_ids,
                        },
                    ),
                    None => reply.reply(false),
                }
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

    /// Asks the master for `total` executors in all (Spark: `requestTotalExecutors`): more are
    /// launched as resources allow, and none replaces an executor that ends while the
    /// application has this many. `Ok(false)` when no master has accepted the application yet,
    /// or the master does not know it.
    pub async fn request_total_executors(&self, total: u32) -> Result<bool, DeployError> {
        self.ask_internal(AppClientInternal::RequestTotalExecutors { total })
            .await
    }

    /// Asks the master to kill these executors (Spark: `killExecutors`). `Ok(false)` as for
    /// [`request_total_executors`](Self::request_total_executors).
    pub async fn kill_executors(&self, executor_ids: Vec<ExecutorId>) -> Result<bool, DeployError> {
        self.ask_internal(AppClientInternal::KillExecutors { executor_ids })
            .await
    }

    async fn ask_internal(&self, message: AppClientInternal) -> Result<bool, DeployError> {
        Ok(self
            .endpoint
            .ask(AppClientMessage::Internal(message))
            .await?)
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
mod tests;
