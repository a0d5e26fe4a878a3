//! Scheduler backends: where task attempts actually run.
//!
//! Spark counterparts: `SchedulerBackend`, `LocalSchedulerBackend`,
//! `CoarseGrainedSchedulerBackend` (its `DriverEndpoint`) and `StandaloneSchedulerBackend`.
//!
//! | backend | master URL | executors |
//! |---|---|---|
//! | [`local`] | `local[N]` | one, inside the driver, with N task threads |
//! | [`driver_endpoint`] | (base of the next) | executor processes that register with the driver |
//! | [`standalone`] | `ember://…` | granted by a standalone master, started by its workers |
//!
//! Every backend drives the same [`TaskScheduler`](super::task::TaskScheduler): it offers free
//! cores, launches what the scheduler picks, and reports status updates back.

pub mod driver_endpoint;
pub mod local;
pub mod standalone;
pub mod starvation;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::CoreError;
use crate::ids::{ExecutorId, TaskId};

/// A boxed future, for trait methods that are used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the task scheduler needs from a backend.
pub trait SchedulerBackend: Send + Sync + fmt::Debug {
    /// Offer free cores to pending tasks soon (tasks were submitted or freed).
    fn revive_offers(&self);

    /// Kill a task attempt on its executor.
    fn kill_task(
        &self,
        task_id: TaskId,
        executor_id: &ExecutorId,
        interrupt_thread: bool,
        reason: &str,
    );

    /// How many partitions to use when the application does not say (Spark:
    /// `defaultParallelism`): the cores available now, at least 2 in cluster modes.
    fn default_parallelism(&self) -> usize;

    /// Stops the backend: executors are told to stop, the cluster manager is told the
    /// application is done.
    fn stop(&self) -> BoxFuture<'static, ()>;

    /// Why no executor has registered although tasks wait, if the backend can tell (the
    /// standalone backend asks the master). Called while the driver is starved.
    fn starvation_report(&self) -> BoxFuture<'static, Option<String>> {
        Box::pin(async { None })
    }

    /// Executors registered and ready to take tasks now (local mode: the one inside the
    /// driver).
    fn num_executors(&self) -> usize;

    /// The application's id given by the cluster manager, once known.
    fn application_id(&self) -> Option<String> {
        None
    }

    /// The executors registered and ready for tasks.
    fn executor_ids(&self) -> Vec<ExecutorId>;

    /// How the application changes its executors, when the backend lets it (a cluster).
    fn executor_allocation(&self) -> Option<&dyn ExecutorAllocation> {
        None
    }
}

/// Asking the cluster manager for more or fewer executors while the application runs.
///
/// Spark counterpart: `ExecutorAllocationClient`. Each answer says whether the cluster manager
/// took the request: `false` while the application is not registered yet.
pub trait ExecutorAllocation: Send + Sync {
    /// Wants `total` executors in all: the cluster manager launches more as resources allow and
    /// does not replace executors that end beyond that number.
    fn request_total_executors(&self, total: u32) -> BoxFuture<'static, Result<bool, CoreError>>;

    /// Wants `additional` executors more than the current target (the executors granted so
    /// far, when no target was set).
    fn request_executors(&self, additional: u32) -> BoxFuture<'static, Result<bool, CoreError>>;

    /// Kills these executors and lowers the target by as many, so they are not replaced; their
    /// running tasks are resubmitted without counting as failures. Unknown ids are skipped;
    /// `Ok(false)` when none was known.
    fn kill_executors(&self, ids: Vec<ExecutorId>) -> BoxFuture<'static, Result<bool, CoreError>>;
}
