//! The Worker endpoint: registers with the masters, runs executors and drivers, reports their
//! states.
//!
//! Spark counterpart: `Worker` (the `ThreadSafeRpcEndpoint`). Registration decisions are made by
//! the pure [`Registration`](super::state::Registration) machine; this endpoint performs its
//! effects (sends, timers), keeps the runners, and owns all of its state through `&mut self`.
//!
//! Lifecycle: `on_start` creates the work dir (failure fails the start, naming the path), starts
//! the task that reports executor states to the master, then registers with every master at
//! once. `on_stop` kills every executor and driver and waits for them. Launching the children and
//! following their states is in [`children`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ember_rpc::{
    EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext, RpcEndpoint,
    TimerHandle,
};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::app_cache::{AppCache, CACHE_DIR_NAME};
use super::bookkeeping::{DriverEntry, ExecutorEntry};
use super::command::{RunnerContext, RunnerHandle};
use super::config::WorkerConfig;
use super::lifecycle::{Armed, ExitSignal, now};
use super::process::ProcessLauncher;
use super::state::{Effect, Event, ExitReason, Registration, RetrySchedule, registration_fuzz};
use super::sync::{self, SyncJob, SyncTargets};
use crate::error::DeployError;
use crate::ids::{AppId, DriverId, ExecutorId, WorkerId};
use crate::messages::{
    DriverRunnerSummary, ExecutorRunnerSummary, MASTER_ENDPOINT, MasterMessage, MasterToWorker,
    WorkerInternal, WorkerMessage, WorkerStateResponse, WorkerToMaster,
};
use crate::state::DriverState;

mod children;

/// The Worker endpoint.
pub(crate) struct WorkerEndpoint {
    config: Arc<WorkerConfig>,
    id: WorkerId,
    port: u16,
    web_ui_url: String,
    launcher: Arc<dyn ProcessLauncher>,
    exit: Arc<ExitSignal>,
    /// Given to every child (the secret, when authentication is on).
    child_env: Vec<(String, String)>,
    registration: Registration<EndpointRef<MasterMessage>>,
    retry_timer: Armed,
    heartbeat_timer: Armed,
    cleanup_timer: Option<TimerHandle>,
    runner_ctx: Option<RunnerContext>,
    sync: Option<mpsc::UnboundedSender<SyncJob>>,
    /// The active master, for the state-sync task.
    master_tx: watch::Sender<Option<EndpointRef<MasterMessage>>>,
    executors: BTreeMap<(AppId, ExecutorId), ExecutorEntry>,
    finished_executors: VecDeque<ExecutorRunnerSummary>,
    drivers: BTreeMap<DriverId, DriverEntry>,
    finished_drivers: VecDeque<DriverRunnerSummary>,
    app_local_dirs: HashMap<AppId, PathBuf>,
    finished_apps: HashSet<AppId>,
}

impl std::fmt::Debug for WorkerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerEndpoint")
            .field("id", &self.id)
            .field("executors", &self.executors.len())
            .field("drivers", &self.drivers.len())
            .finish_non_exhaustive()
    }
}

impl WorkerEndpoint {
    pub(crate) fn new(
        config: Arc<WorkerConfig>,
        id: WorkerId,
        port: u16,
        web_ui_url: String,
        launcher: Arc<dyn ProcessLauncher>,
        exit: Arc<ExitSignal>,
        child_env: Vec<(String, String)>,
    ) -> Self {
        let schedule = RetrySchedule::new(&config.registration, registration_fuzz());
        let registration =
            Registration::new(config.masters.clone(), schedule, config.heartbeat_interval);
        WorkerEndpoint {
            config,
            id,
            port,
            web_ui_url,
            launcher,
            exit,
            child_env,
            registration,
            retry_timer: Armed::default(),
            heartbeat_timer: Armed::default(),
            cleanup_timer: None,
            runner_ctx: None,
            sync: None,
            master_tx: watch::Sender::new(None),
            executors: BTreeMap::new(),
            finished_executors: VecDeque::new(),
            drivers: BTreeMap::new(),
            finished_drivers: VecDeque::new(),
            app_local_dirs: HashMap::new(),
            finished_apps: HashSet::new(),
        }
    }

    fn step(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        event: Event<EndpointRef<MasterMessage>>,
    ) {
        let effects = self.registration.step(event, now());
        for effect in effects {
            self.perform(ctx, effect);
        }
        let master = self.active_master_ref();
        self.master_tx.send_if_modified(|current| {
            let changed = *current != master;
            if changed {
                *current = master;
            }
            changed
        });
        self.retry_timer
            .arm(ctx, self.registration.retry_deadline(), || {
                WorkerInternal::ReregisterWithMaster
            });
        self.heartbeat_timer
            .arm(ctx, self.registration.heartbeat_deadline(), || {
                WorkerInternal::SendHeartbeat
            });
    }

    fn perform(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        effect: Effect<EndpointRef<MasterMessage>>,
    ) {
        match effect {
            Effect::RegisterWith(masters) => {
                for address in masters {
                    self.send_register(ctx, address);
                }
            }
            Effect::Heartbeat(master) => {
                let _ = master.send(WorkerToMaster::Heartbeat {
                    worker_id: self.id.clone(),
                    worker: ctx.self_ref().clone(),
                });
            }
            Effect::SendLatestState(master) => {
                let _ = master.send(WorkerToMaster::WorkerLatestState {
                    id: self.id.clone(),
                    executors: self.executor_descriptions(),
                    driver_ids: self.driver_ids(),
                });
            }
            Effect::SendSchedulerState(master) => {
                let _ = master.send(WorkerToMaster::WorkerSchedulerStateResponse {
                    id: self.id.clone(),
                    executors: self.executor_descriptions(),
                    driver_ids: self.driver_ids(),
                });
            }
            Effect::StartCleanup => {
                if let Some(cleanup) = &self.config.cleanup {
                    info!(work_dir = %self.config.work_dir.display(),
                        "worker cleanup enabled; old application directories will be deleted");
                    self.cleanup_timer =
                        Some(ctx.schedule_every(cleanup.interval, cleanup.interval, || {
                            WorkerMessage::Internal(WorkerInternal::WorkDirCleanup)
                        }));
                }
            }
            Effect::Exit(reason) => {
                let error = match reason {
                    ExitReason::GaveUp { attempts } => {
                        error!(masters = %self.config.masters_text(), attempts,
                            "all masters are unresponsive; giving up");
                        DeployError::RegistrationGaveUp {
                            masters: self.config.masters_text(),
                            attempts,
                        }
                    }
                    ExitReason::Refused { message } => {
                        error!(%message, "worker registration failed");
                        DeployError::RegistrationRefused { message }
                    }
                };
                self.fatal(ctx, error);
            }
        }
    }

    fn send_register(&self, ctx: &EndpointContext<WorkerMessage>, address: RpcAddress) {
        info!(master = %address.to_ember_url(), "connecting to master");
        let master: EndpointRef<MasterMessage> =
            ctx.env().endpoint_ref(address.clone(), MASTER_ENDPOINT);
        let sent = master.send(WorkerToMaster::RegisterWorker {
            id: self.id.clone(),
            host: self.config.host.clone(),
            port: self.port,
            worker: ctx.self_ref().clone(),
            cores: self.config.cores,
            memory_mb: self.config.memory_mb,
            web_ui_url: self.web_ui_url.clone(),
            master_address: address,
        });
        if let Err(e) = sent {
            warn!(error = %e.error, "could not send the registration");
        }
    }

    /// Stops the worker for good: the owner learns `error` and the endpoint stops (its `on_stop`
    /// kills the children).
    fn fatal(&mut self, ctx: &EndpointContext<WorkerMessage>, error: DeployError) {
        self.exit.fail(error);
        ctx.stop_self();
    }

    fn active_master_url(&self) -> Option<String> {
        self.registration
            .active_master()
            .map(|m| m.address.to_ember_url())
    }

    fn active_master_ref(&self) -> Option<EndpointRef<MasterMessage>> {
        self.registration.active_master().map(|m| m.handle.clone())
    }

    fn handle_master(&mut self, ctx: &EndpointContext<WorkerMessage>, message: MasterToWorker) {
        match message {
            MasterToWorker::RegisteredWorker {
                master,
                master_web_ui_url,
                master_address,
                duplicate,
            } => {
                if duplicate {
                    warn!(master = %master.address(), "the master already knew this worker id");
                }
                info!(master = %master.address().to_ember_url(), worker_id = %self.id,
                    "successfully registered with master");
                let address = master.address().clone();
                self.step(
                    ctx,
                    Event::Registered {
                        master,
                        address,
                        master_address,
                        web_ui_url: master_web_ui_url,
                    },
                );
            }
            MasterToWorker::RegisterWorkerFailed { message } => {
                self.step(ctx, Event::RegisterFailed { message });
            }
            MasterToWorker::MasterInStandby => self.step(ctx, Event::MasterInStandby),
            MasterToWorker::ReconnectWorker { master_url } => {
                info!(%master_url, "master asks this worker to register again");
                self.step(ctx, Event::Reconnect);
            }
            MasterToWorker::MasterChanged {
                master,
                master_web_ui_url,
            } => {
                info!(master = %master.address().to_ember_url(), "master has changed");
                let address = master.address().clone();
                self.step(
                    ctx,
                    Event::MasterChanged {
                        master,
                        address,
                        web_ui_url: master_web_ui_url,
                    },
                );
            }
            MasterToWorker::LaunchExecutor {
                master_url,
                app_id,
                exec_id,
                app_desc,
                cores,
                memory_mb,
            } => self.launch_executor(
                ctx,
                &master_url,
                app_id,
                exec_id,
                app_desc,
                cores,
                memory_mb,
            ),
            MasterToWorker::KillExecutor {
                master_url,
                app_id,
                exec_id,
            } => {
                if self.active_master_url().as_deref() != Some(master_url.as_str()) {
                    warn!(%master_url, "invalid master attempted to kill an executor");
                    return;
                }
                match self.executors.get(&(app_id.clone(), exec_id)) {
                    Some(entry) => {
                        info!(%app_id, %exec_id, "asked to kill executor");
                        entry.handle.kill();
                    }
                    None => info!(%app_id, %exec_id, "asked to kill an unknown executor"),
                }
            }
            MasterToWorker::LaunchDriver {
                driver_id,
                driver_desc,
            } => self.launch_driver(ctx, driver_id, driver_desc),
            MasterToWorker::KillDriver { driver_id } => match self.drivers.get(&driver_id) {
                Some(entry) => {
                    info!(%driver_id, "asked to kill driver");
                    entry.handle.kill();
                }
                None => error!(%driver_id, "asked to kill an unknown driver"),
            },
            MasterToWorker::ApplicationFinished { app_id } => {
                self.finished_apps.insert(app_id.clone());
                self.maybe_clean_up_application(ctx, &app_id);
            }
            MasterToWorker::DecommissionWorker => {
                warn!("asked to decommission, which this worker does not support; ignoring");
            }
        }
    }

    fn handle_internal(&mut self, ctx: &EndpointContext<WorkerMessage>, message: WorkerInternal) {
        match message {
            WorkerInternal::SendHeartbeat => {
                self.heartbeat_timer.fired();
                self.step(ctx, Event::HeartbeatTimer);
            }
            WorkerInternal::ReregisterWithMaster => {
                self.retry_timer.fired();
                self.step(ctx, Event::RetryTimer);
            }
            WorkerInternal::WorkDirCleanup => self.clean_up_work_dir(ctx),
            WorkerInternal::ExecutorStateChanged {
                app_id,
                exec_id,
                state,
                message,
                exit_status,
            } => self.executor_state_changed(ctx, app_id, exec_id, state, message, exit_status),
            WorkerInternal::DriverStateChanged {
                driver_id,
                state,
                exception,
            } => self.driver_state_changed(driver_id, state, exception),
            WorkerInternal::ExecutorStateSyncFailed {
                app_id,
                exec_id,
                state,
                attempts,
                error,
            } => {
                error!(%app_id, %exec_id, %state, attempts, %error,
                    "could not report an executor state change to the master; exiting");
                self.fatal(
                    ctx,
                    DeployError::ExecutorStateSync {
                        app_id,
                        exec_id,
                        state,
                        attempts,
                        source: Box::new(error),
                    },
                );
            }
        }
    }

    fn state_response(&self) -> WorkerStateResponse {
        let master = self.registration.active_master();
        WorkerStateResponse {
            host: self.config.host.clone(),
            port: self.port,
            worker_id: self.id.clone(),
            master_url: master.map(|m| m.address.to_ember_url()),
            master_web_ui_url: master.map(|m| m.web_ui_url.clone()),
            cores: self.config.cores,
            memory_mb: self.config.memory_mb,
            cores_used: self.cores_used(),
            memory_used_mb: self.memory_used_mb(),
            executors: self
                .executors
                .values()
                .map(ExecutorEntry::summary)
                .collect(),
            finished_executors: self.finished_executors.iter().cloned().collect(),
            drivers: self
                .drivers
                .values()
                .map(|d| d.summary(DriverState::Running, None))
                .collect(),
            finished_drivers: self.finished_drivers.iter().cloned().collect(),
            work_dir: self.config.work_dir.display().to_string(),
        }
    }
}

impl RpcEndpoint for WorkerEndpoint {
    type Message = WorkerMessage;

    async fn on_start(&mut self, ctx: &EndpointContext<WorkerMessage>) -> HandlerResult {
        let work_dir = self.config.work_dir.clone();
        if let Err(source) = std::fs::create_dir_all(&work_dir) {
            let error = DeployError::Directory {
                path: work_dir.clone(),
                source,
            };
            let text = error.to_string();
            self.exit.fail(error);
            return Err(text.into());
        }
        let self_ref = ctx.self_ref().clone();
        self.runner_ctx = Some(RunnerContext {
            report: Arc::new(move |message| {
                let _ = self_ref.send(WorkerMessage::Internal(message));
            }),
            cache: Arc::new(AppCache::new(
                ctx.env().clone(),
                work_dir.join(CACHE_DIR_NAME),
            )),
            launcher: self.launcher.clone(),
            host: self.config.host.clone(),
            worker_url: ctx.self_ref().url(),
            web_ui_url: self.web_ui_url.clone(),
            child_env: self.child_env.clone(),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        self.sync = Some(tx);
        ctx.spawn(sync::run(
            rx,
            SyncTargets {
                master: self.master_tx.subscribe(),
                worker: ctx.self_ref().clone(),
            },
            self.config.executor_state_sync_max_attempts,
            ctx.env().config().ask_timeout,
            ctx.env().shutdown_token(),
        ));
        self.step(ctx, Event::Start);
        Ok(())
    }

    async fn receive(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        message: WorkerMessage,
    ) -> HandlerResult {
        match message {
            WorkerMessage::Master(message) => self.handle_master(ctx, message),
            WorkerMessage::Internal(message) => self.handle_internal(ctx, message),
            WorkerMessage::RequestWorkerState => {
                warn!("RequestWorkerState is an ask; ignoring it when sent one way");
            }
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        ctx: &EndpointContext<WorkerMessage>,
        message: WorkerMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match message {
            WorkerMessage::RequestWorkerState => reply.reply(self.state_response()),
            other => {
                // Every other message is one-way; handle it and acknowledge.
                self.receive(ctx, other).await?;
                reply.reply(true);
            }
        }
        Ok(())
    }

    async fn on_disconnected(&mut self, ctx: &EndpointContext<WorkerMessage>, remote: RpcAddress) {
        let is_master = self
            .registration
            .active_master()
            .is_some_and(|m| m.address == remote || m.address_to_connect == remote);
        if is_master {
            error!(master = %remote, "connection to the master lost; registering again");
        }
        self.step(ctx, Event::Disconnected(remote));
    }

    async fn on_stop(&mut self, _ctx: &EndpointContext<WorkerMessage>) {
        self.retry_timer = Armed::default();
        self.heartbeat_timer = Armed::default();
        self.cleanup_timer = None;
        let handles: Vec<RunnerHandle> = self
            .executors
            .values()
            .map(|e| e.handle.clone())
            .chain(self.drivers.values().map(|d| d.handle.clone()))
            .collect();
        if !handles.is_empty() {
            info!(
                count = handles.len(),
                "killing the executors and drivers of this worker"
            );
        }
        for handle in &handles {
            handle.kill();
        }
        let grace = self
            .config
            .executor_terminate_timeout
            .max(self.config.driver_terminate_timeout);
        let all_done = async {
            for handle in &handles {
                handle.finished().await;
            }
        };
        if tokio::time::timeout(grace + Duration::from_secs(5), all_done)
            .await
            .is_err()
        {
            warn!("some executors or drivers did not stop in time");
        }
        self.sync = None;
    }
}
