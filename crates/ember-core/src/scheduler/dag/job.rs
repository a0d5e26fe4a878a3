//! Jobs: what an action asked for, and how its caller waits for the results.
//!
//! Spark counterparts: `ActiveJob`, `JobListener`, `JobWaiter`.

use std::sync::{Condvar, Mutex};

use crate::error::CoreError;
use crate::ids::{JobId, StageId};

/// A job the DAG scheduler is running.
#[derive(Debug)]
pub(crate) struct ActiveJob {
    pub(crate) job_id: JobId,
    pub(crate) final_stage: StageId,
    /// The partitions of the final stage to compute; the index is the output id.
    pub(crate) partitions: Vec<usize>,
    pub(crate) finished: Vec<bool>,
    pub(crate) num_finished: usize,
    pub(crate) listener: std::sync::Arc<JobWaiter>,
}

#[derive(Debug)]
struct WaiterState {
    results: Vec<Option<Vec<u8>>>,
    remaining: usize,
    outcome: Option<Result<(), CoreError>>,
}

/// Collects a job's results for the thread that runs the job (Spark's `JobWaiter`).
#[derive(Debug)]
pub struct JobWaiter {
    job_id: JobId,
    state: Mutex<WaiterState>,
    done: Condvar,
}

impl JobWaiter {
    /// A waiter for `outputs` results.
    pub(crate) fn new(job_id: JobId, outputs: usize) -> Self {
        Self {
            job_id,
            state: Mutex::new(WaiterState {
                results: vec![None; outputs],
                remaining: outputs,
                outcome: (outputs == 0).then_some(Ok(())),
            }),
            done: Condvar::new(),
        }
    }

    /// The job.
    pub fn job_id(&self) -> JobId {
        self.job_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WaiterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One output arrived; the job succeeds with the last one.
    pub(crate) fn task_succeeded(&self, output_id: usize, result: Vec<u8>) {
        let mut state = self.lock();
        if state.outcome.is_some() {
            return;
        }
        if let Some(slot) = state.results.get_mut(output_id)
            && slot.is_none()
        {
            *slot = Some(result);
            state.remaining -= 1;
            if state.remaining == 0 {
                state.outcome = Some(Ok(()));
                self.done.notify_all();
            }
        }
    }

    /// The job failed; waiting callers get `error`.
    pub(crate) fn job_failed(&self, error: CoreError) {
        let mut state = self.lock();
        if state.outcome.is_none() {
            state.outcome = Some(Err(error));
            self.done.notify_all();
        }
    }

    /// Whether the job ended.
    pub fn is_done(&self) -> bool {
        self.lock().outcome.is_some()
    }

    /// Blocks until the job ends; returns the encoded results in output order.
    pub fn wait(&self) -> Result<Vec<Vec<u8>>, CoreError> {
        let mut state = self.lock();
        while state.outcome.is_none() {
            state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        match state.outcome.take().expect("checked above") {
            Ok(()) => Ok(state
                .results
                .iter_mut()
                .map(|r| r.take().unwrap_or_default())
                .collect()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_every_output_in_order() {
        let waiter = std::sync::Arc::new(JobWaiter::new(JobId(0), 3));
        let w = waiter.clone();
        let t = std::thread::spawn(move || w.wait());
        waiter.task_succeeded(2, vec![2]);
        waiter.task_succeeded(0, vec![0]);
        waiter.task_succeeded(0, vec![9]); // duplicate ignored
        assert!(!waiter.is_done());
        waiter.task_succeeded(1, vec![1]);
        assert_eq!(t.join().unwrap().unwrap(), vec![vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn failure_wakes_the_caller_and_empty_jobs_are_done() {
        let waiter = JobWaiter::new(JobId(1), 2);
        waiter.task_succeeded(0, vec![0]);
        waiter.job_failed(CoreError::ContextStopped {
            reason: "stop".into(),
        });
        waiter.task_succeeded(1, vec![1]);
        assert!(matches!(
            waiter.wait(),
            Err(CoreError::ContextStopped { .. })
        ));
        assert_eq!(
            JobWaiter::new(JobId(2), 0).wait().unwrap(),
            Vec::<Vec<u8>>::new()
        );
    }
}
