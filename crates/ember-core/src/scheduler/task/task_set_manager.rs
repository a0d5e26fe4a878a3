//! One task set's attempts: which partitions wait, run, succeeded, and how often each failed.
//!
//! Spark counterpart: `TaskSetManager` (without locality levels or speculation). It is pure
//! state: the [`TaskSchedulerImpl`](super::TaskSchedulerImpl) calls it with offers and status
//! updates and acts on what it returns.
//!
//! ```text
//!   pending ──offered──▶ running ──FINISHED──▶ successful   (all successful → zombie)
//!      ▲                    │
//!      └──failed, attempts ─┘──failed maxFailures times──▶ task set aborted (zombie)
//!         left, or executor
//!         lost
//! ```
//!
//! A zombie task set launches nothing more; it is finished once its running attempts ended.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::error::JobFailure;
use crate::ids::{ExecutorId, JobId, StageAttempt, TaskId};
use crate::scheduler::messages::{TaskBinary, TaskDescription, TaskFailureReason, TaskState};

/// One task of a task set: the partition it computes and where its output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSpec {
    /// The partition of the stage's data.
    pub partition: usize,
    /// For result stages, the index of this partition in the job's output.
    pub output_id: usize,
}

/// The tasks of one stage attempt, as the DAG scheduler submits them.
#[derive(Debug, Clone)]
pub struct TaskSet {
    /// The stage attempt.
    pub stage: StageAttempt,
    /// The job that submitted it; earlier jobs go first (FIFO scheduling).
    pub priority: JobId,
    /// The tasks, by index.
    pub tasks: Vec<TaskSpec>,
    /// The code all tasks run.
    pub binary: Arc<TaskBinary>,
}

/// One launched attempt.
#[derive(Debug, Clone)]
pub(crate) struct TaskInfo {
    pub(crate) index: usize,
    pub(crate) executor_id: ExecutorId,
    pub(crate) state: TaskState,
}

/// What a success meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Succeeded {
    pub(crate) index: usize,
    /// False when another attempt of the same task had already succeeded.
    pub(crate) first: bool,
}

/// What a failure meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) index: usize,
    /// Set when this failure exhausted the task's attempts: the task set is aborted.
    pub(crate) abort: Option<JobFailure>,
}

/// The scheduling state of one task set.
#[derive(Debug)]
pub(crate) struct TaskSetManager {
    pub(crate) task_set: TaskSet,
    max_task_failures: u32,
    pending: VecDeque<usize>,
    copies_running: Vec<u32>,
    attempts: Vec<u32>,
    successful: Vec<bool>,
    num_failures: Vec<u32>,
    tasks_successful: usize,
    infos: HashMap<TaskId, TaskInfo>,
    running: usize,
    started: usize,
    is_zombie: bool,
}

impl TaskSetManager {
    pub(crate) fn new(task_set: TaskSet, max_task_failures: u32) -> Self {
        let n = task_set.tasks.len();
        Self {
            task_set,
            max_task_failures: max_task_failures.max(1),
            pending: (0..n).collect(),
            copies_running: vec![0; n],
            attempts: vec![0; n],
            successful: vec![false; n],
            num_failures: vec![0; n],
            tasks_successful: 0,
            infos: HashMap::new(),
            running: 0,
            started: 0,
            is_zombie: n == 0,
        }
    }

    pub(crate) fn stage(&self) -> StageAttempt {
        self.task_set.stage
    }

    pub(crate) fn num_tasks(&self) -> usize {
        self.task_set.tasks.len()
    }

    pub(crate) fn tasks_successful(&self) -> usize {
        self.tasks_successful
    }

    /// Attempts an executor reported RUNNING and that have not ended.
    pub(crate) fn started_tasks(&self) -> usize {
        self.started
    }

    pub(crate) fn is_zombie(&self) -> bool {
        self.is_zombie
    }

    /// Whether nothing more will happen: zombie and no attempt left running.
    pub(crate) fn is_finished(&self) -> bool {
        self.is_zombie && self.running == 0
    }

    /// Whether a task waits for an offer.
    pub(crate) fn has_pending(&self) -> bool {
        !self.is_zombie
            && self
                .pending
                .iter()
                .any(|&i| !self.successful[i] && self.copies_running[i] == 0)
    }

    /// Takes one pending task for `executor_id`, giving it `task_id`.
    pub(crate) fn resource_offer(
        &mut self,
        executor_id: &ExecutorId,
        task_id: TaskId,
    ) -> Option<TaskDescription> {
        if self.is_zombie {
            return None;
        }
        let index = loop {
            let i = self.pending.pop_front()?;
            if !self.successful[i] && self.copies_running[i] == 0 {
                break i;
            }
        };
        let attempt = self.attempts[index];
        self.attempts[index] += 1;
        self.copies_running[index] += 1;
        self.running += 1;
        self.infos.insert(
            task_id,
            TaskInfo {
                index,
                executor_id: executor_id.clone(),
                state: TaskState::Launching,
            },
        );
        let spec = self.task_set.tasks[index];
        Some(TaskDescription {
            task_id,
            attempt,
            stage: self.task_set.stage,
            partition: spec.partition as u32,
            index: index as u32,
        })
    }

    pub(crate) fn info(&self, task_id: TaskId) -> Option<&TaskInfo> {
        self.infos.get(&task_id)
    }

    /// The executor reported the attempt RUNNING.
    pub(crate) fn mark_running(&mut self, task_id: TaskId) {
        if let Some(info) = self.infos.get_mut(&task_id)
            && info.state == TaskState::Launching
        {
            info.state = TaskState::Running;
            self.started += 1;
        }
    }

    fn end_attempt(&mut self, task_id: TaskId, state: TaskState) -> Option<usize> {
        let info = self.infos.get_mut(&task_id)?;
        if info.state.is_finished() {
            return None;
        }
        if info.state == TaskState::Running {
            self.started -= 1;
        }
        info.state = state;
        let index = info.index;
        self.copies_running[index] -= 1;
        self.running -= 1;
        Some(index)
    }

    /// The attempt finished with a result. `None` if the attempt is unknown or already ended.
    pub(crate) fn handle_successful_task(&mut self, task_id: TaskId) -> Option<Succeeded> {
        let index = self.end_attempt(task_id, TaskState::Finished)?;
        let first = !self.successful[index];
        if first {
            self.successful[index] = true;
            self.tasks_successful += 1;
            if self.tasks_successful == self.num_tasks() {
                self.is_zombie = true;
            }
        }
        Some(Succeeded { index, first })
    }

    /// The attempt failed. `None` if the attempt is unknown or already ended.
    pub(crate) fn handle_failed_task(
        &mut self,
        task_id: TaskId,
        reason: &TaskFailureReason,
    ) -> Option<Failed> {
        let index = self.end_attempt(task_id, reason.state())?;
        if self.successful[index] {
            // Another attempt already succeeded; nothing to redo.
            return Some(Failed { index, abort: None });
        }
        if reason.counts_towards_failures() {
            self.num_failures[index] += 1;
            if self.num_failures[index] >= self.max_task_failures {
                self.is_zombie = true;
                return Some(Failed {
                    index,
                    abort: Some(JobFailure::TaskFailed {
                        stage: self.task_set.stage,
                        partition: self.task_set.tasks[index].partition,
                        failures: self.num_failures[index],
                        last: reason.clone(),
                    }),
                });
            }
        }
        if !self.is_zombie {
            // Retry it before tasks that never ran, as Spark does.
            self.pending.push_front(index);
        }
        Some(Failed { index, abort: None })
    }

    /// The attempts still running on `executor_id`.
    #[cfg(test)]
    pub(crate) fn running_on(&self, executor_id: &ExecutorId) -> Vec<TaskId> {
        self.infos
            .iter()
            .filter(|(_, info)| !info.state.is_finished() && &info.executor_id == executor_id)
            .map(|(&task_id, _)| task_id)
            .collect()
    }

    /// The attempts not ended, anywhere.
    pub(crate) fn running_attempts(&self) -> Vec<(TaskId, ExecutorId)> {
        self.infos
            .iter()
            .filter(|(_, info)| !info.state.is_finished())
            .map(|(&task_id, info)| (task_id, info.executor_id.clone()))
            .collect()
    }

    /// Launches nothing more (the stage was cancelled or aborted elsewhere).
    pub(crate) fn abort(&mut self) {
        self.is_zombie = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` tasks of stage 0 of job 0.
    fn task_set(n: usize) -> TaskSet {
        crate::scheduler::task::tests::task_set(0, 0, n)
    }

    fn panic(msg: &str) -> TaskFailureReason {
        TaskFailureReason::Panic {
            message: msg.to_owned(),
        }
    }

    #[test]
    fn launches_each_task_once_then_finishes() {
        let mut tsm = TaskSetManager::new(task_set(2), 4);
        let e: ExecutorId = "0".into();
        let a = tsm.resource_offer(&e, TaskId(10)).unwrap();
        let b = tsm.resource_offer(&e, TaskId(11)).unwrap();
        assert_eq!((a.partition, b.partition), (0, 1));
        assert!(tsm.resource_offer(&e, TaskId(12)).is_none());
        assert!(!tsm.has_pending());
        tsm.mark_running(TaskId(10));
        assert_eq!(tsm.started_tasks(), 1);
        assert_eq!(
            tsm.handle_successful_task(TaskId(10)),
            Some(Succeeded {
                index: 0,
                first: true
            })
        );
        assert_eq!(tsm.started_tasks(), 0);
        assert!(
            tsm.handle_successful_task(TaskId(10)).is_none(),
            "duplicate update"
        );
        assert!(!tsm.is_finished());
        tsm.handle_successful_task(TaskId(11)).unwrap();
        assert!(tsm.is_finished());
        assert_eq!(tsm.tasks_successful(), 2);
    }

    #[test]
    fn counts_failures_per_task_and_aborts_at_the_limit() {
        // Spark parity: TaskSetManager.handleFailedTask aborts when numFailures(index) reaches
        // maxTaskFailures.
        let mut tsm = TaskSetManager::new(task_set(2), 3);
        let e: ExecutorId = "0".into();
        let mut next = 0u64;
        let mut launch = |tsm: &mut TaskSetManager| {
            next += 1;
            tsm.resource_offer(&e, TaskId(next))
                .map(|d| (d, TaskId(next)))
        };
        let (first, t1) = launch(&mut tsm).unwrap();
        let (_, t2) = launch(&mut tsm).unwrap();
        assert_eq!(first.attempt, 0);
        tsm.handle_successful_task(t2).unwrap();
        // Partition 0 fails twice and is retried each time, with a new attempt number.
        let f = tsm.handle_failed_task(t1, &panic("one")).unwrap();
        assert_eq!(
            f,
            Failed {
                index: 0,
                abort: None
            }
        );
        let (retry, t3) = launch(&mut tsm).unwrap();
        assert_eq!((retry.partition, retry.attempt), (0, 1));
        assert!(
            tsm.handle_failed_task(t3, &panic("two"))
                .unwrap()
                .abort
                .is_none()
        );
        let (retry, t4) = launch(&mut tsm).unwrap();
        assert_eq!(retry.attempt, 2);
        // The third failure aborts with the last reason.
        let f = tsm.handle_failed_task(t4, &panic("three")).unwrap();
        assert_eq!(
            f.abort,
            Some(JobFailure::TaskFailed {
                stage: tsm.stage(),
                partition: 0,
                failures: 3,
                last: panic("three"),
            })
        );
        assert!(tsm.is_zombie() && tsm.is_finished());
        assert!(launch(&mut tsm).is_none());
    }

    #[test]
    fn executor_loss_not_caused_by_the_app_does_not_count() {
        let mut tsm = TaskSetManager::new(task_set(1), 1);
        let e: ExecutorId = "0".into();
        let lost = TaskFailureReason::ExecutorLost {
            executor_id: e.clone(),
            reason: "worker lost".into(),
            caused_by_app: false,
        };
        for id in 0..5 {
            tsm.resource_offer(&e, TaskId(id)).unwrap();
            assert_eq!(tsm.running_on(&e), vec![TaskId(id)]);
            assert!(
                tsm.handle_failed_task(TaskId(id), &lost)
                    .unwrap()
                    .abort
                    .is_none()
            );
        }
        let killed = TaskFailureReason::Killed { reason: "x".into() };
        tsm.resource_offer(&e, TaskId(9)).unwrap();
        assert!(
            tsm.handle_failed_task(TaskId(9), &killed)
                .unwrap()
                .abort
                .is_none()
        );
        tsm.resource_offer(&e, TaskId(10)).unwrap();
        assert!(
            tsm.handle_failed_task(TaskId(10), &panic("x"))
                .unwrap()
                .abort
                .is_some()
        );
    }

    #[test]
    fn lost_attempts_are_resubmitted_until_one_succeeds() {
        let mut tsm = TaskSetManager::new(task_set(1), 1);
        let e: ExecutorId = "0".into();
        tsm.resource_offer(&e, TaskId(1)).unwrap();
        // Lost with its executor (not counted): resubmitted.
        let lost = TaskFailureReason::ExecutorLost {
            executor_id: e.clone(),
            reason: "x".into(),
            caused_by_app: false,
        };
        tsm.handle_failed_task(TaskId(1), &lost).unwrap();
        tsm.resource_offer(&e, TaskId(2)).unwrap();
        tsm.handle_successful_task(TaskId(2)).unwrap();
        assert!(tsm.is_finished());
    }

    #[test]
    fn empty_task_set_is_finished_at_once() {
        let tsm = TaskSetManager::new(task_set(0), 4);
        assert!(tsm.is_finished());
        assert!(!tsm.has_pending());
    }
}
