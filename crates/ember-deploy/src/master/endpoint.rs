//! The Master endpoint: feeds messages, timers and connection events to the state machine and
//! performs the effects it returns.
//!
//! Spark counterpart: the I/O half of `Master.scala` (`onStart`, `receive`, `receiveAndReply`,
//! `onDisconnected`, `onStop`). Everything here is plumbing: refs, the persistence engine,
//! timers, replies. Decisions live in [`super::state`].
//!
//! * Refs: workers and drivers are addressed by the address of their RpcEnv. The endpoint keeps
//!   the refs that arrive in messages (so a peer's own endpoint name is honoured) and builds the
//!   others (workers and applications recovered from persisted records) with
//!   `RpcEnv::endpoint_ref(address, WORKER_ENDPOINT / APP_CLIENT_ENDPOINT)`. Refs of addresses
//!   the master no longer knows are dropped at each worker check.
//! * Persistence: operations run in order, off the async threads when the engine does blocking
//!   I/O. A registration or submission ends with [`Effect::PersistThenApply`]: the endpoint
//!   writes the record and tells the state machine whether that worked ([`Master::persisted`]),
//!   which then applies the change and returns what follows (the acknowledgement, the launches
//!   of `schedule()`), or drops it, leaving the state as it was and the peer unanswered. Any
//!   other failed write is logged and the effects go on (a stale record only makes a successor
//!   wait for a peer that will not answer; a relaunched driver that was not stored is lost only
//!   if this master fails too).
//! * A message of the wrong kind (an ask of a one-way message) is refused with an error reply; a
//!   message about unknown ids is logged by the state machine and otherwise ignored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use ember_rpc::{
    EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext, RpcEndpoint,
    RpcMessage, TimerHandle,
};

use super::persistence::{PersistOp, PersistenceEngine, PersistenceError};
use super::state::{Effect, Master, ToApp, ToWorker, WorkerRegistration};
use crate::error::DeployError;
use crate::ids::{AppId, now_millis};
use crate::messages::{
    APP_CLIENT_ENDPOINT, AppClientMessage, AppToMaster, ClientToMaster, MasterInternal,
    MasterMessage, MasterToApp, MasterToWorker, WORKER_ENDPOINT, WorkerMessage, WorkerToMaster,
};

/// How the endpoint tells its owner that the master stopped by itself, and why.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopSignal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<DeployError>>>,
}

impl StopSignal {
    /// Records the first reason and wakes the waiters.
    pub(crate) fn fail(&self, error: DeployError) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_none() {
            *reason = Some(error);
        }
        self.token.cancel();
    }

    /// Waits until the master stops by itself; returns why.
    pub(crate) async fn wait(&self) -> DeployError {
        self.token.cancelled().await;
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(DeployError::LeadershipRevoked)
    }
}

/// The Master endpoint.
#[derive(Debug)]
pub(crate) struct MasterEndpoint {
    state: Master,
    persistence: Arc<dyn PersistenceEngine>,
    worker_refs: HashMap<RpcAddress, EndpointRef<WorkerMessage>>,
    app_refs: HashMap<RpcAddress, EndpointRef<AppClientMessage>>,
    check_timer: Option<TimerHandle>,
    recovery_timer: Option<TimerHandle>,
    stop: StopSignal,
}

type Ctx = EndpointContext<MasterMessage>;

impl MasterEndpoint {
    pub(crate) fn new(
        state: Master,
        persistence: Arc<dyn PersistenceEngine>,
        stop: StopSignal,
    ) -> Self {
        Self {
            state,
            persistence,
            worker_refs: HashMap::new(),
            app_refs: HashMap::new(),
            check_timer: None,
            recovery_timer: None,
            stop,
        }
    }

    async fn handle(&mut self, ctx: &Ctx, message: MasterMessage, reply: Option<RpcCallContext>) {
        let now = now_millis();
        match message {
            MasterMessage::Worker(m) => self.handle_worker(ctx, m, reply, now).await,
            MasterMessage::App(m) => self.handle_app(ctx, m, reply, now).await,
            MasterMessage::Client(m) => self.handle_client(ctx, m, reply, now).await,
            MasterMessage::Internal(m) => {
                let mut reply = reply;
                if refuse_ask(&mut reply, "an internal message") {
                    return;
                }
                self.handle_internal(ctx, m, now).await;
            }
        }
    }

    async fn handle_worker(
        &mut self,
        ctx: &Ctx,
        m: WorkerToMaster,
        mut reply: Option<RpcCallContext>,
        now: u64,
    ) {
        if !matches!(m, WorkerToMaster::ExecutorStateChanged { .. })
            && refuse_ask(&mut reply, "a one-way worker message")
        {
            return;
        }
        match m {
            WorkerToMaster::ExecutorStateChanged {
                app_id,
                exec_id,
                state,
                message,
                exit_status,
            } => {
                let effects = self.state.executor_state_changed(
                    &app_id,
                    exec_id,
                    state,
                    message,
                    exit_status,
                    now,
                );
                self.perform(ctx, effects).await;
                answer(reply, true);
            }
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
                let address = worker.address().clone();
                self.worker_refs.insert(address.clone(), worker);
                let reg = WorkerRegistration {
                    id,
                    host,
                    port,
                    address,
                    cores,
                    memory_mb,
                    web_ui_url,
                    master_address,
                };
                let effects = self.state.register_worker(reg, now);
                self.perform(ctx, effects).await;
            }
            WorkerToMaster::Heartbeat { worker_id, worker } => {
                let address = worker.address().clone();
                self.worker_refs.entry(address.clone()).or_insert(worker);
                let effects = self.state.heartbeat(&worker_id, &address, now);
                self.perform(ctx, effects).await;
            }
            WorkerToMaster::DriverStateChanged {
                driver_id,
                state,
                exception,
            } => {
                let effects = self
                    .state
                    .driver_state_changed(&driver_id, state, exception, now);
                self.perform(ctx, effects).await;
            }
            WorkerToMaster::WorkerSchedulerStateResponse {
                id,
                executors,
                driver_ids,
            } => {
                let effects = self
                    .state
                    .worker_scheduler_state(&id, &executors, &driver_ids, now);
                self.perform(ctx, effects).await;
            }
            WorkerToMaster::WorkerLatestState {
                id,
                executors,
                driver_ids,
            } => {
                let effects = self
                    .state
                    .worker_latest_state(&id, &executors, &driver_ids, now);
                self.perform(ctx, effects).await;
            }
            WorkerToMaster::WorkerDecommissioning { id, worker } => {
                let address = worker.address().clone();
                self.worker_refs.entry(address.clone()).or_insert(worker);
                let effects = self.state.worker_decommissioning(&id, &address, now);
                self.perform(ctx, effects).await;
            }
        }
    }

    async fn handle_app(
        &mut self,
        ctx: &Ctx,
        m: AppToMaster,
        mut reply: Option<RpcCallContext>,
        now: u64,
    ) {
        if !matches!(
            m,
            AppToMaster::RequestExecutors { .. } | AppToMaster::KillExecutors { .. }
        ) && refuse_ask(&mut reply, "a one-way application message")
        {
            return;
        }
        match m {
            AppToMaster::RequestExecutors {
                app_id,
                requested_total,
            } => {
                let (known, effects) = self.state.request_executors(&app_id, requested_total, now);
                self.perform(ctx, effects).await;
                answer(reply, known);
            }
            AppToMaster::KillExecutors {
                app_id,
                executor_ids,
            } => {
                let (known, effects) = self.state.kill_executors(&app_id, &executor_ids, now);
                self.perform(ctx, effects).await;
                answer(reply, known);
            }
            AppToMaster::RegisterApplication { app_desc, driver } => {
                let address = driver.address().clone();
                self.app_refs.insert(address.clone(), driver);
                let effects = self.state.register_application(app_desc, address, now);
                self.perform(ctx, effects).await;
            }
            AppToMaster::UnregisterApplication { app_id } => {
                let effects = self.state.unregister_application(&app_id, now);
                self.perform(ctx, effects).await;
            }
            AppToMaster::MasterChangeAcknowledged { app_id } => {
                let effects = self.state.master_change_acknowledged(&app_id, now);
                self.perform(ctx, effects).await;
            }
        }
    }

    async fn handle_client(
        &mut self,
        ctx: &Ctx,
        m: ClientToMaster,
        reply: Option<RpcCallContext>,
        now: u64,
    ) {
        match m {
            ClientToMaster::RequestSubmitDriver { driver_desc } => {
                let (response, effects) = self.state.submit_driver(driver_desc, now);
                if self.perform(ctx, effects).await {
                    answer(reply, response);
                } else if let Some(reply) = reply {
                    reply.send_error(&"the driver could not be persisted; try again");
                }
            }
            ClientToMaster::RequestKillDriver { driver_id } => {
                let (response, effects) = self.state.kill_driver(&driver_id, now);
                self.perform(ctx, effects).await;
                answer(reply, response);
            }
            ClientToMaster::RequestKillAllDrivers => {
                let (response, effects) = self.state.kill_all_drivers(now);
                self.perform(ctx, effects).await;
                answer(reply, response);
            }
            ClientToMaster::RequestDriverStatus { driver_id } => {
                answer(reply, self.state.driver_status(&driver_id));
            }
            ClientToMaster::RequestClearCompletedDriversAndApps => {
                answer(reply, self.state.clear_completed());
            }
            ClientToMaster::RequestReadyz => answer(reply, self.state.readyz()),
            ClientToMaster::RequestMasterState => answer(reply, self.state.snapshot()),
            ClientToMaster::RequestKillApplication { app_id } => {
                let (known, effects) = self.state.kill_application(&app_id, now);
                self.perform(ctx, effects).await;
                answer(reply, known);
            }
            ClientToMaster::DecommissionWorkersOnHosts { hosts } => {
                let (count, effects) = self.state.decommission_workers_on_hosts(&hosts, now);
                self.perform(ctx, effects).await;
                answer(reply, count);
            }
        }
    }

    async fn handle_internal(&mut self, ctx: &Ctx, m: MasterInternal, now: u64) {
        let effects = match m {
            MasterInternal::CheckForWorkerTimeOut => {
                let effects = self.state.check_worker_timeouts(now);
                self.prune_refs();
                effects
            }
            MasterInternal::CompleteRecovery => {
                self.recovery_timer = None;
                self.state.complete_recovery(now)
            }
            MasterInternal::ElectedLeader => {
                let read = with_engine(&self.persistence, |engine| engine.read_persisted_data())
                    .await
                    .unwrap_or_else(|e| {
                        Err(PersistenceError::Read {
                            location: "recovery store".to_owned(),
                            source: std::io::Error::other(e.to_string()),
                        })
                    });
                match read {
                    Ok(mut data) => {
                        for problem in data.skipped.drain(..) {
                            error!(%problem, "skipping a recovery record");
                        }
                        self.state.elected_leader(data, now_millis())
                    }
                    Err(e) => {
                        error!(error = %e, "cannot read the recovery state; the master stops");
                        self.stop.fail(DeployError::Persistence(e));
                        ctx.stop_self();
                        return;
                    }
                }
            }
            MasterInternal::RevokedLeadership => self.state.revoked_leadership(now),
        };
        self.perform(ctx, effects).await;
    }

    /// Performs `effects` in order. Returns false if a change awaiting persistence could not be
    /// stored (and was therefore dropped).
    async fn perform(&mut self, ctx: &Ctx, effects: Vec<Effect>) -> bool {
        let mut effects: VecDeque<Effect> = effects.into();
        let mut applied = true;
        while let Some(effect) = effects.pop_front() {
            match effect {
                Effect::Persist(op) => {
                    let mut ops = vec![op];
                    while let Some(Effect::Persist(_)) = effects.front() {
                        if let Some(Effect::Persist(op)) = effects.pop_front() {
                            ops.push(op);
                        }
                    }
                    self.persist(ops).await;
                }
                Effect::PersistThenApply(op) => {
                    let stored = self.persist(vec![op]).await;
                    applied &= stored;
                    let then = self.state.persisted(stored, now_millis());
                    for effect in then.into_iter().rev() {
                        effects.push_front(effect);
                    }
                }
                Effect::ToWorker {
                    worker_id,
                    address,
                    msg,
                } => {
                    let message = self.worker_message(ctx, msg);
                    let target = kept_ref(&mut self.worker_refs, ctx, address, WORKER_ENDPOINT);
                    if let Err(e) = target.send(message) {
                        debug!(%worker_id, error = %e.error, "could not send to worker");
                    }
                }
                Effect::ToApp {
                    app_id,
                    address,
                    msg,
                } => {
                    let message = self.app_message(ctx, &app_id, msg);
                    let target = kept_ref(&mut self.app_refs, ctx, address, APP_CLIENT_ENDPOINT);
                    if let Err(e) = target.send(message) {
                        debug!(%app_id, error = %e.error, "could not send to application");
                    }
                }
                Effect::ScheduleCompleteRecovery { after } => {
                    self.recovery_timer =
                        Some(ctx.schedule_once(after, MasterInternal::CompleteRecovery.into()));
                }
                Effect::Exit { reason } => {
                    error!(%reason, "master stopping");
                    self.stop.fail(DeployError::LeadershipRevoked);
                    ctx.stop_self();
                    return applied;
                }
            }
        }
        applied
    }

    /// Applies persistence operations in order, each failure logged; true if all succeeded.
    async fn persist(&mut self, ops: Vec<PersistOp>) -> bool {
        let apply = move |engine: &dyn PersistenceEngine| {
            ops.iter()
                .filter_map(|op| engine.apply(op).err().map(|e| (op.is_add(), e)))
                .collect::<Vec<_>>()
        };
        let failures = match with_engine(&self.persistence, apply).await {
            Ok(failures) => failures,
            Err(e) => {
                error!(error = %e, "the persistence task failed");
                return false;
            }
        };
        for (is_add, e) in &failures {
            if *is_add {
                error!(error = %e, "could not persist a recovery record");
            } else {
                warn!(error = %e, "could not remove a recovery record");
            }
        }
        failures.is_empty()
    }

    /// What `msg` is on the wire (the ones carrying this master's ref are built here).
    fn worker_message(&self, ctx: &Ctx, msg: ToWorker) -> MasterToWorker {
        match msg {
            ToWorker::Registered {
                duplicate,
                master_address,
            } => MasterToWorker::RegisteredWorker {
                master: ctx.self_ref().clone(),
                master_web_ui_url: self.state.identity().web_ui_url.clone(),
                master_address,
                duplicate,
            },
            ToWorker::MasterChanged => MasterToWorker::MasterChanged {
                master: ctx.self_ref().clone(),
                master_web_ui_url: self.state.identity().web_ui_url.clone(),
            },
            ToWorker::Message(m) => m.into(),
        }
    }

    /// What `msg` for application `app_id` is on the wire (the ones carrying this master's ref
    /// are built here).
    fn app_message(&self, ctx: &Ctx, app_id: &AppId, msg: ToApp) -> MasterToApp {
        match msg {
            ToApp::Registered => MasterToApp::RegisteredApplication {
                app_id: app_id.clone(),
                master: ctx.self_ref().clone(),
            },
            ToApp::MasterChanged => MasterToApp::MasterChanged {
                master: ctx.self_ref().clone(),
                master_web_ui_url: self.state.identity().web_ui_url.clone(),
            },
            ToApp::Message(m) => m.into(),
        }
    }

    /// Drops refs to addresses no worker entry or application has any more.
    fn prune_refs(&mut self) {
        let known: HashSet<&RpcAddress> = self.state.workers().map(|w| &w.address).collect();
        self.worker_refs.retain(|a, _| known.contains(a));
        let state = &self.state;
        self.app_refs.retain(|a, _| state.knows_app_address(a));
    }
}

/// Answers an ask with `value`; nothing for a one-way message.
fn answer<T: serde::Serialize + Send + 'static>(reply: Option<RpcCallContext>, value: T) {
    if let Some(reply) = reply {
        reply.reply(value);
    }
}

/// The ref kept for the endpoint `name` at `address`; made and kept if there is none.
fn kept_ref<'a, M: RpcMessage>(
    refs: &'a mut HashMap<RpcAddress, EndpointRef<M>>,
    ctx: &Ctx,
    address: RpcAddress,
    name: &str,
) -> &'a EndpointRef<M> {
    refs.entry(address.clone())
        .or_insert_with(|| ctx.env().endpoint_ref(address, name))
}

/// Runs `f` with the persistence engine: on a blocking thread when the engine does blocking I/O.
async fn with_engine<T: Send + 'static>(
    engine: &Arc<dyn PersistenceEngine>,
    f: impl FnOnce(&dyn PersistenceEngine) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if engine.blocks() {
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || f(&*engine)).await
    } else {
        Ok(f(&**engine))
    }
}

/// Fails an ask of a message kind that is not a request. True if it was an ask.
fn refuse_ask(reply: &mut Option<RpcCallContext>, what: &str) -> bool {
    match reply.take() {
        Some(reply) => {
            debug!(what, "refusing an ask of a one-way message");
            reply.send_error(&format!("{what} is one-way: send it, do not ask it"));
            true
        }
        None => false,
    }
}

impl RpcEndpoint for MasterEndpoint {
    type Message = MasterMessage;

    async fn on_start(&mut self, ctx: &Ctx) -> HandlerResult {
        let period = self.state.config().worker_check_period();
        self.check_timer = Some(ctx.schedule_every(Duration::ZERO, period, || {
            MasterInternal::CheckForWorkerTimeOut.into()
        }));
        info!(url = %self.state.identity().url(), web_ui = %self.state.identity().web_ui_url,
            "master endpoint started");
        Ok(())
    }

    async fn receive(&mut self, ctx: &Ctx, message: MasterMessage) -> HandlerResult {
        self.handle(ctx, message, None).await;
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        ctx: &Ctx,
        message: MasterMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        self.handle(ctx, message, Some(reply)).await;
        Ok(())
    }

    async fn on_disconnected(&mut self, ctx: &Ctx, remote: RpcAddress) {
        let effects = self.state.disconnected(&remote, now_millis());
        self.perform(ctx, effects).await;
    }

    async fn on_stop(&mut self, _ctx: &Ctx) {
        self.check_timer = None;
        self.recovery_timer = None;
        debug!("master endpoint stopped");
    }
}
