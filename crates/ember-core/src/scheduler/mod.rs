//! Scheduling: from a job to task attempts on executor threads, and back.
//!
//! Spark counterpart: `org.apache.spark.scheduler` and `scheduler.cluster`.
//!
//! | module | Spark |
//! |---|---|
//! | [`dag`] | `DAGScheduler`, `ActiveJob`, `Stage`, `JobWaiter` |
//! | [`task`] | `TaskSchedulerImpl`, `TaskSetManager`, `WorkerOffer` |
//! | [`backend`] | `SchedulerBackend`, `LocalSchedulerBackend`, `CoarseGrainedSchedulerBackend`, `StandaloneSchedulerBackend` |
//! | [`messages`] | `CoarseGrainedClusterMessages`, `TaskState`, `TaskDescription`, task results and failure reasons |

pub mod backend;
pub mod dag;
pub mod messages;
pub mod task;
