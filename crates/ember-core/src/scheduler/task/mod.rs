//! The task scheduler: task sets in, task attempts onto executor cores out.
//!
//! Spark counterpart: `TaskSchedulerImpl` (FIFO pool, `submitTasks`, `resourceOffers`,
//! `statusUpdate`, `executorLost`, `cancelTasks`) and `TaskResultGetter`'s bookkeeping.
//!
//! [`TaskSchedulerImpl`] is the state, pure and synchronous: it takes task sets, offers and
//! status updates and records what the DAG scheduler must hear as [`DagEvent`]s.
//! [`TaskScheduler`] is the shared handle the DAG scheduler and the backends use: the state
//! behind a mutex (as Spark synchronizes `TaskSchedulerImpl`), the channel to the DAG
//! scheduler's event loop, and the backend to wake when tasks arrive.

mod task_set_manager;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use task_set_manager::TaskSetManager;
pub use task_set_manager::{TaskSet, TaskSpec};

use crate::error::JobFailure;
use crate::ids::{ExecutorId, JobId, StageAttempt, StageId, TaskId};
use crate::scheduler::backend::SchedulerBackend;
use crate::scheduler::dag::{DagEvent, TaskOutcome};
use crate::scheduler::messages::{
    StatusData, TaskBinary, TaskDescription, TaskFailureReason, TaskResult, TaskState, TaskStatus,
};
use crate::storage::BlockId;

/// Free task slots on one executor, offered to pending tasks (Spark's `WorkerOffer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOffer {
    /// The executor.
    pub executor_id: ExecutorId,
    /// Its host.
    pub host: String,
    /// How many tasks it can take now.
    pub slots: u32,
}

/// A task attempt to send to an executor, with its stage's code.
#[derive(Debug, Clone)]
pub struct TaskLaunch {
    /// The attempt.
    pub desc: TaskDescription,
    /// The code of its stage.
    pub binary: Arc<TaskBinary>,
}

/// A result that stayed on an executor and must be fetched before the task counts as done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFetch {
    /// The task attempt.
    pub task_id: TaskId,
    /// The executor holding it.
    pub executor_id: ExecutorId,
    /// The block.
    pub block_id: BlockId,
    /// Its size.
    pub size: u64,
}

/// How far one running stage is, for the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageProgress {
    /// The stage attempt.
    pub stage: StageAttempt,
    /// Tasks in the stage attempt.
    pub total: usize,
    /// Tasks done.
    pub completed: usize,
    /// Attempts their executors report running (not those still queued there).
    pub active: usize,
}

/// Where a task set sits in the FIFO order: earlier jobs first, then earlier stages.
type SetKey = (JobId, StageId, u32);

fn key_of(set: &TaskSet) -> SetKey {
    (set.priority, set.stage.stage_id, set.stage.attempt)
}

#[derive(Debug)]
struct ExecutorTasks {
    host: String,
    tasks: HashSet<TaskId>,
}

/// The task scheduler's state.
#[derive(Debug)]
pub struct TaskSchedulerImpl {
    max_task_failures: u32,
    task_sets: BTreeMap<SetKey, TaskSetManager>,
    stage_keys: HashMap<StageAttempt, SetKey>,
    task_to_set: HashMap<TaskId, SetKey>,
    fetching: HashMap<TaskId, SetKey>,
    executors: HashMap<ExecutorId, ExecutorTasks>,
    next_task_id: u64,
    events: Vec<DagEvent>,
    finished: Vec<StageAttempt>,
    launched_any: bool,
}

impl TaskSchedulerImpl {
    /// A scheduler allowing each task `max_task_failures` failed attempts.
    pub fn new(max_task_failures: u32) -> Self {
        Self {
            max_task_failures: max_task_failures.max(1),
            task_sets: BTreeMap::new(),
            stage_keys: HashMap::new(),
            task_to_set: HashMap::new(),
            fetching: HashMap::new(),
            executors: HashMap::new(),
            next_task_id: 0,
            events: Vec::new(),
            finished: Vec::new(),
            launched_any: false,
        }
    }

    /// Adds a task set. An older attempt of the same stage stops launching (Spark keeps one
    /// active attempt per stage).
    pub fn submit_tasks(&mut self, task_set: TaskSet) {
        let stage = task_set.stage;
        debug!(%stage, tasks = task_set.tasks.len(), "adding task set");
        for tsm in self.task_sets.values_mut() {
            if tsm.stage().stage_id == stage.stage_id && !tsm.is_zombie() {
                tsm.abort();
            }
        }
        let key = key_of(&task_set);
        let tsm = TaskSetManager::new(task_set, self.max_task_failures);
        self.stage_keys.insert(stage, key);
        self.task_sets.insert(key, tsm);
        self.maybe_finish(key);
    }

    /// Records an executor (tasks can then be offered to it and lost with it).
    pub fn executor_added(&mut self, executor_id: &ExecutorId, host: &str) {
        self.executors
            .entry(executor_id.clone())
            .or_insert_with(|| ExecutorTasks {
                host: host.to_owned(),
                tasks: HashSet::new(),
            });
    }

    /// Fills the offers with pending tasks, earliest task set first, spreading each task set
    /// over the offers round-robin (Spark: `resourceOffers` / `resourceOfferSingleTaskSet`).
    /// The result has one list per offer, in the offers' order.
    pub fn resource_offers(&mut self, offers: &[WorkerOffer]) -> Vec<Vec<TaskLaunch>> {
        let mut launches: Vec<Vec<TaskLaunch>> = vec![Vec::new(); offers.len()];
        let mut slots: Vec<u32> = offers.iter().map(|o| o.slots).collect();
        for offer in offers {
            self.executor_added(&offer.executor_id, &offer.host);
        }
        let keys: Vec<SetKey> = self.task_sets.keys().copied().collect();
        for key in keys {
            loop {
                let mut launched = false;
                for (i, offer) in offers.iter().enumerate() {
                    if slots[i] == 0 {
                        continue;
                    }
                    let task_id = TaskId(self.next_task_id);
                    let tsm = self.task_sets.get_mut(&key).expect("key listed above");
                    let Some(desc) = tsm.resource_offer(&offer.executor_id, task_id) else {
                        continue;
                    };
                    self.next_task_id += 1;
                    slots[i] -= 1;
                    launched = true;
                    self.task_to_set.insert(task_id, key);
                    if let Some(e) = self.executors.get_mut(&offer.executor_id) {
                        e.tasks.insert(task_id);
                    }
                    launches[i].push(TaskLaunch {
                        desc,
                        binary: tsm.task_set.binary.clone(),
                    });
                }
                if !launched {
                    break;
                }
            }
        }
        if launches.iter().any(|l| !l.is_empty()) {
            self.launched_any = true;
        }
        launches
    }

    /// Applies an executor's report about one task. Returns a fetch to start when the result
    /// stayed on the executor.
    pub fn status_update(
        &mut self,
        executor_id: &ExecutorId,
        status: TaskStatus,
    ) -> Option<ResultFetch> {
        let task_id = status.task_id;
        let Some(&key) = self.task_to_set.get(&task_id) else {
            debug!(%task_id, state = %status.state, "ignoring an update for a task that already \
                ended or whose executor was declared lost");
            return None;
        };
        if !status.state.is_finished() {
            if status.state == TaskState::Running
                && let Some(tsm) = self.task_sets.get_mut(&key)
            {
                tsm.mark_running(task_id);
            }
            return None;
        }
        self.task_to_set.remove(&task_id);
        if let Some(e) = self.executors.get_mut(executor_id) {
            e.tasks.remove(&task_id);
        }
        match (status.state, status.data) {
            (TaskState::Finished, StatusData::Result(TaskResult::Direct(bytes))) => {
                self.succeeded(key, task_id, bytes.0);
                None
            }
            (TaskState::Finished, StatusData::Result(TaskResult::Indirect { block_id, size })) => {
                self.fetching.insert(task_id, key);
                Some(ResultFetch {
                    task_id,
                    executor_id: executor_id.clone(),
                    block_id,
                    size,
                })
            }
            (_, StatusData::Failure(reason)) => {
                self.failed(key, task_id, reason);
                None
            }
            (state, _) => {
                let reason = TaskFailureReason::Error {
                    message: format!("the executor reported {state} without a result or reason"),
                };
                self.failed(key, task_id, reason);
                None
            }
        }
    }

    /// A result fetched after an indirect [`TaskResult`].
    pub fn handle_fetched_result(&mut self, task_id: TaskId, bytes: Vec<u8>) {
        if let Some(key) = self.fetching.remove(&task_id) {
            self.succeeded(key, task_id, bytes);
        }
    }

    /// A result that could not be fetched: the task failed.
    pub fn handle_fetch_failure(&mut self, task_id: TaskId, reason: String) {
        if let Some(key) = self.fetching.remove(&task_id) {
            self.failed(key, task_id, TaskFailureReason::ResultLost { reason });
        }
    }

    /// An executor is gone: its attempts fail (and are retried), and it gets no more offers.
    pub fn executor_lost(&mut self, executor_id: &ExecutorId, reason: &str, caused_by_app: bool) {
        let Some(executor) = self.executors.remove(executor_id) else {
            return;
        };
        if executor.tasks.is_empty() {
            info!(%executor_id, host = %executor.host, %reason, "executor lost; it ran no task");
        } else {
            warn!(%executor_id, host = %executor.host, running = executor.tasks.len(), %reason,
                caused_by_app, "executor lost; resubmitting the tasks it was running");
        }
        let failure = TaskFailureReason::ExecutorLost {
            executor_id: executor_id.clone(),
            reason: reason.to_owned(),
            caused_by_app,
        };
        let mut tasks: Vec<TaskId> = executor.tasks.into_iter().collect();
        tasks.sort();
        for task_id in tasks {
            if let Some(key) = self.task_to_set.remove(&task_id) {
                self.failed(key, task_id, failure.clone());
            }
        }
        self.events.push(DagEvent::ExecutorLost {
            executor_id: executor_id.clone(),
            reason: reason.to_owned(),
        });
    }

    /// Stops launching the stage's tasks; returns its running attempts, to be killed.
    pub fn cancel_stage(&mut self, stage_id: StageId) -> Vec<(TaskId, ExecutorId)> {
        let keys: Vec<SetKey> = self
            .task_sets
            .iter()
            .filter(|(_, tsm)| tsm.stage().stage_id == stage_id)
            .map(|(k, _)| *k)
            .collect();
        let mut running = Vec::new();
        for key in keys {
            if let Some(tsm) = self.task_sets.get_mut(&key) {
                tsm.abort();
                running.extend(tsm.running_attempts());
            }
            self.maybe_finish(key);
        }
        running
    }

    /// Aborts one stage attempt's task set (its tasks cannot be sent, say), ending the given
    /// just-launched attempts without counting them as failures.
    pub fn abort_task_set(&mut self, stage: StageAttempt, message: &str, launched: &[TaskId]) {
        let Some(&key) = self.stage_keys.get(&stage) else {
            return;
        };
        let reason = TaskFailureReason::Killed {
            reason: message.to_owned(),
        };
        if let Some(tsm) = self.task_sets.get_mut(&key) {
            if !tsm.is_zombie() {
                tsm.abort();
                self.events.push(DagEvent::TaskSetFailed {
                    stage,
                    failure: JobFailure::StageAborted {
                        stage,
                        message: message.to_owned(),
                    },
                });
            }
            for task_id in launched {
                tsm.handle_failed_task(*task_id, &reason);
                self.task_to_set.remove(task_id);
                for e in self.executors.values_mut() {
                    e.tasks.remove(task_id);
                }
            }
        }
        self.maybe_finish(key);
    }

    /// Aborts every task set (the application was removed or the Context stopped): each one's
    /// stage fails with `reason`.
    pub fn abort_all(&mut self, reason: &str) {
        let keys: Vec<SetKey> = self.task_sets.keys().copied().collect();
        for key in keys {
            if let Some(tsm) = self.task_sets.get_mut(&key)
                && !tsm.is_zombie()
            {
                tsm.abort();
                self.events.push(DagEvent::TaskSetFailed {
                    stage: tsm.stage(),
                    failure: JobFailure::Cancelled {
                        reason: reason.to_owned(),
                    },
                });
            }
            self.maybe_finish(key);
        }
    }

    /// The events for the DAG scheduler recorded since the last call.
    pub fn take_events(&mut self) -> Vec<DagEvent> {
        std::mem::take(&mut self.events)
    }

    /// Stage attempts whose task sets ended since the last call (their binaries can go).
    pub fn take_finished_task_sets(&mut self) -> Vec<StageAttempt> {
        std::mem::take(&mut self.finished)
    }

    /// Whether a task waits for a slot.
    pub fn has_pending_tasks(&self) -> bool {
        self.task_sets.values().any(TaskSetManager::has_pending)
    }

    /// Whether any task was ever launched.
    pub fn launched_any(&self) -> bool {
        self.launched_any
    }

    /// Task attempts launched on the executor that have not ended yet (queued or running
    /// there, or being killed).
    pub fn tasks_on(&self, executor_id: &ExecutorId) -> usize {
        self.executors.get(executor_id).map_or(0, |e| e.tasks.len())
    }

    /// How many executors are known.
    pub fn num_executors(&self) -> usize {
        self.executors.len()
    }

    /// Progress of the task sets still running.
    pub fn progress(&self) -> Vec<StageProgress> {
        self.task_sets
            .values()
            .filter(|tsm| !tsm.is_zombie())
            .map(|tsm| StageProgress {
                stage: tsm.stage(),
                total: tsm.num_tasks(),
                completed: tsm.tasks_successful(),
                active: tsm.started_tasks(),
            })
            .collect()
    }

    /// Attempts reported RUNNING by executors, across task sets (for tests and status).
    pub fn started_tasks(&self) -> usize {
        self.task_sets.values().map(|t| t.started_tasks()).sum()
    }

    fn succeeded(&mut self, key: SetKey, task_id: TaskId, bytes: Vec<u8>) {
        let Some(tsm) = self.task_sets.get_mut(&key) else {
            return;
        };
        if let Some(done) = tsm.handle_successful_task(task_id) {
            let spec = tsm.task_set.tasks[done.index];
            if done.first {
                self.events.push(DagEvent::TaskEnded {
                    stage: tsm.stage(),
                    task_id,
                    spec,
                    outcome: TaskOutcome::Success(bytes),
                });
            }
        }
        self.maybe_finish(key);
    }

    fn failed(&mut self, key: SetKey, task_id: TaskId, reason: TaskFailureReason) {
        let Some(tsm) = self.task_sets.get_mut(&key) else {
            return;
        };
        let executor = tsm
            .info(task_id)
            .map(|i| i.executor_id.clone())
            .unwrap_or_else(|| ExecutorId::from("?"));
        if let Some(failed) = tsm.handle_failed_task(task_id, &reason) {
            let spec = tsm.task_set.tasks[failed.index];
            let stage = tsm.stage();
            if !matches!(reason, TaskFailureReason::ExecutorLost { .. }) {
                warn!(%task_id, %stage, partition = spec.partition, executor_id = %executor,
                    %reason, "lost task");
            }
            self.events.push(DagEvent::TaskEnded {
                stage,
                task_id,
                spec,
                outcome: TaskOutcome::Failed(reason),
            });
            if let Some(failure) = failed.abort {
                warn!(%stage, %failure, "aborting task set");
                self.events.push(DagEvent::TaskSetFailed { stage, failure });
            }
        }
        self.maybe_finish(key);
    }

    fn maybe_finish(&mut self, key: SetKey) {
        if self
            .task_sets
            .get(&key)
            .is_some_and(TaskSetManager::is_finished)
        {
            let tsm = self.task_sets.remove(&key).expect("checked above");
            self.stage_keys.remove(&tsm.stage());
            debug!(stage = %tsm.stage(), "task set finished");
            self.finished.push(tsm.stage());
        }
    }
}

/// The shared task scheduler: the state, the DAG scheduler's channel, and the backend.
#[derive(Debug)]
pub struct TaskScheduler {
    state: Mutex<TaskSchedulerImpl>,
    dag: UnboundedSender<DagEvent>,
    backend: OnceLock<Arc<dyn SchedulerBackend>>,
}

impl TaskScheduler {
    /// A task scheduler reporting to the DAG scheduler through `dag`.
    pub(crate) fn new(max_task_failures: u32, dag: UnboundedSender<DagEvent>) -> Self {
        Self {
            state: Mutex::new(TaskSchedulerImpl::new(max_task_failures)),
            dag,
            backend: OnceLock::new(),
        }
    }

    /// Connects the backend (once, right after both exist).
    pub(crate) fn set_backend(&self, backend: Arc<dyn SchedulerBackend>) {
        let _ = self.backend.set(backend);
    }

    /// The backend.
    pub fn backend(&self) -> Option<&Arc<dyn SchedulerBackend>> {
        self.backend.get()
    }

    /// Runs `f` on the state, then forwards the events it recorded to the DAG scheduler.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut TaskSchedulerImpl) -> T) -> T {
        let (out, events) = {
            let mut state = self.lock();
            let out = f(&mut state);
            (out, state.take_events())
        };
        for event in events {
            let _ = self.dag.send(event);
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, TaskSchedulerImpl> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a task set and asks the backend to offer resources.
    pub fn submit_tasks(&self, task_set: TaskSet) {
        self.with_state(|s| s.submit_tasks(task_set));
        if let Some(backend) = self.backend.get() {
            backend.revive_offers();
        }
    }

    /// Stops the stage's task sets and asks the backend to kill their running attempts.
    pub fn cancel_stage(&self, stage_id: StageId, reason: &str) {
        let running = self.with_state(|s| s.cancel_stage(stage_id));
        if let Some(backend) = self.backend.get() {
            for (task_id, executor_id) in running {
                backend.kill_task(task_id, &executor_id, true, reason);
            }
        }
    }

    /// Sends an event to the DAG scheduler.
    pub fn post_dag_event(&self, event: DagEvent) {
        let _ = self.dag.send(event);
    }

    /// Progress of the running stages.
    pub fn progress(&self) -> Vec<StageProgress> {
        self.lock().progress()
    }
}

/// Warns every `interval` while tasks wait and no executor is registered, with the backend's
/// explanation of why (Spark: the "Initial job has not accepted any resources" timer).
pub(crate) async fn starvation_watch(
    scheduler: Arc<TaskScheduler>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Ticks in a row that found the driver starved: it has waited about that many intervals.
    let mut starved_ticks = 0u32;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let starving = {
            let state = scheduler.lock();
            state.has_pending_tasks() && state.num_executors() == 0
        };
        if !starving {
            starved_ticks = 0;
            continue;
        }
        starved_ticks = starved_ticks.saturating_add(1);
        let waited = interval.saturating_mul(starved_ticks);
        let why = match scheduler.backend.get() {
            Some(backend) => backend.starvation_report().await,
            None => None,
        };
        match why {
            Some(why) => warn!(
                "Initial job has not accepted any resources: no executor has registered in \
                 {waited:?}. {why}"
            ),
            None => warn!(
                "Initial job has not accepted any resources: no executor has registered in \
                 {waited:?}; check that workers are registered and have sufficient resources"
            ),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
