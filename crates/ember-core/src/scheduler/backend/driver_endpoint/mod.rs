//! The driver's `CoarseGrainedScheduler` endpoint: executor registration, resource offers,
//! task launch, status updates, heartbeats and executor loss.
//!
//! Spark counterpart: `CoarseGrainedSchedulerBackend` with its `DriverEndpoint`, plus the
//! executor-expiry half of `HeartbeatReceiver` and the fetching half of `TaskResultGetter`.
//!
//! Executor life as the driver sees it:
//!
//! ```text
//!   RegisterExecutor ──digest differs / id taken──▶ refused (the ask fails with the reason)
//!         │ accepted: no free cores yet
//!         ▼
//!   LaunchedExecutor ──▶ takes tasks ──▶ make_offers
//!         │
//!         ├── StatusUpdate (a task ended) ──▶ make_offers(this executor)
//!         ├── connection closed / RemoveExecutor / no heartbeat for ember.network.timeout
//!         ▼
//!      removed: its tasks fail as ExecutorLost and are resubmitted
//! ```
//!
//! An executor's free slots are not counted here but derived from the task scheduler: its cores
//! plus `ember.scheduler.executorTaskQueue`, less the attempts the scheduler has on it. So a
//! repeated, late or made-up status update cannot free a slot that is not free. Slots beyond the
//! cores (the task queue) let an executor start its next task without waiting a network round
//! trip; see `ember.scheduler.executorTaskQueue` for the trade-off.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ember_rpc::{
    EmberConf, EndpointContext, EndpointRef, HandlerResult, RpcAddress, RpcCallContext,
    RpcEndpoint, RpcEnv, TimerHandle,
};
use tracing::{debug, error, info, warn};

use crate::closure::{BinaryDigest, binary_digest};
use crate::config;
use crate::error::CoreError;
use crate::ids::{ExecutorId, StageAttempt, TaskId};
use crate::scheduler::dag::DagEvent;
use crate::scheduler::messages::{
    DRIVER_ENDPOINT, DriverInternal, DriverMessage, ExecutorMessage, ExecutorRegistration,
    HeartbeatResponse, TaskBinary, TaskStatus,
};
use crate::scheduler::task::{ResultFetch, TaskScheduler, WorkerOffer};
use crate::storage::{BLOCK_MANAGER_ENDPOINT, BlockManagerMessage, fetch_block};

/// Bytes reserved in a `LaunchTask` message for everything but the binaries.
const LAUNCH_OVERHEAD: usize = 64 * 1024;
/// Bytes per task description in a `LaunchTask` message, at most.
const TASK_DESCRIPTION_SIZE: usize = 48;

/// State the endpoint shares with its backend (read without asking the endpoint).
#[derive(Debug, Default)]
pub struct DriverShared {
    /// Cores of the registered executors.
    pub total_cores: AtomicUsize,
    /// Registered executors ready for tasks (from their `LaunchedExecutor`).
    executors: Mutex<BTreeSet<ExecutorId>>,
    /// The application id, once the cluster manager gave one.
    pub app_id: Mutex<Option<String>>,
}

impl DriverShared {
    /// The executors registered and ready for tasks.
    pub fn executor_ids(&self) -> Vec<ExecutorId> {
        self.lock_executors().iter().cloned().collect()
    }

    /// How many executors are registered and ready for tasks.
    pub fn num_executors(&self) -> usize {
        self.lock_executors().len()
    }

    fn lock_executors(&self) -> std::sync::MutexGuard<'_, BTreeSet<ExecutorId>> {
        self.executors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The application id, if known.
    pub fn app_id(&self) -> Option<String> {
        self.app_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Settings of the endpoint, read from the configuration once.
#[derive(Debug, Clone)]
pub struct DriverEndpointConf {
    /// `ember.scheduler.revive.interval`.
    pub revive_interval: Duration,
    /// `ember.network.timeout`.
    pub executor_timeout: Duration,
    /// `ember.scheduler.executorTaskQueue`.
    pub task_queue: u32,
    /// The largest message (`ember.rpc.message.maxSize`).
    pub max_message_size: usize,
    /// The settings sent to executors.
    pub app_conf: Vec<(String, String)>,
}

impl DriverEndpointConf {
    /// Reads the settings.
    pub fn from_conf(conf: &EmberConf, env: &RpcEnv) -> Result<Self, CoreError> {
        Ok(Self {
            revive_interval: conf.get(&config::REVIVE_INTERVAL)?,
            executor_timeout: conf.get(&config::NETWORK_TIMEOUT)?,
            task_queue: conf.get(&config::EXECUTOR_TASK_QUEUE)?,
            max_message_size: env.config().max_message_size,
            app_conf: conf
                .iter()
                .filter(|(k, _)| k.starts_with("ember.") && !ember_rpc::conf::is_secret_key(k))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }
}

#[derive(Debug)]
struct ExecutorData {
    executor_ref: EndpointRef<ExecutorMessage>,
    address: RpcAddress,
    host: String,
    cores: u32,
    launched: bool,
    binaries: HashSet<StageAttempt>,
    last_seen: Instant,
}

/// The `CoarseGrainedScheduler` endpoint.
#[derive(Debug)]
pub struct DriverEndpoint {
    scheduler: Arc<TaskScheduler>,
    conf: DriverEndpointConf,
    driver_digest: BinaryDigest,
    shared: Arc<DriverShared>,
    executors: HashMap<ExecutorId, ExecutorData>,
    by_address: HashMap<RpcAddress, ExecutorId>,
    /// Executors the driver is having killed (Spark: `executorsPendingToRemove`).
    pending_removal: HashSet<ExecutorId>,
    stopping: bool,
    timers: Vec<TimerHandle>,
}

impl DriverEndpoint {
    fn new(
        scheduler: Arc<TaskScheduler>,
        conf: DriverEndpointConf,
        shared: Arc<DriverShared>,
    ) -> Result<Self, CoreError> {
        Ok(Self {
            scheduler,
            conf,
            driver_digest: *binary_digest()?,
            shared,
            executors: HashMap::new(),
            by_address: HashMap::new(),
            pending_removal: HashSet::new(),
            stopping: false,
            timers: Vec::new(),
        })
    }

    fn register_executor(
        &mut self,
        executor_id: ExecutorId,
        executor_ref: EndpointRef<ExecutorMessage>,
        hostname: String,
        cores: u32,
        binary_digest: BinaryDigest,
    ) -> Result<ExecutorRegistration, String> {
        if self.stopping {
            return Err("the driver is stopping".to_owned());
        }
        if binary_digest != self.driver_digest {
            let refusal = CoreError::BinaryMismatch {
                executor_id: executor_id.clone(),
                executor_digest: binary_digest,
                driver_digest: self.driver_digest,
            };
            error!(%executor_id, address = %executor_ref.address(), "{refusal}");
            return Err(refusal.to_string());
        }
        if self.executors.contains_key(&executor_id) {
            warn!(%executor_id, "refusing a duplicate executor id");
            return Err(format!("Duplicate executor ID: {executor_id}"));
        }
        let address = executor_ref.address().clone();
        info!(%executor_id, %address, %hostname, cores, "registered executor");
        self.by_address.insert(address.clone(), executor_id.clone());
        self.scheduler
            .with_state(|s| s.executor_added(&executor_id, &hostname));
        self.executors.insert(
            executor_id,
            ExecutorData {
                executor_ref,
                address,
                host: hostname,
                cores,
                launched: false,
                binaries: HashSet::new(),
                last_seen: Instant::now(),
            },
        );
        self.shared
            .total_cores
            .fetch_add(cores as usize, Ordering::Relaxed);
        Ok(ExecutorRegistration {
            app_id: self.shared.app_id(),
            conf: self.conf.app_conf.clone(),
        })
    }

    /// Offers the free slots of one executor (or all) and sends what the scheduler picked.
    fn make_offers(&mut self, only: Option<&ExecutorId>) {
        let task_queue = self.conf.task_queue;
        let (executors, pending_removal) = (&self.executors, &self.pending_removal);
        let (offers, launches, finished) = self.scheduler.with_state(|s| {
            let offers: Vec<WorkerOffer> = executors
                .iter()
                .filter(|(id, e)| {
                    e.launched && !pending_removal.contains(*id) && only.is_none_or(|o| o == *id)
                })
                .filter_map(|(id, e)| {
                    let capacity = e.cores.saturating_add(task_queue);
                    let held = u32::try_from(s.tasks_on(id)).unwrap_or(u32::MAX);
                    let slots = capacity.saturating_sub(held);
                    (slots > 0).then(|| WorkerOffer {
                        executor_id: id.clone(),
                        host: e.host.clone(),
                        slots,
                    })
                })
                .collect();
            let launches = if offers.is_empty() {
                Vec::new()
            } else {
                s.resource_offers(&offers)
            };
            (offers, launches, s.take_finished_task_sets())
        });
        if !finished.is_empty() {
            self.release_binaries(&finished);
        }
        for (offer, tasks) in offers.iter().zip(launches) {
            if tasks.is_empty() {
                continue;
            }
            let Some(executor) = self.executors.get_mut(&offer.executor_id) else {
                continue;
            };
            let mut binaries: Vec<TaskBinary> = Vec::new();
            let mut descs = Vec::with_capacity(tasks.len());
            for launch in &tasks {
                if executor.binaries.insert(launch.desc.stage) {
                    binaries.push(TaskBinary::clone(&launch.binary));
                }
                descs.push(launch.desc);
            }
            let size: usize = binaries.iter().map(|b| b.bytes.len()).sum::<usize>()
                + descs.len() * TASK_DESCRIPTION_SIZE
                + LAUNCH_OVERHEAD;
            if size > self.conf.max_message_size {
                // Spark parity: CoarseGrainedSchedulerBackend.launchTasks aborts the task set
                // of a task too large to send.
                for binary in &binaries {
                    executor.binaries.remove(&binary.stage);
                }
                let by_stage = group_by_stage(&descs);
                for (stage, ids) in by_stage {
                    let bytes = binaries
                        .iter()
                        .find(|b| b.stage == stage)
                        .map_or(0, |b| b.bytes.len());
                    let message = format!(
                        "the task of stage {stage} is {bytes} bytes, which exceeds the largest \
                         message allowed ({} bytes, ember.rpc.message.maxSize); capture less \
                         data in the closure",
                        self.conf.max_message_size
                    );
                    self.scheduler
                        .with_state(|s| s.abort_task_set(stage, &message, &ids));
                }
                continue;
            }
            debug!(executor_id = %offer.executor_id, tasks = descs.len(),
                binaries = binaries.len(), "launching tasks");
            if let Err(e) = executor.executor_ref.send(ExecutorMessage::LaunchTask {
                binaries,
                tasks: descs.clone(),
            }) {
                if let ember_rpc::RpcError::MessageTooLarge { size, max } = e.error {
                    for (stage, ids) in group_by_stage(&descs) {
                        executor.binaries.remove(&stage);
                        let message = format!(
                            "the tasks of stage {stage} encode to {size} bytes, more than the \
                             largest message allowed ({max} bytes, ember.rpc.message.maxSize)"
                        );
                        self.scheduler
                            .with_state(|s| s.abort_task_set(stage, &message, &ids));
                    }
                } else {
                    warn!(executor_id = %offer.executor_id, error = %e.error,
                        "could not send tasks; they are resubmitted when the executor is removed");
                }
            }
        }
    }

    fn release_binaries(&mut self, stages: &[StageAttempt]) {
        for executor in self.executors.values_mut() {
            let held: Vec<StageAttempt> = stages
                .iter()
                .filter(|s| executor.binaries.remove(s))
                .copied()
                .collect();
            if !held.is_empty() {
                let _ = executor
                    .executor_ref
                    .send(ExecutorMessage::ReleaseTaskBinaries { stages: held });
            }
        }
    }

    fn status_update(
        &mut self,
        ctx: &EndpointContext<DriverMessage>,
        executor_id: ExecutorId,
        updates: Vec<TaskStatus>,
    ) {
        let fetches: Vec<ResultFetch> = self.scheduler.with_state(|s| {
            updates
                .into_iter()
                .filter_map(|u| s.status_update(&executor_id, u))
                .collect()
        });
        for fetch in fetches {
            self.fetch_result(ctx, fetch);
        }
        match self.executors.get_mut(&executor_id) {
            Some(executor) => {
                executor.last_seen = Instant::now();
                self.make_offers(Some(&executor_id));
            }
            None => debug!(%executor_id, "status update from an unknown executor"),
        }
    }

    /// Fetches a result that stayed on its executor, then lets the scheduler count the task.
    fn fetch_result(&self, ctx: &EndpointContext<DriverMessage>, fetch: ResultFetch) {
        let Some(executor) = self.executors.get(&fetch.executor_id) else {
            self.scheduler.with_state(|s| {
                s.handle_fetch_failure(fetch.task_id, "its executor is gone".to_owned())
            });
            return;
        };
        let manager: EndpointRef<BlockManagerMessage> = ctx
            .env()
            .endpoint_ref(executor.address.clone(), BLOCK_MANAGER_ENDPOINT);
        let chunk = (self.conf.max_message_size / 2).clamp(64 * 1024, 8 * 1024 * 1024) as u32;
        let scheduler = self.scheduler.clone();
        debug!(task_id = %fetch.task_id, size = fetch.size, "fetching an indirect result");
        ctx.spawn(async move {
            match fetch_block(&manager, fetch.block_id, chunk).await {
                Ok(bytes) => {
                    scheduler.with_state(|s| s.handle_fetched_result(fetch.task_id, bytes));
                }
                Err(e) => {
                    warn!(task_id = %fetch.task_id, error = %e, "could not fetch a task result");
                    scheduler.with_state(|s| s.handle_fetch_failure(fetch.task_id, e.to_string()));
                }
            }
            let _ = manager.send(BlockManagerMessage::RemoveBlock {
                block_id: fetch.block_id,
            });
            if let Some(backend) = scheduler.backend() {
                backend.revive_offers();
            }
        });
    }

    fn remove_executor(&mut self, executor_id: &ExecutorId, reason: &str, caused_by_app: bool) {
        let Some(executor) = self.executors.remove(executor_id) else {
            return;
        };
        info!(%executor_id, address = %executor.address, %reason, "removing executor");
        self.by_address.remove(&executor.address);
        self.shared
            .total_cores
            .fetch_sub(executor.cores as usize, Ordering::Relaxed);
        self.shared.lock_executors().remove(executor_id);
        let (reason, caused_by_app) = if self.pending_removal.remove(executor_id) {
            // Spark parity: a loss the driver asked for is `ExecutorKilled`, not the
            // application's fault.
            (format!("{reason} (killed at the driver's request)"), false)
        } else {
            (reason.to_owned(), caused_by_app)
        };
        let reason = reason.as_str();
        self.scheduler
            .with_state(|s| s.executor_lost(executor_id, reason, caused_by_app));
        // The lost tasks are pending again.
        self.make_offers(None);
    }

    fn check_heartbeats(&mut self) {
        let now = Instant::now();
        let timeout = self.conf.executor_timeout;
        let expired: Vec<(ExecutorId, Duration)> = self
            .executors
            .iter()
            .filter_map(|(id, e)| {
                let silent = now.duration_since(e.last_seen);
                (silent > timeout).then(|| (id.clone(), silent))
            })
            .collect();
        for (executor_id, silent) in expired {
            warn!(%executor_id, ?silent, "executor heartbeat timed out");
            if let Some(e) = self.executors.get(&executor_id) {
                let _ = e.executor_ref.send(ExecutorMessage::StopExecutor);
            }
            self.remove_executor(
                &executor_id,
                &format!(
                    "Executor heartbeat timed out after {} ms (ember.network.timeout)",
                    silent.as_millis()
                ),
                true,
            );
        }
    }
}

fn group_by_stage(
    descs: &[crate::scheduler::messages::TaskDescription],
) -> Vec<(StageAttempt, Vec<TaskId>)> {
    let mut out: Vec<(StageAttempt, Vec<TaskId>)> = Vec::new();
    for d in descs {
        match out.iter_mut().find(|(s, _)| *s == d.stage) {
            Some((_, ids)) => ids.push(d.task_id),
            None => out.push((d.stage, vec![d.task_id])),
        }
    }
    out
}

impl RpcEndpoint for DriverEndpoint {
    type Message = DriverMessage;

    async fn on_start(&mut self, ctx: &EndpointContext<DriverMessage>) -> HandlerResult {
        let revive = self.conf.revive_interval;
        self.timers.push(ctx.schedule_every(revive, revive, || {
            DriverMessage::Internal(DriverInternal::ReviveOffers)
        }));
        let check = (self.conf.executor_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(60));
        self.timers.push(ctx.schedule_every(check, check, || {
            DriverMessage::Internal(DriverInternal::CheckHeartbeats)
        }));
        Ok(())
    }

    async fn receive(
        &mut self,
        ctx: &EndpointContext<DriverMessage>,
        message: DriverMessage,
    ) -> HandlerResult {
        match message {
            DriverMessage::StatusUpdate {
                executor_id,
                updates,
            } => self.status_update(ctx, executor_id, updates),
            DriverMessage::LaunchedExecutor { executor_id } => {
                if let Some(e) = self.executors.get_mut(&executor_id)
                    && !e.launched
                {
                    e.launched = true;
                    // Counted from now on: it takes tasks.
                    self.shared.lock_executors().insert(executor_id.clone());
                    e.last_seen = Instant::now();
                    self.make_offers(Some(&executor_id));
                }
            }
            DriverMessage::RemoveExecutor {
                executor_id,
                reason,
                caused_by_app,
            } => {
                if let Some(e) = self.executors.get(&executor_id) {
                    let _ = e.executor_ref.send(ExecutorMessage::StopExecutor);
                }
                self.remove_executor(&executor_id, &reason, caused_by_app);
            }
            DriverMessage::Internal(internal) => match internal {
                DriverInternal::ReviveOffers => self.make_offers(None),
                DriverInternal::CheckHeartbeats => self.check_heartbeats(),
                DriverInternal::KillTask {
                    task_id,
                    executor_id,
                    interrupt_thread,
                    reason,
                } => {
                    if let Some(e) = self.executors.get(&executor_id) {
                        let _ = e.executor_ref.send(ExecutorMessage::KillTask {
                            task_id,
                            interrupt_thread,
                            reason,
                        });
                    }
                }
                DriverInternal::RemoveWorker {
                    worker_id,
                    host,
                    message,
                } => self.scheduler.post_dag_event(DagEvent::WorkerRemoved {
                    worker_id,
                    host,
                    message,
                }),
                other => debug!(?other, "ignoring a request sent one way"),
            },
            other => debug!(?other, "ignoring a request sent one way"),
        }
        Ok(())
    }

    async fn receive_and_reply(
        &mut self,
        _ctx: &EndpointContext<DriverMessage>,
        message: DriverMessage,
        reply: RpcCallContext,
    ) -> HandlerResult {
        match message {
            DriverMessage::RegisterExecutor {
                executor_id,
                executor_ref,
                hostname,
                cores,
                log_urls: _,
                binary_digest,
            } => match self.register_executor(
                executor_id,
                executor_ref,
                hostname,
                cores,
                binary_digest,
            ) {
                Ok(registration) => reply.reply(registration),
                Err(reason) => reply.send_error(&reason),
            },
            DriverMessage::Heartbeat { executor_id, .. } => {
                let known = match self.executors.get_mut(&executor_id) {
                    Some(e) => {
                        e.last_seen = Instant::now();
                        true
                    }
                    None => false,
                };
                reply.reply(HeartbeatResponse { known });
            }
            DriverMessage::Internal(DriverInternal::StopExecutors) => {
                self.stopping = true;
                for (id, e) in &self.executors {
                    debug!(executor_id = %id, "asking executor to stop");
                    let _ = e.executor_ref.send(ExecutorMessage::StopExecutor);
                }
                reply.reply(true);
            }
            DriverMessage::Internal(DriverInternal::NumExecutors) => {
                reply.reply(self.executors.len());
            }
            DriverMessage::Internal(DriverInternal::KillExecutors { executor_ids }) => {
                let mut accepted = Vec::new();
                for executor_id in executor_ids {
                    if !self.executors.contains_key(&executor_id) {
                        warn!(%executor_id, "asked to kill an executor that is not registered");
                    } else if self.pending_removal.insert(executor_id.clone()) {
                        info!(%executor_id, "the application asked to kill executor");
                        accepted.push(executor_id);
                    }
                }
                reply.reply(accepted);
            }
            other => {
                reply.send_error(&format!("{other:?} is not a request"));
            }
        }
        Ok(())
    }

    async fn on_disconnected(&mut self, _ctx: &EndpointContext<DriverMessage>, remote: RpcAddress) {
        if let Some(executor_id) = self.by_address.get(&remote).cloned() {
            self.remove_executor(
                &executor_id,
                &format!("the connection to executor {executor_id} at {remote} closed"),
                true,
            );
        }
    }

    async fn on_stop(&mut self, _ctx: &EndpointContext<DriverMessage>) {
        self.timers.clear();
    }
}

/// The coarse-grained backend's handle on its endpoint: what the standalone backend (and any
/// other cluster backend) builds on.
#[derive(Debug)]
pub struct CoarseGrainedBackend {
    endpoint: EndpointRef<DriverMessage>,
    shared: Arc<DriverShared>,
    env: RpcEnv,
}

impl CoarseGrainedBackend {
    /// Registers the `CoarseGrainedScheduler` endpoint in `env`.
    pub async fn start(
        env: &RpcEnv,
        scheduler: Arc<TaskScheduler>,
        conf: &EmberConf,
    ) -> Result<CoarseGrainedBackend, CoreError> {
        let shared = Arc::new(DriverShared::default());
        let endpoint_conf = DriverEndpointConf::from_conf(conf, env)?;
        let endpoint = env
            .setup_endpoint(
                DRIVER_ENDPOINT,
                DriverEndpoint::new(scheduler, endpoint_conf, shared.clone())?,
            )
            .await?;
        Ok(CoarseGrainedBackend {
            endpoint,
            shared,
            env: env.clone(),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &EndpointRef<DriverMessage> {
        &self.endpoint
    }

    /// `ember://CoarseGrainedScheduler@host:port`, what executors are told to register with.
    pub fn driver_url(&self) -> String {
        self.endpoint.url()
    }

    /// The state shared with the endpoint.
    pub fn shared(&self) -> &Arc<DriverShared> {
        &self.shared
    }

    /// Asks the endpoint to offer resources.
    pub fn revive_offers(&self) {
        let _ = self
            .endpoint
            .send(DriverMessage::Internal(DriverInternal::ReviveOffers));
    }

    /// Asks the endpoint to kill a task.
    pub fn kill_task(
        &self,
        task_id: TaskId,
        executor_id: &ExecutorId,
        interrupt_thread: bool,
        reason: &str,
    ) {
        let _ = self
            .endpoint
            .send(DriverMessage::Internal(DriverInternal::KillTask {
                task_id,
                executor_id: executor_id.clone(),
                interrupt_thread,
                reason: reason.to_owned(),
            }));
    }

    /// Removes an executor the cluster manager reported gone.
    pub fn remove_executor(&self, executor_id: ExecutorId, reason: String, caused_by_app: bool) {
        let _ = self.endpoint.send(DriverMessage::RemoveExecutor {
            executor_id,
            reason,
            caused_by_app,
        });
    }

    /// Reports a lost worker.
    pub fn remove_worker(&self, worker_id: String, host: String, message: String) {
        let _ = self
            .endpoint
            .send(DriverMessage::Internal(DriverInternal::RemoveWorker {
                worker_id,
                host,
                message,
            }));
    }

    /// Cores of the registered executors, at least 2 (Spark's coarse-grained default).
    pub fn default_parallelism(&self) -> usize {
        self.shared.total_cores.load(Ordering::Relaxed).max(2)
    }

    /// Tells every executor to stop, then stops the endpoint.
    pub async fn stop(&self) {
        let stopped: Result<bool, _> = self
            .endpoint
            .ask_with_timeout(
                DriverMessage::Internal(DriverInternal::StopExecutors),
                Duration::from_secs(10),
                ember_rpc::ASK_TIMEOUT_KEY,
            )
            .await;
        if let Err(e) = stopped {
            warn!(error = %e, "could not ask the executors to stop");
        }
        self.env.stop(&self.endpoint);
    }
}

#[cfg(test)]
mod tests;
