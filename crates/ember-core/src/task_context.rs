//! What a running task knows about itself, and how it learns that it was killed.
//!
//! Spark counterpart: `TaskContext` (`TaskContext.get()`, `partitionId`, `attemptNumber`,
//! `taskAttemptId`, `isInterrupted`, `killTaskIfInterrupted`).
//!
//! A thread cannot be stopped from outside in Rust, so killing a task is cooperative, as Spark's
//! is for code that does not block in interruptible calls: when the driver kills an attempt (its
//! job failed or was cancelled, or another attempt finished first) the executor marks the
//! attempt's context killed. Code that runs long checks [`TaskContext::is_interrupted`] — or
//! calls [`TaskContext::kill_task_if_interrupted`] — and returns early; the attempt is then
//! reported KILLED with the driver's reason, whatever it returned, and its core is free again.
//!
//! ```
//! use ember_core::TaskContext;
//!
//! fn busy_work(items: u64) -> u64 {
//!     let mut done = 0;
//!     for _ in 0..items {
//!         if let Some(ctx) = TaskContext::get() {
//!             ctx.kill_task_if_interrupted();
//!         }
//!         done += 1;
//!     }
//!     done
//! }
//! # assert_eq!(busy_work(3), 3);
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::ids::{StageAttempt, TaskId};

/// The running task attempt's view of itself. Cheap to clone.
#[derive(Clone)]
pub struct TaskContext {
    inner: Arc<Inner>,
}

struct Inner {
    stage: StageAttempt,
    partition: usize,
    attempt: u32,
    task_id: TaskId,
    killed: Mutex<Option<String>>,
}

/// The unwind payload of [`TaskContext::kill_task_if_interrupted`]; the executor recognises it
/// and reports the attempt KILLED, not failed.
#[derive(Debug)]
pub(crate) struct TaskKilled;

thread_local! {
    static CURRENT: RefCell<Option<TaskContext>> = const { RefCell::new(None) };
}

impl TaskContext {
    pub(crate) fn new(
        stage: StageAttempt,
        partition: usize,
        attempt: u32,
        task_id: TaskId,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                stage,
                partition,
                attempt,
                task_id,
                killed: Mutex::new(None),
            }),
        }
    }

    /// The context of the task running on this thread; `None` outside tasks (in the driver's
    /// own code, say).
    pub fn get() -> Option<TaskContext> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// The stage the task belongs to.
    pub fn stage_id(&self) -> u64 {
        self.inner.stage.stage_id.0
    }

    /// The attempt of that stage, from 0.
    pub fn stage_attempt_number(&self) -> u32 {
        self.inner.stage.attempt
    }

    /// The partition the task computes.
    pub fn partition_id(&self) -> usize {
        self.inner.partition
    }

    /// Which attempt of this partition this is, from 0 (retries count up).
    pub fn attempt_number(&self) -> u32 {
        self.inner.attempt
    }

    /// The attempt's id, unique within the application.
    pub fn task_attempt_id(&self) -> u64 {
        self.inner.task_id.0
    }

    /// Whether the driver killed this attempt: long-running code should return soon.
    pub fn is_interrupted(&self) -> bool {
        self.kill_reason().is_some()
    }

    /// Why the driver killed this attempt, once it has.
    pub fn kill_reason(&self) -> Option<String> {
        self.inner
            .killed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ends the task at once when it was killed (Spark: `killTaskIfInterrupted`): unwinds out
    /// of the task without a panic message, and the attempt is reported KILLED.
    pub fn kill_task_if_interrupted(&self) {
        if self.is_interrupted() {
            std::panic::resume_unwind(Box::new(TaskKilled));
        }
    }

    /// Marks the attempt killed; the first reason stays.
    pub(crate) fn kill(&self, reason: &str) {
        self.inner
            .killed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| reason.to_owned());
    }

    /// Makes this the current thread's context until the guard drops.
    pub(crate) fn enter(&self) -> CurrentGuard {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
        CurrentGuard(())
    }
}

impl fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskContext")
            .field("stage", &self.inner.stage)
            .field("partition", &self.inner.partition)
            .field("attempt", &self.inner.attempt)
            .field("task_id", &self.inner.task_id)
            .field("killed", &self.kill_reason())
            .finish()
    }
}

/// Clears the thread's task context when dropped (also while unwinding).
#[derive(Debug)]
pub(crate) struct CurrentGuard(());

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::StageId;

    fn context() -> TaskContext {
        let stage = StageAttempt {
            stage_id: StageId(3),
            attempt: 1,
        };
        TaskContext::new(stage, 7, 2, TaskId(42))
    }

    #[test]
    fn the_context_is_the_threads_while_entered() {
        assert!(TaskContext::get().is_none());
        let ctx = context();
        {
            let _guard = ctx.enter();
            let seen = TaskContext::get().expect("entered");
            assert_eq!(
                (
                    seen.stage_id(),
                    seen.stage_attempt_number(),
                    seen.partition_id(),
                    seen.attempt_number(),
                    seen.task_attempt_id()
                ),
                (3, 1, 7, 2, 42)
            );
            let other = std::thread::spawn(|| TaskContext::get().is_none());
            assert!(other.join().unwrap(), "another thread has no context");
        }
        assert!(TaskContext::get().is_none(), "cleared when the guard drops");
    }

    #[test]
    fn a_kill_is_seen_by_the_task_and_unwinds_it_on_request() {
        let ctx = context();
        let _guard = ctx.enter();
        ctx.kill_task_if_interrupted();
        ctx.kill("job 3 failed");
        ctx.kill("later reason");
        let seen = TaskContext::get().unwrap();
        assert!(seen.is_interrupted());
        assert_eq!(seen.kill_reason().as_deref(), Some("job 3 failed"));
        let unwound = std::panic::catch_unwind(|| seen.kill_task_if_interrupted());
        let payload = unwound.expect_err("unwinds");
        assert!(payload.is::<TaskKilled>());
    }
}
