//! The DAG scheduler: jobs in, stages and task sets out, results back to the jobs.
//!
//! Spark counterpart: `DAGScheduler` with its `DAGSchedulerEventProcessLoop`. One task owns all
//! of the scheduler's state and handles [`DagEvent`]s one at a time, in arrival order: jobs
//! submitted by [`DagScheduler::submit_job`], task ends and task set failures from the
//! [`TaskScheduler`], executor losses, cancellation.
//!
//! ```text
//!   JobSubmitted ─▶ result stage (+ parent stages, later) ─▶ submit_stage ─▶ missing parents?
//!                                                             │ no            │ yes: submit them,
//!                                                             ▼               ▼ wait
//!                                   TaskSet (one task per missing partition) ─▶ TaskScheduler
//!   TaskEnded(Success) ─▶ job output stored; all outputs ─▶ job succeeds, stage finished
//!   TaskSetFailed      ─▶ stage aborted ─▶ its jobs fail, its running tasks are killed
//! ```
//!
//! Today a job is a single result stage without parents; the stage graph (parents, waiting
//! stages, stage attempts) is kept so that shuffle map stages slot in without a rewrite.

mod job;
mod stage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use job::ActiveJob;
pub use job::JobWaiter;
use stage::{Stage, StageKind};

use crate::closure::TaskFn;
use crate::error::{CoreError, JobFailure};
use crate::ids::{ExecutorId, IdCounter, JobId, StageAttempt, StageId, TaskId};
use crate::scheduler::messages::{TaskBinary, TaskFailureReason, TaskKind};
use crate::scheduler::task::{TaskScheduler, TaskSet, TaskSpec};
use crate::util::ByteBuf;

/// How a task attempt ended, as the DAG scheduler hears it.
#[derive(Debug)]
pub enum TaskOutcome {
    /// It produced this (encoded) result.
    Success(Vec<u8>),
    /// It failed (it may be retried by the task scheduler).
    Failed(TaskFailureReason),
}

/// Everything the DAG scheduler's event loop handles.
#[derive(Debug)]
pub enum DagEvent {
    /// A job to run.
    JobSubmitted {
        /// The job.
        job_id: JobId,
        /// Partitions of the job's data.
        num_partitions: usize,
        /// The partitions to compute, in output order.
        partitions: Vec<usize>,
        /// The encoded closure computing one partition.
        func: Arc<Vec<u8>>,
        /// Where the results go.
        listener: Arc<JobWaiter>,
    },
    /// A task attempt ended.
    TaskEnded {
        /// Its stage attempt.
        stage: StageAttempt,
        /// The attempt.
        task_id: TaskId,
        /// The task.
        spec: TaskSpec,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// A task set was aborted.
    TaskSetFailed {
        /// Its stage attempt.
        stage: StageAttempt,
        /// Why.
        failure: JobFailure,
    },
    /// An executor was lost (its shuffle output will have to be recomputed, later).
    ExecutorLost {
        /// The executor.
        executor_id: ExecutorId,
        /// Why.
        reason: String,
    },
    /// A worker was lost.
    WorkerRemoved {
        /// The worker.
        worker_id: String,
        /// Its host.
        host: String,
        /// Why.
        message: String,
    },
    /// Fail every active job with [`CoreError::ContextStopped`]: the context is stopping.
    CancelAllJobs {
        /// Why.
        reason: String,
    },
    /// Fail every active job as cancelled; the context goes on.
    CancelJobs {
        /// Why.
        reason: String,
    },
}

/// The handle jobs are submitted through.
#[derive(Debug)]
pub struct DagScheduler {
    tx: UnboundedSender<DagEvent>,
    next_job_id: IdCounter,
}

impl DagScheduler {
    /// The channel and the handle; the receiver goes to [`run_event_loop`].
    pub(crate) fn channel() -> (Self, UnboundedReceiver<DagEvent>) {
        let (tx, rx) = unbounded_channel();
        (
            Self {
                tx,
                next_job_id: IdCounter::default(),
            },
            rx,
        )
    }

    /// A sender of events to the loop (for the task scheduler).
    pub(crate) fn sender(&self) -> UnboundedSender<DagEvent> {
        self.tx.clone()
    }

    /// Submits a job computing `func` over `partitions` (each below `num_partitions`); the
    /// returned waiter gets the encoded results in the order of `partitions`.
    pub fn submit_job(
        &self,
        num_partitions: usize,
        partitions: Vec<usize>,
        func: &TaskFn,
    ) -> Result<Arc<JobWaiter>, CoreError> {
        let func = Arc::new(func.to_bytes()?);
        let job_id = JobId(self.next_job_id.next());
        let listener = Arc::new(JobWaiter::new(job_id, partitions.len()));
        if partitions.is_empty() {
            return Ok(listener);
        }
        self.tx
            .send(DagEvent::JobSubmitted {
                job_id,
                num_partitions,
                partitions,
                func,
                listener: listener.clone(),
            })
            .map_err(|_| CoreError::ContextStopped {
                reason: "the DAG scheduler has stopped".to_owned(),
            })?;
        Ok(listener)
    }

    /// Fails every active job as cancelled, killing their running tasks; later jobs run.
    pub fn cancel_jobs(&self, reason: &str) {
        let _ = self.tx.send(DagEvent::CancelJobs {
            reason: reason.to_owned(),
        });
    }

    /// Fails every active job: the context is stopping.
    pub fn cancel_all_jobs(&self, reason: &str) {
        let _ = self.tx.send(DagEvent::CancelAllJobs {
            reason: reason.to_owned(),
        });
    }
}

/// The DAG scheduler's state, owned by its event loop.
#[derive(Debug)]
struct DagState {
    task_scheduler: Arc<TaskScheduler>,
    next_stage_id: u64,
    stages: HashMap<StageId, Stage>,
    jobs: HashMap<JobId, ActiveJob>,
    stage_jobs: HashMap<StageId, HashSet<JobId>>,
    waiting: HashSet<StageId>,
    running: HashSet<StageId>,
    stopped_reason: Option<String>,
    events: UnboundedReceiver<DagEvent>,
}

impl Drop for DagState {
    /// The loop's task can be dropped without finishing (its runtime shut down while a stop was
    /// in flight): every job still active or still queued fails then, with the stop's reason if
    /// one was queued, so that no caller of `run_job` waits forever.
    fn drop(&mut self) {
        let mut reason = self.stopped_reason.clone();
        let mut queued = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            match event {
                DagEvent::CancelAllJobs { reason: r } => {
                    reason.get_or_insert(r);
                }
                DagEvent::JobSubmitted { listener, .. } => queued.push(listener),
                _ => {}
            }
        }
        let reason = reason.unwrap_or_else(|| "the DAG scheduler stopped".to_owned());
        let listeners = self
            .jobs
            .values()
            .map(|job| &job.listener)
            .chain(queued.iter());
        for listener in listeners {
            listener.job_failed(CoreError::ContextStopped {
                reason: reason.clone(),
            });
        }
    }
}

/// Handles events until every sender is gone or `stop` is cancelled; jobs still active then
/// fail.
pub(crate) async fn run_event_loop(
    rx: UnboundedReceiver<DagEvent>,
    task_scheduler: Arc<TaskScheduler>,
    stop: CancellationToken,
) {
    let mut state = DagState {
        task_scheduler,
        next_stage_id: 0,
        stages: HashMap::new(),
        jobs: HashMap::new(),
        stage_jobs: HashMap::new(),
        waiting: HashSet::new(),
        running: HashSet::new(),
        stopped_reason: None,
        events: rx,
    };
    loop {
        let event = tokio::select! {
            biased;
            event = state.events.recv() => event,
            _ = stop.cancelled() => None,
        };
        let Some(event) = event else { break };
        state.handle(event);
        // Handle whatever else is queued before yielding (events come in bursts).
        while let Ok(event) = state.events.try_recv() {
            state.handle(event);
        }
    }
    // Whatever is still queued is handled as stopped: a job submitted now fails (its waiter
    // would otherwise wait forever), and a late `CancelAllJobs` still gives its reason.
    state.events.close();
    if state.stopped_reason.is_none() {
        state.stopped_reason = Some("the DAG scheduler stopped".to_owned());
    }
    while let Ok(event) = state.events.try_recv() {
        if let event @ (DagEvent::JobSubmitted { .. } | DagEvent::CancelAllJobs { .. }) = event {
            state.handle(event);
        }
    }
    let reason = state.stopped_reason.clone().unwrap_or_default();
    state.cancel_all(&reason);
}

impl DagState {
    fn handle(&mut self, event: DagEvent) {
        match event {
            DagEvent::JobSubmitted {
                job_id,
                num_partitions,
                partitions,
                func,
                listener,
            } => self.handle_job_submitted(job_id, num_partitions, partitions, func, listener),
            DagEvent::TaskEnded {
                stage,
                task_id,
                spec,
                outcome,
            } => self.handle_task_ended(stage, task_id, spec, outcome),
            DagEvent::TaskSetFailed { stage, failure } => self.abort_stage(stage.stage_id, failure),
            DagEvent::ExecutorLost {
                executor_id,
                reason,
            } => {
                // Nothing is stored on executors yet; shuffle output will be unregistered here.
                debug!(%executor_id, %reason, "executor lost");
            }
            DagEvent::WorkerRemoved {
                worker_id,
                host,
                message,
            } => debug!(%worker_id, %host, %message, "worker removed"),
            DagEvent::CancelAllJobs { reason } => {
                self.stopped_reason = Some(reason.clone());
                self.cancel_all(&reason);
            }
            DagEvent::CancelJobs { reason } => self.cancel_all(&reason),
        }
    }

    fn handle_job_submitted(
        &mut self,
        job_id: JobId,
        num_partitions: usize,
        partitions: Vec<usize>,
        func: Arc<Vec<u8>>,
        listener: Arc<JobWaiter>,
    ) {
        if let Some(reason) = &self.stopped_reason {
            listener.job_failed(CoreError::ContextStopped {
                reason: reason.clone(),
            });
            return;
        }
        if let Some(&bad) = partitions.iter().find(|&&p| p >= num_partitions) {
            listener.job_failed(CoreError::JobFailed {
                job_id,
                reason: JobFailure::Cancelled {
                    reason: format!(
                        "partition {bad} does not exist: the data has {num_partitions} partitions"
                    ),
                },
            });
            return;
        }
        let stage_id = StageId(self.next_stage_id);
        self.next_stage_id += 1;
        self.stages.insert(
            stage_id,
            Stage {
                id: stage_id,
                parents: Vec::new(),
                num_partitions,
                first_job: job_id,
                next_attempt: 0,
                pending_partitions: HashSet::new(),
                kind: StageKind::Result { job: job_id, func },
                latest_binary: None,
            },
        );
        let outputs = partitions.len();
        info!(%job_id, %stage_id, tasks = outputs, "got job");
        self.jobs.insert(
            job_id,
            ActiveJob {
                job_id,
                final_stage: stage_id,
                partitions,
                finished: vec![false; outputs],
                num_finished: 0,
                listener,
            },
        );
        self.stage_jobs.entry(stage_id).or_default().insert(job_id);
        self.submit_stage(stage_id);
    }

    /// Runs the stage if its parents are available, else submits them and waits.
    fn submit_stage(&mut self, stage_id: StageId) {
        if self.waiting.contains(&stage_id) || self.running.contains(&stage_id) {
            return;
        }
        let missing: Vec<StageId> = self
            .stages
            .get(&stage_id)
            .map(|s| s.parents.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| self.stages.contains_key(p))
            .collect();
        if missing.is_empty() {
            self.submit_missing_tasks(stage_id);
        } else {
            for parent in missing {
                self.submit_stage(parent);
            }
            self.waiting.insert(stage_id);
        }
    }

    /// Submits one task per partition of the stage that has no output yet.
    fn submit_missing_tasks(&mut self, stage_id: StageId) {
        let Some(stage) = self.stages.get_mut(&stage_id) else {
            return;
        };
        let (tasks, func) = match &stage.kind {
            StageKind::Result { job, func } => {
                let Some(job) = self.jobs.get(job) else {
                    return;
                };
                let tasks: Vec<TaskSpec> = job
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(output_id, _)| !job.finished[*output_id])
                    .map(|(output_id, &partition)| TaskSpec {
                        partition,
                        output_id,
                    })
                    .collect();
                (tasks, func.clone())
            }
        };
        let attempt = StageAttempt {
            stage_id: stage.id,
            attempt: stage.next_attempt,
        };
        stage.next_attempt += 1;
        stage.pending_partitions = tasks.iter().map(|t| t.partition).collect();
        debug_assert!(
            stage
                .pending_partitions
                .iter()
                .all(|&p| p < stage.num_partitions)
        );
        let binary = Arc::new(TaskBinary {
            stage: attempt,
            kind: TaskKind::Result,
            bytes: ByteBuf(func.as_ref().clone()),
        });
        stage.latest_binary = Some(binary.clone());
        let priority = stage.first_job;
        self.running.insert(stage_id);
        debug!(stage = %attempt, tasks = tasks.len(), "submitting missing tasks");
        self.task_scheduler.submit_tasks(TaskSet {
            stage: attempt,
            priority,
            tasks,
            binary,
        });
    }

    fn handle_task_ended(
        &mut self,
        stage: StageAttempt,
        task_id: TaskId,
        spec: TaskSpec,
        outcome: TaskOutcome,
    ) {
        let TaskOutcome::Success(result) = outcome else {
            // The task scheduler retries failed tasks; fetch failures will be handled here.
            return;
        };
        let Some(st) = self.stages.get_mut(&stage.stage_id) else {
            return;
        };
        st.pending_partitions.remove(&spec.partition);
        let StageKind::Result { job: job_id, .. } = st.kind;
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        if job.finished[spec.output_id] {
            return;
        }
        job.finished[spec.output_id] = true;
        job.num_finished += 1;
        job.listener.task_succeeded(spec.output_id, result);
        debug!(%task_id, %stage, partition = spec.partition, "task succeeded");
        if job.num_finished == job.partitions.len() {
            info!(%job_id, stage = %stage, "job finished");
            self.running.remove(&stage.stage_id);
            self.finish_job(job_id, &format!("job {job_id} has finished"));
        }
    }

    /// Fails every job that needs the stage, and kills the stage's running tasks.
    fn abort_stage(&mut self, stage_id: StageId, failure: JobFailure) {
        let jobs: Vec<JobId> = self
            .stage_jobs
            .get(&stage_id)
            .map(|j| j.iter().copied().collect())
            .unwrap_or_default();
        for job_id in jobs {
            if let Some(job) = self.jobs.get(&job_id) {
                job.listener.job_failed(CoreError::JobFailed {
                    job_id,
                    reason: failure.clone(),
                });
            }
            self.finish_job(job_id, &format!("job {job_id} failed: {failure}"));
        }
    }

    /// Fails every active job: with [`CoreError::ContextStopped`] when the context is stopping,
    /// else as cancelled by the application.
    fn cancel_all(&mut self, reason: &str) {
        let stopping = self.stopped_reason.is_some();
        let jobs: Vec<JobId> = self.jobs.keys().copied().collect();
        for job_id in jobs {
            if let Some(job) = self.jobs.get(&job_id) {
                job.listener.job_failed(if stopping {
                    CoreError::ContextStopped {
                        reason: reason.to_owned(),
                    }
                } else {
                    CoreError::JobFailed {
                        job_id,
                        reason: JobFailure::Cancelled {
                            reason: reason.to_owned(),
                        },
                    }
                });
            }
            self.finish_job(job_id, &format!("job {job_id} was cancelled: {reason}"));
        }
    }

    /// Forgets a job and the stages only it needed, killing their running tasks (`why` is the
    /// reason their attempts are told).
    fn finish_job(&mut self, job_id: JobId, why: &str) {
        let Some(job) = self.jobs.remove(&job_id) else {
            return;
        };
        debug!(job_id = %job.job_id, done = job.num_finished, of = job.partitions.len(), "job over");
        let mut stack = vec![job.final_stage];
        while let Some(stage_id) = stack.pop() {
            let unused = match self.stage_jobs.get_mut(&stage_id) {
                Some(jobs) => {
                    jobs.remove(&job_id);
                    jobs.is_empty()
                }
                None => true,
            };
            if !unused {
                continue;
            }
            self.stage_jobs.remove(&stage_id);
            self.waiting.remove(&stage_id);
            self.running.remove(&stage_id);
            if let Some(stage) = self.stages.remove(&stage_id) {
                stack.extend(stage.parents);
                // Kills attempts still running (the job failed, or duplicates of finished
                // tasks); a stage whose tasks all finished has nothing left to kill.
                self.task_scheduler.cancel_stage(stage_id, why);
            }
        }
    }
}
